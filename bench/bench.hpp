// SPDX-License-Identifier: Apache-2.0
#pragma once
// The benchmark's configuration, its two halves: PostgreSQL (with the Redis baseline) and
// SQLite, and what main makes of their figures: the targets and the chart.

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "report.hpp"

namespace bench {

struct config {
  std::string pg_url;          ///< the benchmark role, direct (TCP loopback)
  std::string pg_admin_url;    ///< a superuser: statistics, bulk fills, server process ids
  std::string pg_capture_url;  ///< a role with log_statement=all, to read sqlock's statements
  std::string pg_log;          ///< the server's log file
  std::string pgbench;         ///< pgbench binary; empty: skip that baseline
  std::string redis_host = "127.0.0.1";
  int redis_port = 0;         ///< 0: skip the Redis baseline
  std::string etcd_bench;     ///< the Go client of etcd's Mutex (bench/etcd); empty: skip etcd
  std::string etcd_endpoint;  ///< etcd's client address, host:port
  std::string sqlite_dir;
  std::string mariadb_url;  ///< scenario 9; the password comes from SQLOCK_MARIADB_PASSFILE
  std::string out_dir;
  std::string self_exe;
  bool smoke = false;
  int repeats = 3;
  std::chrono::milliseconds run{3000};  ///< one measured run of a loop
  std::vector<int> thread_counts{1, 2, 8};
  int waiters = 5;               ///< scenario 2 handoff
  int keepalive_leases = 10000;  ///< scenario 3 and memory (6)
  std::chrono::milliseconds keepalive_ttl{3000};
  int idle_leases = 1000;  ///< scenario 6 idle CPU
  std::chrono::milliseconds idle_window{10000};
  std::vector<long> table_sizes{1000, 100000, 1000000};
  int purge_repeats = 3;
  std::set<std::string> only;  ///< scenario numbers to run ("1".."9"); empty: all
  bool wants(const std::string& s) const { return only.empty() || only.count(s) > 0; }
};

void run_postgresql(const config& cfg, report& rep);
void run_sqlite(const config& cfg, report& rep);
/// Scenario 8: the semaphore cycle on SQLite in one and two processes.
void run_sqlite_semaphores(const config& cfg, report& rep);
/// Scenario 9: the lock cycle on MariaDB against the bare Connector/C loop (s9_mariadb.cpp;
/// only when built with SQLOCK_WITH_MARIADB).
void run_mariadb(const config& cfg, report& rep);
/// "10.11.x-MariaDB (innodb_flush_log_at_trx_commit 1, ...)" for the results' preamble.
std::string mariadb_version(const config& cfg);
/// The child side of the SQLite scenarios (`sqlock_bench sqlite-worker ...`).
int sqlite_worker_main(int argc, char** argv);

/// Adds each target's verdict from the figures in `rep` (targets.cpp).
void verdicts(const config& cfg, report& rep);
/// Writes the chart's gnuplot data and script (chart.gp) into `dir` (chart.cpp).
void chart(const config& cfg, const report& rep, const std::string& dir);

}  // namespace bench
