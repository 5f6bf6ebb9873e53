// SPDX-License-Identifier: Apache-2.0
// Scenarios 5 and 8: SQLite, sqlock against the same statements through the bare sqlite3 API,
// locks (5) and semaphores beside the lock cycle (8), in one process and in two processes on
// one file. Each process is a worker (sqlite_worker.cpp) started at one instant.

#include <algorithm>
#include <cstdio>
#include <iostream>

#include <sqlock/sqlock.hpp>

#include "bench.hpp"
#include "util.hpp"

namespace bench {
namespace {

const char* s5 = "s5";
const char* s8 = "s8";

// One measured run: `procs` worker processes of `impl` started at one instant on `file`.
void run_processes(const config& cfg, report& rep, const char* section, const std::string& file,
                   const std::string& impl, const std::string& variant, int procs, int r) {
  const std::string how_tp =
      "cycles summed over the processes / each process's own timed window (all start at one "
      "CLOCK_MONOTONIC instant)";
  const std::string how_lat =
      "per cycle, steady_clock around acquire+release; the median of the processes' p50";
  auto start = now_ns() + 400'000'000;
  std::vector<child> kids;
  for (int i = 0; i < procs; ++i)
    kids.push_back(spawn({cfg.self_exe, "sqlite-worker", impl, file, std::to_string(i),
                          std::to_string(start), std::to_string(cfg.run.count())}));
  double tput = 0;
  std::vector<double> p50s, p99s;
  for (auto& k : kids) {
    auto kv = parse_kv(k.finish());
    tput += std::stod(kv.at("ops")) / std::stod(kv.at("seconds"));
    p50s.push_back(std::stod(kv.at("p50")));
    p99s.push_back(std::stod(kv.at("p99")));
  }
  std::string what = std::to_string(procs) + (procs == 1 ? " process" : " processes");
  rep.add(section, "cycles/s, " + what, variant, "cycles/s", how_tp, tput);
  rep.add(section, "cycle latency p50, " + what, variant, "ms", how_lat, median_of(p50s) / 1000);
  rep.add(section, "cycle latency p99, " + what, variant, "ms",
          "per cycle, steady_clock; the worst process's p99",
          *std::max_element(p99s.begin(), p99s.end()) / 1000);
  std::cerr << "  " << section << " rep " << r + 1 << " " << what << " " << variant << ": "
            << report::fmt(tput) << " cycles/s\n";
}

// Removes `file` (and its WAL files) and migrates it anew; returns it.
std::string fresh_database(const std::string& file) {
  for (auto suffix : {"", "-wal", "-shm"}) std::remove((file + suffix).c_str());
  // Only migrate creates a missing file (by design): let it.
  sqlock::client c("sqlite:" + file);
  c.migrate();
  return file;
}

}  // namespace

void run_sqlite(const config& cfg, report& rep) {
  rep.section(s5, "5. SQLite: acquire+release cycles (WAL, synchronous=FULL)",
              "Each process cycles acquire+release over its own 32 names in one database "
              "file. Baseline: sqlock's statements (look-first SELECT; BEGIN IMMEDIATE, now, "
              "row, counter UPDATE ... RETURNING, upsert, COMMIT; release: BEGIN IMMEDIATE, "
              "now, UPDATE, COMMIT) prepared once and stepped through the bare sqlite3 API, "
              "with the same busy-wait policy. Both of the baseline's commits are durable (an "
              "fsync each); sqlock's release that hands nothing over commits with "
              "synchronous=NORMAL (issue 14: only a grant must be durable).");
  const std::string file = fresh_database(cfg.sqlite_dir + "/bench.db");
  // Issue 18: sqlock's cycle again with the history of leases on (a trigger records each
  // released lease in the release's transaction), switched on around that run only.
  auto with_history = [&](bool on) { sqlock::client("sqlite:" + file).enable_history(on); };
  for (int r = 0; r < cfg.repeats; ++r)
    for (int procs : {1, 2}) {
      for (std::string impl : {"sqlock", "bare"})
        run_processes(cfg, rep, s5, file, impl,
                      impl == "sqlock" ? "sqlock" : "bare sqlite3, same statements", procs, r);
      with_history(true);
      run_processes(cfg, rep, s5, file, "sqlock", "sqlock, history on", procs, r);
      with_history(false);
    }
}

void run_sqlite_semaphores(const config& cfg, report& rep) {
  rep.section(s8,
              "8. SQLite: semaphore acquire+release cycles (limit 4, count 1; WAL, "
              "synchronous=FULL)",
              "As scenario 5, with semaphores: each process cycles acquire+release of 1 unit of "
              "its own 32 semaphores of limit 4 in one database file. Baseline: sqlock's "
              "semaphore statements (look-first: now, semaphore row, live units, tickets; "
              "BEGIN IMMEDIATE, now, the same three reads, ended rows' horizon, DELETE of ended "
              "holders and lapsed tickets, counter UPDATE ... RETURNING, holder INSERT, "
              "semaphore upsert, COMMIT; release: BEGIN IMMEDIATE, now, UPDATE, COMMIT) "
              "prepared once and stepped through the bare sqlite3 API with the same busy-wait "
              "policy. Beside them, sqlock's lock cycle of scenario 5 in the same repeats, for "
              "the cost of a semaphore relative to a lock.");
  const std::string file = fresh_database(cfg.sqlite_dir + "/bench-sem.db");
  for (int r = 0; r < cfg.repeats; ++r)
    for (int procs : {1, 2})
      for (std::string impl : {"sqlock-sem", "bare-sem", "sqlock"})
        run_processes(cfg, rep, s8, file, impl,
                      impl == "sqlock-sem" ? "sqlock semaphore"
                      : impl == "bare-sem" ? "bare sqlite3, same statements"
                                           : "sqlock lock (scenario 5's cycle)",
                      procs, r);
}

}  // namespace bench
