// SPDX-License-Identifier: Apache-2.0
#pragma once
// The PostgreSQL backend: the class postgresql_backend (its operations are defined in the .cpp
// files of this directory, by concern), its LISTEN thread `listener`, and what they share.
//
// One round trip per operation: a grant, a renewal (of one or many leases) and a release are
// each ONE autocommit statement (no BEGIN/COMMIT); a refused attempt is answered by the same
// statement and writes nothing (no row lock, no token drawn, no WAL), except the waiter mark.
// Times are read as integer epoch microseconds computed by the server, never as text.
//
// Connections (bounded): `pool_size` (default 4) for user calls, one dedicated to renew() so
// the keepalive never queues behind user calls (a user renew borrows it when free, else a pool
// connection), and one LISTEN connection started at the first watch(): at most pool_size + 2
// per backend, plus short-lived cancel requests after a missed deadline (at most 4 per process).
//
// Every statement names sqlock's schema explicitly (quoted once with PQescapeIdentifier), so
// nothing depends on the session's search_path (a migration sets its own, transaction-local,
// for the migration scripts); no session state is relied upon, so everything
// works through PgBouncer in transaction mode (with prepared_statements = false before 1.21).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backends/common/backend_common.hpp"
#include "backends/common/migrations.hpp"
#include "backends/common/watch_registry.hpp"
#include "backends/postgresql/connection.hpp"
#include "backends/postgresql/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::pg {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// A waiter marks the row for this long; it re-marks when less than half remains. Longer than
// the client's signalled backoff cap (2 s), so a waiting client re-attempts (and re-marks)
// well before its mark lapses, and an abandoned mark costs at most this long of notifying
// releases.
inline constexpr milliseconds waiter_mark{10000};

class postgresql_backend;
struct ended_rows;

// The LISTEN connection: one per backend, started at the first watch(). It dispatches
// notifications (payload = lock name) to the backend's watch registry, checks itself at start
// by notifying itself through the main URL, reconnects with backoff, and pings an idle
// connection so a dead one is noticed.
class listener {
 public:
  // The thread exists from the start but idles until the first watch(): starting it there
  // would put thread creation between a waiter's deadline and its first attempt.
  explicit listener(postgresql_backend& owner);
  ~listener() { stop(); }

  /// Starts the thread once; waits (bounded) until the self-test reached a verdict.
  void ensure_started(milliseconds wait);
  bool works() const noexcept { return works_.load(); }
  /// The self-test ran and heard nothing (e.g. through PgBouncer in transaction mode).
  bool known_deaf() const noexcept { return deaf_.load(); }
  void stop() noexcept;

 private:
  void run();
  void session(bool first);
  /// Hands one notification to the registry: a name to wake a waiter, or a handoff.
  void deliver(const connection::notification& n, std::uint64_t epoch);
  bool sleep_interruptibly(milliseconds d);

  postgresql_backend& owner_;
  int wake_[2] = {-1, -1};
  bool wanted_ = false;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> works_{false};
  std::atomic<bool> deaf_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool verdict_ = false;
};

class postgresql_backend final : public backend {
 public:
  postgresql_backend(const std::string& conn, backend_options options);
  ~postgresql_backend() override;

  // backend.cpp
  std::string_view kind() const noexcept override;
  std::string describe() const override;
  int latest_schema_version() const noexcept override;
  bool wakes_other_processes() const noexcept override;
  std::uint64_t server_epoch() const noexcept override { return epoch_.load(); }
  std::shared_ptr<release_watch> watch(std::string_view name) override;
  void log(log_level level, const std::string& message) const noexcept;

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
                              milliseconds grace, deadline until) override;
  std::optional<lock_record> inspect(std::string_view name, deadline until) override;
  std::vector<lock_record> list(const list_filter& f, deadline until) override;
  std::optional<lock_record> inspect_watched(std::string_view name, milliseconds mark_for,
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

  // notifications.cpp: used by the listener's self-test; notifies through the main URL, as a
  // release would.
  void notify_self(const std::string& payload, deadline until);

  const conninfo& listen_info() const noexcept { return listen_info_; }
  const std::string& channel() const noexcept { return channel_; }
  const std::string& handoff_channel() const noexcept { return handoff_channel_; }
  watch_registry& registry() noexcept { return registry_; }

  // pool.cpp: a new connection (`info`: another URL, the listener's, with no shared backoff).
  std::unique_ptr<connection> connect(deadline until, const std::string& what,
                                      const conninfo* info = nullptr, int interrupt_fd = -1);

 private:
  struct pool_return {
    postgresql_backend* owner;
    void operator()(connection* c) const noexcept { owner->give_back(c); }
  };
  using pooled = std::unique_ptr<connection, pool_return>;

  // admin.cpp
  void refuse_live_leases(connection& c, const migration_step& step, int target,
                          const migrate_options& options, deadline until);

  // pool.cpp
  // Which server a new connection reached: a standby is refused (errc::unavailable); another
  // primary than the last one seen (system identifier and timeline) starts a new epoch, which
  // the listener follows. Warns once when the primary replicates asynchronously.
  // The listener's connection (`listener`) never starts an epoch: it is stamped with the
  // current one, and a listener that reached another server follows when the pool does.
  void identify(connection& c, deadline until, const std::string& what, bool listener);
  // A connection opened under an older server epoch (a failover since): never reused.
  bool stale(const connection& c) const noexcept {
    return c.server_epoch != 0 && c.server_epoch < epoch_.load();
  }
  const statements& sql();
  pooled checkout(deadline until, const std::string& what);
  void give_back(connection* raw) noexcept;
  // One statement; serialization failures and deadlocks are retried (the statement rolled
  // back, so retrying is safe even for a grant), never surfaced before the deadline.
  result run(connection& c, const std::string& what, const char* name, const std::string& text,
             const std::vector<param>& params, deadline until, errc after_send = errc::unavailable);
  // Release, abandon and force release: runs `text` (rows of (ended, notified, locked)),
  // looking again for a while at a row another transaction holds locked; wakes local waiters.
  bool end_lease(const std::string& what, const char* name, std::string statements::*text,
                 const std::vector<param>& params, deadline until,
                 lease_kind kind = lease_kind::lock);
  // Delivers what a release reported: each handoff to its waiter (if it waits in this
  // process), and a wake-up to the name's local waiters when a lease or ticket ended without
  // a handoff (or, for a semaphore, may have left room).
  void wake(const std::string& name, const ended_rows& r, lease_kind kind);

  const conninfo info_;
  const conninfo listen_info_;
  const backend_options options_;
  const std::string channel_;
  const std::string handoff_channel_;  // this instance's own (schema 5): see handoff_channel_for

  std::mutex connect_mu_;
  std::shared_ptr<const statements> sql_;
  milliseconds connect_backoff_{0};
  steady::time_point reconnect_after_{};
  std::string last_connect_error_;
  std::string server_id_;  // "<system identifier>/<timeline>" of the server last connected to
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<bool> identify_failed_{false};
  std::atomic<bool> warned_async_{false};

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::size_t open_ = 0;

  std::mutex renew_mu_;
  std::unique_ptr<connection> renew_conn_;

  watch_registry registry_;
  std::atomic<bool> warned_sync_{false};
  std::atomic<bool> warned_off_{false};
  std::atomic<bool> unnamed_only_{false};
  listener listener_;  // last: stopped first
};

}  // namespace sqlock::detail::pg
