// SPDX-License-Identifier: Apache-2.0
#pragma once
// The meters the PostgreSQL scenarios read besides their own clocks: a backend wrapper timing
// every grant attempt, the server's statement and CPU counters, a LISTEN connection counting
// notifications, and a count of semaphore units in use.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sqlock/backend.hpp>

#include "pg.hpp"
#include "util.hpp"

namespace bench {

/// Times every grant attempt (lock and semaphore) between the client and the real backend:
/// derives from the public sqlock::backend_wrapper (leveldb's EnvWrapper pattern), which
/// forwards every other call unchanged.
class timing_backend final : public sqlock::backend_wrapper {
 public:
  explicit timing_backend(std::shared_ptr<sqlock::backend> inner)
      : sqlock::backend_wrapper(std::move(inner)) {}

  /// The attempts' durations (us) since the last call.
  std::vector<double> take_attempts() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> out;
    out.swap(attempt_us_);
    return out;
  }

  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline u) override {
    return timed([&] { return wrapped().try_acquire(r, u); });
  }
  sqlock::acquire_result try_acquire_semaphore(const sqlock::semaphore_request& r,
                                               sqlock::deadline u) override {
    return timed([&] { return wrapped().try_acquire_semaphore(r, u); });
  }

  /// The releases' durations (us) since the last call.
  std::vector<double> take_releases() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> out;
    out.swap(release_us_);
    return out;
  }
  bool release(const sqlock::lease_key& key, sqlock::deadline u) override {
    auto t0 = clk::now();
    bool ended = wrapped().release(key, u);
    auto us = us_between(t0, clk::now());
    std::lock_guard<std::mutex> lock(mu_);
    release_us_.push_back(us);
    return ended;
  }

 private:
  template <class F>
  sqlock::acquire_result timed(F attempt) {
    auto t0 = clk::now();
    auto res = attempt();
    auto us = us_between(t0, clk::now());
    std::lock_guard<std::mutex> lock(mu_);
    attempt_us_.push_back(us);
    return res;
  }
  std::mutex mu_;
  std::vector<double> attempt_us_, release_us_;
};

/// Server-side counters, read through a superuser connection.
struct server_stats {
  pg& admin;
  std::string role;
  /// Statements executed by the benchmark role (pg_stat_statements, updated at statement end).
  double role_calls();
  /// calls and total_exec_time (ms) of statements whose text starts with `prefix`.
  std::pair<double, double> calls_like(const std::string& prefix);
  /// CPU seconds of every server process (backends, autovacuum, WAL writer, checkpointer...).
  double server_cpu();
};

/// Counts the notifications sqlock's releases send on its channel, from a LISTEN connection of
/// our own (standing in for waiting clients).
class notification_counter {
 public:
  /// Listens on every channel of `channels` and counts what arrives on any of them.
  notification_counter(const std::string& url, const std::vector<std::string>& channels);
  ~notification_counter();
  std::uint64_t heard() const { return heard_.load(); }

 private:
  pg conn_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> heard_{0};
  std::thread thread_;
};

/// Units in use, counted by the holders themselves: +1 after the grant returned, -1 before the
/// release is sent (both inside the lease by the database's reckoning), so a count above the
/// limit is a real violation.
struct unit_meter {
  std::atomic<int> in_use{0}, peak{0};
  std::atomic<std::uint64_t> over{0};
  int limit;
  explicit unit_meter(int l) : limit(l) {}
  void enter() {
    int now = in_use.fetch_add(1) + 1;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    if (now > limit) over.fetch_add(1);
  }
  void leave() { in_use.fetch_sub(1); }
};

}  // namespace bench
