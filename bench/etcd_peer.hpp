// SPDX-License-Identifier: Apache-2.0
#pragma once
// etcd's own lock recipe as a peer: the Go program bench/etcd/main.go (built by bench/run,
// not by CMake) measures clientv3/concurrency.Mutex against a one-node etcd; sqlock_bench
// starts it once per measured run, inside the scenarios' repeat loops, and reads its JSON line.

#include <cstdint>
#include <string>

#include "bench.hpp"

namespace bench {

/// One measured run of the Go client, as it reported it.
struct etcd_run {
  double seconds = 0;     ///< from the start barrier to the last goroutine's exit
  std::uint64_t ops = 0;  ///< cycles (uncontended) or grants (contended)
  double ops_per_s = 0;   ///< ops / seconds
  double p50_ms = 0;      ///< cycle latency (uncontended) or wait for grant (contended)
  double p99_ms = 0;
  double cpu_s = 0;            ///< getrusage(RUSAGE_SELF) of the Go process over the run
  double ctx_switches = 0;     ///< its voluntary + involuntary context switches over the run
  int max_holders = 0;         ///< contended: most clients holding the lock at once (1 is right)
  std::uint64_t overlaps = 0;  ///< contended: grants while another client held the lock
};

/// Scenario 1's label for etcd's Mutex cycle (uncontended, at 1 and 8 clients).
inline const std::string etcd_cycle_variant = "etcd concurrency.Mutex Lock + Unlock";

/// Scenario 2's label for etcd's Mutex with 8 contenders and a hold of `hold_ms`.
inline std::string etcd_contention_variant(int hold_ms) {
  return "etcd concurrency.Mutex (8 clients, hold " + std::to_string(hold_ms) + " ms)";
}

/// True when both --etcd-bench and --etcd were given.
inline bool etcd_enabled(const config& cfg) {
  return !cfg.etcd_bench.empty() && !cfg.etcd_endpoint.empty();
}

/// "3.4.23 (client: clientv3 + concurrency.Mutex, go1.19.8)"; throws when etcd does not answer.
std::string etcd_version(const config& cfg);

/// Uncontended: `clients` goroutines, each its own clientv3.Client and concurrency.Session
/// (ttl 30 s), cycling Lock/Unlock over its own 32 keys for cfg.run.
etcd_run etcd_uncontended(const config& cfg, int clients);

/// Contended: `clients` goroutines, each its own client and session, Lock -> hold `hold_ms` ->
/// Unlock on ONE key for cfg.run. A run that saw two holders at once returns with `overlaps` > 0
/// (the caller reports the violation); any other failure throws.
etcd_run etcd_contended(const config& cfg, int clients, int hold_ms);

}  // namespace bench
