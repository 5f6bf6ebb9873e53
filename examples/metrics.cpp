// SPDX-License-Identifier: Apache-2.0
// Observability: an event listener that keeps Prometheus-style counters and prints them in the
// text exposition format (what a /metrics endpoint would serve). The README maps each event to
// its metric name.
//
// usage: metrics DATABASE_URL

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {

// Counters and sums, keyed by metric name and label; thread-safe, never blocks for long.
class lock_metrics {
 public:
  void operator()(const sqlock::lock_event& e) {
    std::lock_guard<std::mutex> lock(mu_);
    switch (e.kind) {
      case sqlock::event_kind::attempt:
        ++counters_["sqlock_acquire_attempts_total"];
        break;
      case sqlock::event_kind::acquired:
        ++counters_["sqlock_acquired_total"];
        sums_["sqlock_acquire_wait_seconds_sum"] += seconds(e.elapsed);
        ++held_;
        break;
      case sqlock::event_kind::not_acquired:
        ++counters_["sqlock_not_acquired_total{reason=\"" + e.reason + "\"}"];
        break;
      case sqlock::event_kind::renewed:
        ++counters_["sqlock_renewals_total"];
        sums_["sqlock_renew_seconds_sum"] += seconds(e.elapsed);
        break;
      case sqlock::event_kind::renew_failed:
        ++counters_["sqlock_renew_failures_total"];
        break;
      case sqlock::event_kind::lost:
        ++counters_["sqlock_lost_total{reason=\"" + e.reason + "\"}"];
        --held_;
        break;
      case sqlock::event_kind::released:
        ++counters_["sqlock_released_total"];
        sums_["sqlock_hold_seconds_sum"] += seconds(e.elapsed);
        --held_;
        break;
      case sqlock::event_kind::revoke_requested:
        ++counters_["sqlock_release_requests_total"];
        break;
      case sqlock::event_kind::waiting:
        if (e.reason == "started") {
          ++counters_["sqlock_waits_total"];
          ++waiters_;
        } else {
          --waiters_;
        }
        break;
    }
  }
  std::string exposition() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (auto& [k, v] : counters_) out += k + " " + std::to_string(v) + "\n";
    for (auto& [k, v] : sums_) out += k + " " + std::to_string(v) + "\n";
    out += "sqlock_leases_held " + std::to_string(held_) + "\n";
    out += "sqlock_waiters " + std::to_string(waiters_) + "\n";
    return out;
  }
  long count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return counters_[key];
  }

 private:
  static double seconds(std::chrono::milliseconds d) { return d.count() / 1000.0; }
  std::mutex mu_;
  std::map<std::string, long> counters_;
  std::map<std::string, double> sums_;
  long held_ = 0;
  long waiters_ = 0;  // calls waiting now: a gauge
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    auto metrics = std::make_shared<lock_metrics>();
    sqlock::client_options opts;
    opts.listeners.push_back([metrics](const sqlock::lock_event& e) { (*metrics)(e); });
    sqlock::client c(argv[1], opts);
    c.migrate();
    sqlock::client admin(argv[1]);

    sqlock::lock_options short_lease;
    short_lease.ttl = 3s;  // renewed about every second, with room for a slow disk
    {
      auto a = c.try_acquire("jobs/a", short_lease);
      auto again = c.try_acquire("jobs/a");           // refused: "held"
      auto late = c.try_acquire_for("jobs/a", 50ms);  // waits: waiting started, timed out, ended
      std::this_thread::sleep_for(3200ms);            // three renewals
      auto b = c.try_acquire_for("jobs/b", 100ms);
    }  // both released
    auto doomed = c.try_acquire("jobs/c", short_lease);
    admin.force_release("jobs/c");  // the keepalive finds out: lost{reason="force released"}
    // The keepalive finds out at its next renewal and then delivers the event: wait for both
    // (not for a fixed time, which a loaded machine overruns).
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < give_up &&
           metrics->count("sqlock_lost_total{reason=\"force released\"}") == 0)
      std::this_thread::sleep_for(10ms);

    std::fputs(metrics->exposition().c_str(), stdout);
    bool ok = metrics->count("sqlock_acquired_total") == 3 &&
              metrics->count("sqlock_released_total") == 2 &&
              metrics->count("sqlock_renewals_total") >= 2 &&
              metrics->count("sqlock_lost_total{reason=\"force released\"}") == 1 &&
              metrics->count("sqlock_not_acquired_total{reason=\"held\"}") == 1 &&
              metrics->count("sqlock_not_acquired_total{reason=\"timed out\"}") == 1 &&
              metrics->count("sqlock_waits_total") == 1 &&
              metrics->exposition().find("sqlock_waiters 0\n") != std::string::npos;
    return ok ? 0 : 1;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "metrics: %s\n", e.what());
    return 1;
  }
}
