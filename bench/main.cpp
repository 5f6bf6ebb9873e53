// SPDX-License-Identifier: Apache-2.0
// sqlock_bench: sqlock against the bare statements it sends and against what users pick
// instead (advisory locks, Redis), side by side in one run. Started by bench/run (full) and
// bench/smoke (seconds), which start the servers; see bench/README.md.

#include <sqlite3.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench.hpp"
#include "etcd_peer.hpp"
#include "pg.hpp"
#include "util.hpp"

namespace bench {
namespace {

void usage() {
  std::cerr << "usage: sqlock_bench [options]\n"
               "  --pg URL            benchmark role, direct connection (required for PostgreSQL)\n"
               "  --pg-admin URL      superuser (statistics, bulk fills)\n"
               "  --pg-capture URL    role with log_statement=all (reads sqlock's statements)\n"
               "  --pg-log FILE       the server's log file\n"
               "  --pgbench PATH      pgbench binary (optional)\n"
               "  --redis HOST:PORT   Redis for the baseline (optional)\n"
               "  --etcd-bench PATH   the Go client of etcd's Mutex, bench/etcd (optional, with "
               "--etcd)\n"
               "  --etcd HOST:PORT    etcd for the etcd Mutex peer (optional, with --etcd-bench)\n"
               "  --sqlite-dir DIR    where the SQLite file goes (required for scenario 5)\n"
               "  --mariadb URL       MariaDB for scenario 9 (password: SQLOCK_MARIADB_PASSFILE)\n"
               "  --out DIR           results directory (required)\n"
               "  --smoke             tiny durations and sizes, one repeat (seconds in total)\n"
               "  --repeats N         repeats per scenario (default 3)\n"
               "  --seconds S         one measured run (default 3)\n"
               "  --only LIST         scenarios to run, e.g. 1,5 (7, 8: semaphores on PostgreSQL, "
               "SQLite; 9: MariaDB)\n"
               "  sqlock_bench sqlite-worker ...   (internal: one SQLite process)\n";
}

std::string machine_line() {
  std::ostringstream o;
  utsname u{};
  uname(&u);
  o << u.sysname << " " << u.release << " " << u.machine << ", " << sysconf(_SC_NPROCESSORS_ONLN)
    << " CPUs";
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0) {
      o << " (" << line.substr(line.find(':') + 2) << ")";
      break;
    }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) o << ", load average at start " << load[0] << " " << load[1];
  return o.str();
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  using namespace bench;
  if (argc > 1 && std::strcmp(argv[1], "sqlite-worker") == 0) return sqlite_worker_main(argc, argv);
  config cfg;
  char exe[4096];
  auto n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  cfg.self_exe = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : argv[0];
  double seconds = -1;
  int repeats = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--pg")
      cfg.pg_url = val();
    else if (a == "--pg-admin")
      cfg.pg_admin_url = val();
    else if (a == "--pg-capture")
      cfg.pg_capture_url = val();
    else if (a == "--pg-log")
      cfg.pg_log = val();
    else if (a == "--pgbench")
      cfg.pgbench = val();
    else if (a == "--redis") {
      auto hp = val();
      auto c = hp.rfind(':');
      cfg.redis_host = hp.substr(0, c);
      cfg.redis_port = std::stoi(hp.substr(c + 1));
    } else if (a == "--etcd-bench")
      cfg.etcd_bench = val();
    else if (a == "--etcd")
      cfg.etcd_endpoint = val();
    else if (a == "--sqlite-dir")
      cfg.sqlite_dir = val();
    else if (a == "--mariadb")
      cfg.mariadb_url = val();
    else if (a == "--out")
      cfg.out_dir = val();
    else if (a == "--smoke")
      cfg.smoke = true;
    else if (a == "--repeats")
      repeats = std::stoi(val());
    else if (a == "--seconds")
      seconds = std::stod(val());
    else if (a == "--only") {
      std::stringstream ss(val());
      std::string s;
      while (std::getline(ss, s, ',')) cfg.only.insert(s);
    } else {
      usage();
      return 64;
    }
  }
  if (cfg.out_dir.empty() ||
      (cfg.pg_url.empty() && cfg.sqlite_dir.empty() && cfg.mariadb_url.empty())) {
    usage();
    return 64;
  }
  if (!cfg.pg_url.empty() &&
      (cfg.pg_admin_url.empty() || cfg.pg_capture_url.empty() || cfg.pg_log.empty())) {
    std::cerr << "sqlock_bench: --pg needs --pg-admin, --pg-capture and --pg-log\n";
    return 64;
  }
  // Scenario 9 asked for by number needs its server; given a server, it never skips silently.
  if (cfg.only.count("9") && cfg.mariadb_url.empty()) {
    std::cerr << "sqlock_bench: --only 9 (MariaDB) needs --mariadb URL\n";
    return 64;
  }
#ifndef SQLOCK_BENCH_MARIADB
  if (!cfg.mariadb_url.empty()) {
    std::cerr << "sqlock_bench: --mariadb given, but this build has no MariaDB backend "
                 "(configure with -DSQLOCK_WITH_MARIADB=ON)\n";
    return 64;
  }
#endif
  if (cfg.etcd_bench.empty() != cfg.etcd_endpoint.empty()) {
    std::cerr << "sqlock_bench: --etcd-bench and --etcd go together\n";
    return 64;
  }
  if (cfg.smoke) {
    cfg.repeats = 1;
    cfg.run = milliseconds{250};
    cfg.keepalive_leases = 200;
    cfg.keepalive_ttl = milliseconds{600};
    cfg.idle_leases = 50;
    cfg.idle_window = milliseconds{300};
    cfg.table_sizes = {100, 2000};
    cfg.purge_repeats = 1;
    cfg.waiters = 3;
  }
  if (repeats > 0) cfg.repeats = repeats;
  if (seconds > 0) cfg.run = milliseconds{static_cast<long>(seconds * 1000)};

  report rep;
  const std::string machine = machine_line();  // its load average is the one at the start
  auto started = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&started));
  std::string pg_version = "not run", redis_version = "not run", etcd_version_line = "not run",
              mariadb_line = "not run";
  try {
    if (!cfg.pg_url.empty()) {
      pg c(cfg.pg_url);
      pg_version = c.scalar("SELECT version()");
      pg_version = pg_version.substr(0, pg_version.find(" on "));
      auto s = [&](const char* k) { return c.scalar(std::string("SHOW ") + k); };
      pg_version += " (fsync " + s("fsync") + ", synchronous_commit " + s("synchronous_commit") +
                    ", shared_buffers " + s("shared_buffers") + ")";
    }
    if (cfg.redis_port) {
      redis r(cfg.redis_host, cfg.redis_port);
      r.command({"PING"});
      redis_version = "Redis on " + cfg.redis_host + ":" + std::to_string(cfg.redis_port) +
                      " (no persistence: replies from memory)";
    }
    if (etcd_enabled(cfg))
      etcd_version_line =
          "etcd " + etcd_version(cfg) + ", one node on " + cfg.etcd_endpoint +
          ", etcd's defaults: its WAL is fsync'd on every commit (no --unsafe-no-fsync), so a "
          "grant costs a disk flush as a PostgreSQL commit does; one Go client process per "
          "measured run";
#ifdef SQLOCK_BENCH_MARIADB
    if (!cfg.mariadb_url.empty() && cfg.wants("9"))
      mariadb_line = mariadb_version(cfg) +
                     ", on TCP loopback; sqlock and the bare loop connect "
                     "the same way";
#endif
    if (!cfg.pg_url.empty()) run_postgresql(cfg, rep);
    if (!cfg.sqlite_dir.empty() && cfg.wants("5")) {
      std::cerr << "scenario 5: SQLite\n";
      run_sqlite(cfg, rep);
    }
    if (!cfg.sqlite_dir.empty() && cfg.wants("8")) {
      std::cerr << "scenario 8: SQLite semaphores\n";
      run_sqlite_semaphores(cfg, rep);
    }
#ifdef SQLOCK_BENCH_MARIADB
    if (!cfg.mariadb_url.empty() && cfg.wants("9")) {
      std::cerr << "scenario 9: MariaDB\n";
      run_mariadb(cfg, rep);
    }
#endif
  } catch (const std::exception& e) {
    std::cerr << "sqlock_bench: FAILED: " << e.what() << "\n";
    rep.write(cfg.out_dir);
    return 1;
  }
  verdicts(cfg, rep);
  auto took = std::time(nullptr) - started;
  std::ostringstream pre;
  pre << "# sqlock performance\n\n"
      << "Generated by `bench/run` on " << when << " in " << took / 60 << " min " << took % 60
      << " s" << (cfg.smoke ? " (SMOKE run: tiny durations, figures meaningless)" : "") << ".\n\n"
      << "- Machine: " << machine << "\n"
      << "- PostgreSQL: " << pg_version << ", on TCP loopback; every client (sqlock, libpq, "
      << "pgbench) connects the same way\n"
      << "- Redis: " << redis_version << "\n"
      << "- etcd: " << etcd_version_line << "\n"
      << "- SQLite: " << sqlite3_libversion() << ", file on local disk\n"
      << "- MariaDB: " << mariadb_line << "\n"
      << "- Each figure: " << cfg.repeats << " repeated runs of " << cfg.run.count()
      << " ms (unless stated), variants interleaved within each repeat so that noise hits them "
         "alike; the table shows the median, min and max over the repeats of the per-run "
         "value.\n";
  rep.set_preamble(pre.str());
  rep.write(cfg.out_dir);
  chart(cfg, rep, cfg.out_dir);
  std::cerr << "sqlock_bench: results in " << cfg.out_dir << "/results.md\n";
  if (!rep.violations().empty()) {
    for (auto& v : rep.violations()) std::cerr << "sqlock_bench: SAFETY VIOLATION: " << v << "\n";
    return 3;
  }
  return 0;
}
