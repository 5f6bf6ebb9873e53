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
  if (info) {
    auto c = connection::open(*info, until, what, interrupt_fd);
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
    auto c = connection::open(info_, until, what, interrupt_fd);
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
