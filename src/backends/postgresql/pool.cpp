// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend's connections: connect with reconnect backoff, the pool (checkout and
// give_back), the run-with-retries helper every statement goes through, and end_lease.

#include <algorithm>
#include <thread>

#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/errors.hpp"
#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

std::unique_ptr<connection> postgresql_backend::connect(deadline until, const std::string& what,
                                                        const conninfo* info, int interrupt_fd) {
  // Reconnect with backoff: after a failed connect, further connects wait until the backoff
  // passed (or fail at once when that is past their deadline), so a dead server is not
  // hammered by every caller. The listener (its own URL maybe) keeps its own backoff.
  auto identified = [&](std::unique_ptr<connection> c, const conninfo& from, bool listener) {
    try {
      identify(*c, until, what, listener);
    } catch (const error& e) {
      // A standby in a multi-host list without target_session_attrs: start the next attempt
      // with the host after it.
      if (e.sqlstate() == "25006" && from.hosts() > 1 && from.last_good) ++*from.last_good;
      throw;
    }
    return c;
  };
  if (info) {
    auto c = identified(connection::open(*info, until, what, interrupt_fd), *info, true);
    std::lock_guard<std::mutex> lock(connect_mu_);
    if (!sql_) sql_ = std::make_shared<const statements>(*c, options_.schema);
    return c;
  }
  {
    std::unique_lock<std::mutex> lock(connect_mu_);
    auto now = steady::now();
    if (reconnect_after_ > now) {
      if (reconnect_after_ >= until)
        throw error(errc::unavailable,
                    what + " on postgresql: " + last_connect_error_ + " (retrying with backoff)",
                    kind_name, "08001");
      // Sleep on a copy: another thread's failed connect may move reconnect_after_ meanwhile.
      const auto wake = reconnect_after_;
      lock.unlock();
      std::this_thread::sleep_until(wake);
    }
  }
  try {
    auto c = identified(connection::open(info_, until, what, interrupt_fd), info_, false);
    std::lock_guard<std::mutex> lock(connect_mu_);
    connect_backoff_ = milliseconds{0};
    reconnect_after_ = {};
    if (!sql_) sql_ = std::make_shared<const statements>(*c, options_.schema);
    return c;
  } catch (const error& e) {
    std::lock_guard<std::mutex> lock(connect_mu_);
    connect_backoff_ =
        std::min(milliseconds{1000}, std::max(milliseconds{25}, connect_backoff_ * 2));
    reconnect_after_ = steady::now() + jitter(connect_backoff_ / 2, connect_backoff_);
    last_connect_error_ = e.what();
    auto pos = last_connect_error_.find(" on postgresql: ");
    if (pos != std::string::npos) last_connect_error_ = last_connect_error_.substr(pos + 16);
    throw;
  }
}

// One round trip per new connection (connections are pooled). Every function here is
// callable by any role. The timeline is the current WAL file's: a promoted standby writes on a
// new one at once (pg_control's checkpoint timeline follows only at its next checkpoint).
void postgresql_backend::identify(connection& c, deadline until, const std::string& what,
                                  bool listener) {
  static const std::string query =
      "SELECT pg_catalog.pg_is_in_recovery(), "
      "(SELECT system_identifier FROM pg_catalog.pg_control_system())::text, "
      "CASE WHEN pg_catalog.pg_is_in_recovery() THEN '' ELSE pg_catalog.substr("
      "pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END, "
      "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_replication r "
      "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s "
      "WHERE s.active_pid = r.pid AND s.slot_type = 'logical')), "
      "pg_catalog.current_setting('synchronous_standby_names'), "
      "pg_catalog.current_setting('synchronous_commit')";
  if (identify_failed_) return;
  std::vector<result> rs;
  try {
    rs = c.exec_simple(what, query, until);
  } catch (const error& e) {
    if (c.broken() || e.sqlstate().empty()) throw;
    // A server that lacks one of these (a PostgreSQL-compatible one) or a role denied them:
    // no failover tracking, said once. Any other error (a statement timeout, a serialization
    // failure) leaves this connection untracked (epoch 0) and the next one tries again.
    const std::string& s = e.sqlstate();
    const bool lacking = s == "42883" || s == "42501" || s == "0A000" || s == "42P01";
    if (!lacking) return;
    if (!identify_failed_.exchange(true))
      log(log_level::info, std::string("postgresql: cannot tell which server this is (") +
                               e.what() + "); failovers are not tracked");
    return;
  }
  const result& r = rs.at(0);
  if (r.boolean(0, 0))
    throw error(errc::unavailable,
                what +
                    " on postgresql: connected to a standby (a server in recovery, "
                    "read-only): sqlock needs the primary; list the servers in the URL with "
                    "target_session_attrs=read-write, or point it at the primary",
                kind_name, "25006");
  const std::string id = r.text(0, 1) + "/" + r.text(0, 2);
  std::uint64_t epoch;
  std::string before;
  {
    std::lock_guard<std::mutex> lock(connect_mu_);
    if (server_id_.empty() || (server_id_ != id && !listener)) {
      before = server_id_;
      server_id_ = id;
      ++epoch_;
    }
    epoch = epoch_.load();
  }
  c.server_epoch = epoch;
  if (!before.empty())
    log(log_level::warn,
        "postgresql: the server changed (system identifier/timeline " + before + " -> " + id +
            "): a failover or switchover; leases granted before it are at risk until a renewal "
            "confirms them on this server");
  const std::int64_t standbys = r.integer(0, 3);
  const std::string names = r.text(0, 4), commit = r.text(0, 5);
  if (standbys > 0 && (names.empty() || commit == "local" || commit == "off") &&
      !warned_async_.exchange(true))
    log(log_level::warn,
        "postgresql: the primary replicates to " + std::to_string(standbys) +
            " standby(s) asynchronously (" +
            (names.empty() ? std::string("synchronous_standby_names is empty")
                           : "synchronous_commit=" + commit) +
            "): a failover can lose the last grants and hand their fencing tokens out again; "
            "set synchronous_standby_names (Patroni: synchronous_mode: true) with "
            "synchronous_commit=on so that a grant is on a standby before it returns");
}

const statements& postgresql_backend::sql() {
  std::lock_guard<std::mutex> lock(connect_mu_);
  if (!sql_)
    throw error(errc::internal, "postgresql: statements used before connecting", kind_name);
  return *sql_;
}

postgresql_backend::pooled postgresql_backend::checkout(deadline until, const std::string& what) {
  std::unique_lock<std::mutex> lock(pool_mu_);
  for (;;) {
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (stale(*c)) {  // opened before a failover: may still reach the old server
        --open_;
        continue;
      }
      return pooled(c.release(), pool_return{this});
    }
    if (open_ < options_.pool_size) break;
    if (pool_cv_.wait_until(lock, until) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.pool_size)
      throw error(errc::unavailable,
                  what +
                      " on postgresql: no free connection before the call's deadline "
                      "(pool_size " +
                      std::to_string(options_.pool_size) + ")",
                  kind_name);
  }
  ++open_;
  lock.unlock();
  try {
    return pooled(connect(until, what).release(), pool_return{this});
  } catch (...) {
    lock.lock();
    --open_;
    pool_cv_.notify_one();
    throw;
  }
}

void postgresql_backend::give_back(connection* raw) noexcept {
  std::unique_ptr<connection> c(raw);
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (c->broken() || c->in_transaction()) {
    --open_;
    c.reset();  // a broken or mid-transaction connection is never reused
  } else {
    try {
      idle_.push_back(std::move(c));
    } catch (...) {
      --open_;
    }
  }
  pool_cv_.notify_one();
}

// One statement; serialization failures and deadlocks are retried (the statement rolled
// back, so retrying is safe even for a grant), never surfaced before the deadline.
result postgresql_backend::run(connection& c, const std::string& what, const char* name,
                               const std::string& text, const std::vector<param>& params,
                               deadline until, errc after_send) {
  // Named statements carry a hash of their text: a server connection shared through a
  // pooler may hold another client's statement of the same base name (another schema).
  std::string named;
  for (int attempt = 0;; ++attempt) {
    const bool use_named = name && options_.prepared_statements && !unnamed_only_;
    if (use_named && named.empty()) named = std::string(name) + "_" + fnv_hex(text);
    try {
      return c.exec(what, use_named ? named.c_str() : nullptr, text, params, until, after_send);
    } catch (const error& e) {
      if (use_named && e.sqlstate() == "26000" && !c.broken() && !c.in_transaction()) {
        // "prepared statement does not exist": a pooler in transaction mode moved us to
        // another server connection. The statement did not run; go unnamed from now on.
        if (!unnamed_only_.exchange(true))
          log(log_level::info,
              "postgresql: named prepared statements do not survive this connection pooler; "
              "using unnamed statements (set backend_options::prepared_statements = false)");
        continue;
      }
      if (!retryable(e.sqlstate()) || c.broken() || c.in_transaction()) throw;
      auto pause = jitter(milliseconds{1}, milliseconds{std::min(50, 2 << std::min(attempt, 5))});
      if (steady::now() + pause >= until) throw;
      std::this_thread::sleep_for(pause);
    }
  }
}

bool postgresql_backend::end_lease(const std::string& what, const char* name,
                                   std::string statements::*text, const std::vector<param>& params,
                                   deadline until, lease_kind kind) {
  ended_rows out;
  {
    auto c = checkout(until, what);
    // A row can be locked for a moment by other statements (a contender's refused upsert
    // locks it; so does a waiter's mark): look again a few times, for up to ~30 ms, before
    // concluding that an open fenced transaction holds it. Reporting at once deferred
    // releases under contention by 20-100 ms each (grants/s fell 6x, measured).
    for (int attempt = 0;; ++attempt) {
      out = read_ended(run(*c, what, name, sql().*text, params, until));
      out.stamp(c->server_epoch);
      if (out.locked) {
        auto pause = jitter(milliseconds{1}, milliseconds{1 << std::min(attempt, 3)});
        if (attempt < 6 && steady::now() + pause < until) {
          std::this_thread::sleep_for(pause);
          continue;
        }
        throw row_locked(what +
                             " on postgresql: the lease's row is locked by another open "
                             "transaction (a fenced transaction?); not waiting for it",
                         kind_name, std::string(sqlstate_row_locked));
      }
      break;
    }
  }
  wake(params[0].value_or(std::string()), out, kind);
  return out.ended;
}

// A lease handed to a queued waiter wakes that waiter alone (if it waits in this process; its
// client's handoff channel tells the others); the others still find it held. Room left after
// a semaphore's handoffs, or a release that handed nothing, wakes the name's local waiters.
void postgresql_backend::wake(const std::string& name, const ended_rows& r, lease_kind kind) {
  for (const auto& h : r.handed) registry_.hand_off(name, h);
  if (r.changed && (r.handed.empty() || kind == lease_kind::semaphore)) registry_.notify(name);
}

}  // namespace sqlock::detail::pg
