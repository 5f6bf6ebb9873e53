// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the PostgreSQL scenarios share: how they open sqlock clients, name their rows, and run
// the lock cycle that scenarios 1 and 7 both measure; and the scenarios themselves, one file
// each (s1_uncontended.cpp, s2_handoff.cpp, s3_s6_keepalive.cpp, s4_table_size.cpp,
// s7_semaphores.cpp), run in turn by run_postgresql (pg_scenarios.cpp).

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sqlock/sqlock.hpp>

#include "bench.hpp"
#include "capture.hpp"
#include "instruments.hpp"
#include "util.hpp"

namespace bench {

sqlock::backend_options backend_opts(std::size_t pool, bool notifications,
                                     const std::string& schema = "public");

/// A client over a timing_backend, so a scenario can read each grant attempt's duration.
struct timed_client {
  std::shared_ptr<timing_backend> backend;
  std::unique_ptr<sqlock::client> client;
};
timed_client make_timed(const config& cfg, const sqlock::backend_options& bo,
                        sqlock::client_options co = {});

inline sqlock::lock_options no_keepalive(milliseconds ttl = milliseconds{30000}) {
  sqlock::lock_options o;
  o.keepalive = false;
  o.ttl = ttl;
  return o;
}

/// Names: numeric strings, so that pgbench (whose variables are numbers) can form the same ones.
inline std::string name_for(int base, int thread, int i) {
  return std::to_string(base + thread * 100 + i);
}
constexpr int names_per_thread = 32;
constexpr int base_plain = 1000000;   ///< scenario 1's rows (and scenario 7's lock cycle)
constexpr int base_marked = 2000000;  ///< scenario 1's rows marked by a waiter
constexpr int base_sem = 3000000;     ///< scenario 7's semaphores

/// How an uncontended cycle (scenarios 1 and 7) is measured, in the words of the report.
inline const std::string how_cycle_rate =
    "completed cycles / wall time from the start barrier to the last thread's exit";
inline const std::string how_cycle_latency =
    "per cycle, steady_clock around acquire+release in the calling thread; p50/p99 over "
    "every cycle of the run";

/// The p-th percentile of a copy of `v`.
inline double p(std::vector<double> v, double q) { return percentile(v, q); }

/// One variant of an uncontended cycle: its label and a measured run at a thread count.
struct cycle_variant {
  std::string name;
  std::function<run_result(int threads)> run;
};

/// One sqlock client per thread count (pool_size = threads, notifications on), opened on
/// first use and kept across repeats.
class clients_by_threads {
 public:
  explicit clients_by_threads(const config& cfg) : cfg_(cfg) {}
  sqlock::client& operator()(int threads);
  void clear() { clients_.clear(); }

 private:
  const config& cfg_;
  std::map<int, std::unique_ptr<sqlock::client>> clients_;
};

/// Scenario 1's sqlock cycle: each thread acquires and releases its own 32 names in turn
/// (keepalive off, ttl 30 s) through `c`.
run_result sqlock_lock_cycles(const config& cfg, sqlock::client& c, int threads);
/// The same cycle as sqlock's captured statements, through blocking libpq (one connection per
/// thread).
run_result bare_lock_cycles(const config& cfg, const statements& st, int threads);

/// The least a lease in a row can be: an upsert that takes a missing or expired row with a
/// token from the sequence, and an UPDATE that ends it. Both commit durably (the server's
/// synchronous_commit). Scenario 1 loops them uncontended (the cycle sqlock's schema 3 paid:
/// two flushed commits); scenario 2 is the naive retry loop on them. $1 name, $2 owner, $3
/// nonce, $4 ttl ms / $1 name, $2 nonce, $3 token.
extern const std::string naive_acquire, naive_release;
/// Issue 18: sqlock's cycle with the history of leases on (schema 10: a trigger records each
/// released lease in the release's statement); "sqlock" is the same cycle with it off.
inline const std::string history_on_variant = "sqlock, history on";
inline const std::string two_durable_variant =
    "bare libpq, two durable statements (minimal upsert + UPDATE)";
inline const std::string schema3_variant =
    "bare libpq, schema 3's statements (both durable, before issue 14)";
/// Scenario 2's anatomy of a handoff release: durable or not; mode 0 no other listener, 1 eight
/// on the channel the handoff notifies, 2 eight on channels of their own.
inline std::string anatomy_variant(bool durable, int mode) {
  return std::string(durable ? "durable commit" : "synchronous_commit off") +
         (mode == 0   ? ", no other listener"
          : mode == 1 ? ", 8 listeners on its channel"
                      : ", 8 listeners on other channels");
}
/// Scenario 2's contention variants: who ("sqlock, fair", "sqlock, non-fair", "naive") and the
/// hold.
inline std::string contention_variant(const std::string& who, int hold_ms) {
  return who + " (8 clients, hold " + std::to_string(hold_ms) + " ms)";
}
/// Scenario 1's cycle through naive_acquire and naive_release (one libpq connection per thread).
run_result two_durable_cycles(const config& cfg, int threads);
/// sqlock's acquire and release as schema 3 sent them (git 79bef18, before issue 14: no queue,
/// and the release's commit waited for its flush like the grant's), for public. $1 name, $2
/// owner, $3 nonce, $4 metadata, $5 ttl ms, $6 mark, $7 mark ms / $1 name, $2 nonce, $3 token,
/// $4 channel.
extern const std::string schema3_acquire, schema3_release;
/// Scenario 1's cycle through schema3_acquire and schema3_release.
run_result schema3_cycles(const config& cfg, const std::string& channel, int threads);

// The scenarios (sections s1, s2, s3 and s6, s4, s7 of the report).
void scenario_uncontended(const config& cfg, report& rep, const statements& st,
                          server_stats& stats);
void scenario_handoff(const config& cfg, report& rep, const statements& st);
void scenario_keepalive(const config& cfg, report& rep, server_stats& stats);
void scenario_table_size(const config& cfg, report& rep, server_stats& stats);
void scenario_semaphores(const config& cfg, report& rep, const statements& st, server_stats& stats);

}  // namespace bench
