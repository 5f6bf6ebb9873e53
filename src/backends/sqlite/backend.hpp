// SPDX-License-Identifier: Apache-2.0
#pragma once
// The SQLite backend: the class, its members (the connection pool, the watch registry) and the
// helpers its operations share. Its member functions are defined in the .cpp files beside it.
//
// Concurrency: every write is one short BEGIN IMMEDIATE transaction (WAL mode), so writers
// serialise on SQLite's write lock, across threads and processes alike; readers never block.
// A refused acquire is a plain read that takes no write lock, unless it queues (a waiter's
// ticket, schema 4: see locks.cpp). Connections come from a small pool and are used by one
// thread at a time (opened NOMUTEX). Waiting for the write lock uses
// our own busy handler: short random sleeps bounded by the call's deadline, because SQLite's
// stock handler starved one of two contending processes in half of the measured runs.
//
// Clock: SQLite's, i.e. the host's wall clock, read once per transaction in SQL as epoch
// milliseconds and bound as a parameter to every statement of that transaction, so a
// transaction sees one instant. All processes on one file must share that host clock.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/backend.hpp>

#include "backends/common/migrations.hpp"
#include "backends/common/watch_registry.hpp"
#include "backends/sqlite/connection.hpp"

namespace sqlock::detail::sqlite {

class sqlite_backend final : public backend {
 public:
  sqlite_backend(std::string location, bool uri, backend_options options);

  // backend.cpp
  std::string_view kind() const noexcept override;
  std::string describe() const override;
  int latest_schema_version() const noexcept override;
  bool wakes_other_processes() const noexcept override;
  std::shared_ptr<release_watch> watch(std::string_view name) override;

  // admin.cpp
  int schema_version(deadline until) override;
  int migrate(int target, deadline until) override;
  int migrate_with(int target, const migrate_options& options, deadline until) override;
  std::size_t purge(milliseconds free_for, deadline until) override;

  // locks.cpp
  acquire_result try_acquire(const acquire_request& r, deadline until) override;
  std::vector<acquire_result> try_acquire_all(const std::vector<acquire_request>& requests,
                                              deadline until) override;
  bool update_metadata(const lease_key& key, std::string_view metadata, deadline until) override;
  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override;
  bool release(const lease_key& key, deadline until) override;
  bool abandon(const lease_key& key, deadline until) override;
  bool force_release(std::string_view name, deadline until) override;
  std::size_t request_release(lease_kind kind, std::string_view name, std::int64_t token,
                              std::chrono::milliseconds grace, deadline until) override;
  std::optional<lock_record> inspect(std::string_view name, deadline until) override;
  std::vector<lock_record> list(const list_filter& f, deadline until) override;

  // semaphores.cpp
  acquire_result try_acquire_semaphore(const semaphore_request& r, deadline until) override;
  std::optional<semaphore_record> inspect_semaphore(std::string_view name, deadline until) override;
  std::vector<semaphore_record> list_semaphores(const list_filter& f, deadline until) override;
  std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                      deadline until) override;

  // history.cpp (schema 10)
  std::vector<history_record> history(const history_filter& f, deadline until) override;
  bool set_history_enabled(bool on, deadline until) override;
  bool history_enabled(deadline until) override;
  std::size_t purge_history(milliseconds older_than, deadline until) override;

  // locks.cpp: the next token (or fair-waiting ticket), at least `floor`, drawn in c's open
  // write transaction.
  static std::int64_t next_token(connection& c, std::int64_t floor, const std::string& what);
  /// Grants `r` at `now` in the caller's write transaction: a token of at least `floor`, the
  /// row written, the nonce's queue ticket dropped (try_acquire, try_acquire_all).
  static grant write_grant(connection& c, const acquire_request& r, std::int64_t floor,
                           std::int64_t now, const std::string& what);

 private:
  // pool.cpp. A pooled connection: back to the pool when done, dropped if it broke.
  struct pooled_deleter {
    sqlite_backend* owner;
    void operator()(connection* c) const noexcept { owner->give_back(c); }
  };
  using pooled = std::unique_ptr<connection, pooled_deleter>;

  pooled checkout(deadline until, bool create, const std::string& what);
  void give_back(connection* raw) noexcept;
  // Runs one UPDATE that ends a lease (binding ?1 = now), then wakes local waiters.
  bool end_lease(const char* sql, std::string_view name, std::string_view nonce,
                 const std::int64_t* token, deadline until, const std::string& what);

  // notifications.cpp: the watch registry of this database file, shared within the process.
  std::shared_ptr<watch_registry> registry();

  // admin.cpp
  static int read_version(connection& c, const std::string& what);
  void refuse_live_leases(connection& c, const migration_step& step, int target,
                          const migrate_options& options);

  // locks.cpp: release (or abandon) a lock lease, handing the lock to the oldest ticket.
  bool end_lock(const lease_key& key, bool abandon, deadline until, const std::string& what);
  // A semaphore holder's release or abandon, handing the room to the queue (semaphores.cpp).
  bool end_holder(const lease_key& key, bool abandon, deadline until, const std::string& what);
  static void drop_taken_tickets(connection& c, std::string_view name, std::string_view nonce,
                                 std::int64_t now, const std::string& what);

  // semaphores.cpp: renews one semaphore holder, inside renew()'s write transaction.
  static renew_result renew_holder(connection& c, std::int64_t now, const renew_request& r,
                                   const std::string& what);

  const std::string location_;
  const bool uri_;
  const backend_options options_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::mutex registry_mu_;
  std::shared_ptr<watch_registry> registry_;
};

}  // namespace sqlock::detail::sqlite
