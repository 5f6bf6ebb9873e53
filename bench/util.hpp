// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: every scenario is a set of worker threads started together behind a barrier, each
// timing its own calls with steady_clock into a private vector (no shared state on the hot
// path), stopped by a flag after a fixed wall time. Throughput is completed operations divided
// by the wall time from the barrier to the last worker's exit; latencies are per call.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

using clk = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Microseconds between two steady_clock points.
inline double us_between(clk::time_point a, clk::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch())
      .count();
}

/// "1 thread", "8 threads": how the report labels a thread count.
inline std::string threads_label(int threads) {
  return std::to_string(threads) + (threads == 1 ? " thread" : " threads");
}

/// The p-th percentile (0..100) by nearest rank; sorts `v`. 0 for an empty vector.
double percentile(std::vector<double>& v, double p);
double median_of(std::vector<double> v);

/// What a worker sees: its index, the stop flag, and places to put its figures.
struct worker_ctx {
  int index = 0;
  const std::atomic<bool>* stop = nullptr;
  std::vector<double> lat_us;    ///< one entry per operation (filled by run_workers)
  std::vector<double> extra_us;  ///< a second latency the worker may record (e.g. release)
  std::vector<double> third_us;  ///< a third one
  std::uint64_t ops = 0;
  std::uint64_t events = 0;  ///< a counter the worker may use (e.g. refused attempts)
  bool stopped() const { return stop->load(std::memory_order_relaxed); }
};

struct run_result {
  std::uint64_t ops = 0;
  std::uint64_t events = 0;
  double seconds = 0;
  std::vector<double> lat_us, extra_us, third_us;
  double ops_per_s() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

/// A worker: `setup` runs before the barrier (connect, prepare) and returns the operation; the
/// operation is called repeatedly until the stop flag; run_workers times each call.
using op_fn = std::function<void(worker_ctx&)>;
using setup_fn = std::function<op_fn(worker_ctx&)>;

/// Runs `threads` workers for `duration`, timing each op. With `self_timed`, the op loops by
/// itself until stopped and records its own latencies (for ops that block, like waiting).
run_result run_workers(int threads, milliseconds duration, const setup_fn& setup,
                       bool self_timed = false);

/// A fast per-thread generator for names and nonces in baselines.
std::mt19937_64& rng();
std::string random_hex(std::size_t bytes);

/// Resident set size of this process, bytes (/proc/self/statm).
std::int64_t rss_bytes();
/// Heap bytes in use (mallinfo2().uordblks + hblkhd).
std::int64_t heap_bytes();
/// CPU time (user + system) of this process, seconds (getrusage).
double process_cpu_seconds();
/// Context switches (voluntary + involuntary) of this process so far (getrusage).
double process_context_switches();
/// CPU time (user + system) of another process from /proc/<pid>/stat, seconds; -1 if gone.
double pid_cpu_seconds(int pid);

/// Runs a command (argv) and returns its stdout; throws if it exits non-zero.
std::string run_capture(const std::vector<std::string>& argv, int* status = nullptr);

/// A spawned child with its stdout on a pipe (posix_spawn, so no fork of a threaded process).
struct child {
  int pid = -1;
  int out_fd = -1;
  /// Waits for it and returns all it printed; throws if it failed.
  std::string finish();
};
child spawn(const std::vector<std::string>& argv);

/// Parses "k=v k=v ..." into a map.
std::map<std::string, std::string> parse_kv(const std::string& line);

struct failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace bench
