// SPDX-License-Identifier: Apache-2.0
#pragma once
// The MariaDB/MySQL backend: the class, its members (the connection pool, the watch registry)
// and the helpers its operations share. Member functions are defined in the .cpp files beside
// it, one per concern, as in the SQLite backend it mirrors.
//
// Concurrency: every write is one short transaction that first locks the token counter row
// (write_transaction), so writers serialise as they do on SQLite, across threads and processes
// alike, and each sees every earlier write (READ COMMITTED). Rows an application's fenced
// transaction may hold (sqlock_assert_held share-locks a lock row) are locked after the counter
// with NOWAIT, or skipped with SKIP LOCKED by renewals: a writer never waits for a row while it
// holds the counter, so writers cannot deadlock. A refused acquire is a plain read that takes no
// lock at all, unless it queues.
//
// Clock: the server's (UTC_TIMESTAMP(6)), read once per write transaction with the counter's
// lock, as epoch microseconds; every statement of the transaction uses that instant.
//
// Wake-ups: there is no NOTIFY. Waiters in this process are woken by a process-wide registry
// per database; waiters in other processes retry on a short backoff (wakes_other_processes()
// is false), as on SQLite.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sqlock/backend.hpp>

#include "backends/common/migrations.hpp"
#include "backends/common/watch_registry.hpp"
#include "backends/mariadb/connection.hpp"
#include "backends/mariadb/params.hpp"
#include "util/util.hpp"

namespace sqlock::detail::mariadb {

class mariadb_backend final : public backend {
 public:
  mariadb_backend(connection_params params, backend_options options);

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
  bool release(const lease_key& key, deadline until) override;
  bool abandon(const lease_key& key, deadline until) override;
  bool force_release(std::string_view name, deadline until) override;
  std::size_t request_release(lease_kind kind, std::string_view name, std::int64_t token,
                              std::chrono::milliseconds grace, deadline until) override;
  std::optional<lock_record> inspect(std::string_view name, deadline until) override;
  std::vector<lock_record> list(const list_filter& f, deadline until) override;

  // renew.cpp
  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override;

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

 private:
  // pool.cpp. A pooled connection: back to the pool when done, dropped if it broke or was left
  // inside a transaction.
  struct pooled_deleter {
    mariadb_backend* owner;
    void operator()(connection* c) const noexcept { owner->give_back(c); }
  };
  using pooled = std::unique_ptr<connection, pooled_deleter>;
  pooled checkout(deadline until, const std::string& what);
  void give_back(connection* raw) noexcept;
  /// Runs `step` (one write transaction on `c`) again while it throws `row_locked`, with short
  /// random sleeps, until `until`: the admin calls that wait for a fenced transaction.
  template <class Step>
  auto retry_locked(connection& c, deadline until, Step step) -> decltype(step());

  // notifications.cpp: the watch registry of this database, shared within the process.
  std::shared_ptr<watch_registry> registry();

  // admin.cpp
  static int read_version(connection& c, const std::string& what);
  void refuse_live_leases(connection& c, const migration_step& step, int target,
                          const migrate_options& options);

  // locks.cpp: grants `r` at `now` in tx (the row locked by the caller when it exists).
  static grant write_grant(connection& c, write_transaction& tx, const acquire_request& r,
                           std::int64_t floor, const std::string& what);
  bool end_lock(const lease_key& key, bool abandon, deadline until, const std::string& what);
  static void drop_taken_tickets(connection& c, std::string_view name, std::string_view nonce,
                                 std::int64_t now, const std::string& what);
  // semaphores.cpp
  bool end_holder(const lease_key& key, bool abandon, deadline until, const std::string& what);

  const connection_params params_;
  const backend_options options_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::mutex registry_mu_;
  std::shared_ptr<watch_registry> registry_;
};

template <class Step>
auto mariadb_backend::retry_locked(connection& c, deadline until, Step step) -> decltype(step()) {
  for (int attempt = 0;; ++attempt) {
    try {
      return step();
    } catch (const row_locked&) {
      auto left = until - steady::now();
      if (left <= milliseconds{5} || c.broken()) throw;
      auto cap = milliseconds{std::min(2 << std::min(attempt, 5), 50)};
      std::this_thread::sleep_for(std::min<steady::duration>(jitter(milliseconds{1}, cap), left));
    }
  }
}

}  // namespace sqlock::detail::mariadb
