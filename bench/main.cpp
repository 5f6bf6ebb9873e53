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
#include "pg.hpp"
#include "util.hpp"

namespace bench {
namespace {

void usage() {
  std::cerr <<
      "usage: sqlock_bench [options]\n"
      "  --pg URL            benchmark role, direct connection (required for PostgreSQL)\n"
      "  --pg-admin URL      superuser (statistics, bulk fills)\n"
      "  --pg-capture URL    role with log_statement=all (reads sqlock's statements)\n"
      "  --pg-log FILE       the server's log file\n"
      "  --pgbench PATH      pgbench binary (optional)\n"
      "  --redis HOST:PORT   Redis for the baseline (optional)\n"
      "  --sqlite-dir DIR    where the SQLite file goes (required for scenario 5)\n"
      "  --out DIR           results directory (required)\n"
      "  --smoke             tiny durations and sizes, one repeat (seconds in total)\n"
      "  --repeats N         repeats per scenario (default 3)\n"
      "  --seconds S         one measured run (default 3)\n"
      "  --only LIST         scenarios to run, e.g. 1,5 (7, 8: semaphores on PostgreSQL, SQLite)\n"
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

double ratio(double a, double b) { return b > 0 ? a / b : NAN; }
std::string x(double r) { return std::isnan(r) ? "n/a" : report::fmt(r) + "x"; }

void verdicts(const config& cfg, report& rep) {
  auto m = [&](const char* s, const std::string& metric, const std::string& v) {
    return rep.median(s, metric, v);
  };
  if (cfg.wants("1") && !cfg.pg_url.empty()) {
    std::ostringstream meas, adv, red;
    bool met = true;
    for (int t : cfg.thread_counts) {
      std::string tl = std::to_string(t) + (t == 1 ? " thread" : " threads");
      double s = m("s1", "cycles/s, " + tl, "sqlock");
      double b = m("s1", "cycles/s, " + tl, "bare libpq, same statements");
      double a = m("s1", "cycles/s, " + tl, "pg_try_advisory_lock + pg_advisory_unlock");
      double rd = m("s1", "cycles/s, " + tl, "Redis SET NX PX + DEL");
      met = met && ratio(s, b) >= 0.85;
      meas << tl << ": " << x(ratio(s, b)) << " (" << report::fmt(s) << " vs " << report::fmt(b)
           << " cycles/s); ";
      adv << tl << ": " << x(ratio(s, a)) << "; ";
      red << tl << ": " << x(ratio(s, rd)) << "; ";
    }
    rep.target({"1. sqlock >= 0.85x the bare libpq loop of the same statements, every thread count",
                meas.str(), met ? 1 : 0, ""});
    rep.target({"1. (reported) sqlock / advisory locks", adv.str(), -1, "no target"});
    if (cfg.redis_port) rep.target({"1. (reported) sqlock / Redis", red.str(), -1, "no target"});
    const std::string t8 = std::to_string(cfg.thread_counts.back()) + " threads";
    double n1 = m("s1", "notify cost: cycles/s, " + t8,
                  "sqlock, every release notifies (row marked by a waiter)");
    double n0 = m("s1", "notify cost: cycles/s, " + t8, "sqlock, no waiter (release does not notify)");
    rep.target({"1. (reported) cost of a notifying release at " + t8,
                report::fmt(n1) + " vs " + report::fmt(n0) + " cycles/s (" + x(ratio(n1, n0)) + ")",
                -1, "no target"});
  }
  if (cfg.wants("2") && !cfg.pg_url.empty()) {
    double h = m("s2", "handoff p50", "sqlock, LISTEN/NOTIFY");
    double h99 = m("s2", "handoff p99", "sqlock, LISTEN/NOTIFY");
    double poll = m("s2", "handoff p50", "sqlock, polling fallback (notifications=false)");
    double base = m("s2", "baseline: bare UPDATE (round trip + commit) p50", "libpq");
    rep.target({"2. handoff p50 within 3x one round trip + commit",
                report::fmt(h) + " ms vs " + report::fmt(base) + " ms (" + x(ratio(h, base)) +
                    "); p99 " + report::fmt(h99) + " ms; polling fallback p50 " +
                    report::fmt(poll) + " ms",
                ratio(h, base) <= 3 ? 1 : 0, ""});
    double g = m("s2", "contention: grants/s", "sqlock (8 clients)");
    double gn = m("s2", "contention: grants/s", "naive upsert loop (8 libpq threads)");
    double a99 = m("s2", "contention: acquire statement p99", "sqlock (8 clients)");
    double w99 = m("s2", "contention: wait for grant p99", "sqlock (8 clients)");
    rep.target({"2. 8-thread contention: >= 2x the naive loop's grants/s, p99 < 3 ms",
                report::fmt(g) + " vs " + report::fmt(gn) + " grants/s (" + x(ratio(g, gn)) +
                    "); acquire statement p99 " + report::fmt(a99) +
                    " ms; wait-for-grant p99 " + report::fmt(w99) + " ms",
                ratio(g, gn) >= 2 && a99 < 3 ? 1 : 0, ""});
  }
  if (cfg.wants("3") && !cfg.pg_url.empty()) {
    double s = m("s3", "renew statements per renewal interval", "sqlock");
    rep.target({"3. renewals cost O(1) statements per interval per client (" +
                    std::to_string(cfg.keepalive_leases) + " leases)",
                report::fmt(s) + " renew statements per interval", s < 20 ? 1 : 0, ""});
  }
  if (cfg.wants("4") && !cfg.pg_url.empty()) {
    auto lo = std::to_string(cfg.table_sizes.front()), hi = std::to_string(cfg.table_sizes.back());
    double a = m("s4", "acquire p50, " + lo + " rows", "sqlock");
    double b = m("s4", "acquire p50, " + hi + " rows", "sqlock");
    rep.target({"4. acquire p50 at " + hi + " rows within 1.2x of " + lo + " rows",
                report::fmt(b) + " vs " + report::fmt(a) + " ms (" + x(ratio(b, a)) + ")",
                ratio(b, a) <= 1.2 ? 1 : 0, ""});
    double during = m("s4", "acquire during purge max", "sqlock");
    double batch = m("s4", "purge: slowest batch", "sqlock");
    double before = m("s4", "acquire before purge max", "sqlock");
    rep.target({"4. purge never blocks acquirers for more than one batch",
                "max acquire during purge " + report::fmt(during) + " ms; slowest batch " +
                    report::fmt(batch) + " ms; max acquire before purge " + report::fmt(before) +
                    " ms",
                during <= batch + before ? 1 : 0, ""});
  }
  if (cfg.wants("5") && !cfg.sqlite_dir.empty()) {
    std::ostringstream meas;
    bool met = true;
    for (auto w : {"1 process", "2 processes"}) {
      double s = m("s5", std::string("cycles/s, ") + w, "sqlock");
      double b = m("s5", std::string("cycles/s, ") + w, "bare sqlite3, same statements");
      met = met && ratio(s, b) >= 0.85;
      meas << w << ": " << x(ratio(s, b)) << " (" << report::fmt(s) << " vs " << report::fmt(b)
           << " cycles/s); ";
    }
    rep.target({"5. SQLite: sqlock >= 0.85x the bare sqlite3 statements", meas.str(), met ? 1 : 0,
                ""});
  }
  if (cfg.wants("7") && !cfg.pg_url.empty()) {
    std::ostringstream meas, rel, bare_rel;
    bool met = true;
    for (int t : cfg.thread_counts) {
      std::string tl = std::to_string(t) + (t == 1 ? " thread" : " threads");
      double s = m("s7", "cycles/s, " + tl, "sqlock semaphore");
      double b = m("s7", "cycles/s, " + tl, "bare libpq, same statements (semaphore)");
      double l = m("s7", "cycles/s, " + tl, "sqlock lock (scenario 1's cycle)");
      double bl = m("s7", "cycles/s, " + tl, "bare libpq, same statements (lock)");
      met = met && ratio(s, b) >= 0.85;
      meas << tl << ": " << x(ratio(s, b)) << " (" << report::fmt(s) << " vs " << report::fmt(b)
           << " cycles/s); ";
      rel << tl << ": " << x(ratio(s, l)) << " (" << report::fmt(s) << " vs " << report::fmt(l)
          << " cycles/s); ";
      bare_rel << tl << ": " << x(ratio(b, bl)) << "; ";
    }
    rep.target({"7. sqlock semaphore cycle >= 0.85x the bare libpq loop of the same statements "
                "(scenario 1's target applied to semaphores)",
                meas.str(), met ? 1 : 0, ""});
    rep.target({"7. (reported) semaphore cycle / lock cycle, sqlock", rel.str(), -1,
                "no target"});
    rep.target({"7. (reported) semaphore cycle / lock cycle, bare statements", bare_rel.str(), -1,
                "no target"});
    const char* fv = "sqlock, fair (8 clients)";
    const char* nv = "sqlock, non-fair (8 clients)";
    const char* bv = "bare grant function loop (8 libpq threads, retry at once)";
    double peak = 0;
    for (auto v : {fv, nv, bv}) {
      double pk = m("s7", "contended (limit 2): most units in use at once", v);
      if (!std::isnan(pk)) peak = std::max(peak, pk);
    }
    rep.target({"7. contended semaphore (limit 2, 8 clients): never more than 2 units in use",
                "most units in use at once, any repeat's median: " + report::fmt(peak) +
                    (rep.violations().empty() ? "" : " (SEE THE VIOLATIONS ABOVE)"),
                peak <= 2 && rep.violations().empty() ? 1 : 0, ""});
    auto g = [&](const char* v) { return m("s7", "contended (limit 2): grants/s", v); };
    auto w50 = [&](const char* v) { return m("s7", "contended (limit 2): wait for grant p50", v); };
    auto w99 = [&](const char* v) { return m("s7", "contended (limit 2): wait for grant p99", v); };
    rep.target({"7. (reported) contended semaphore: non-fair / fair / bare loop",
                "grants/s " + report::fmt(g(nv)) + " / " + report::fmt(g(fv)) + " / " +
                    report::fmt(g(bv)) + " (non-fair " + x(ratio(g(nv), g(bv))) +
                    " of the bare loop); wait p50 " + report::fmt(w50(nv)) + " / " +
                    report::fmt(w50(fv)) + " / " + report::fmt(w50(bv)) + " ms; p99 " +
                    report::fmt(w99(nv)) + " / " + report::fmt(w99(fv)) + " / " +
                    report::fmt(w99(bv)) + " ms",
                -1, "no target"});
    const char* rf = "sqlock shared_mutex, fair=true";
    const char* rn = "sqlock shared_mutex, fair=false";
    auto rw = [&](const char* metric, const char* v) {
      return report::fmt(m("s7", std::string("readers/writer: ") + metric, v));
    };
    rep.target({"7. (reported) readers/writer: writer wait p99, fair=true vs fair=false",
                rw("writer wait p99", rf) + " vs " + rw("writer wait p99", rn) +
                    " ms; writer grants/s " + rw("writer grants/s", rf) + " vs " +
                    rw("writer grants/s", rn) + "; reader grants/s " +
                    rw("reader grants/s", rf) + " vs " + rw("reader grants/s", rn) +
                    "; writer waits that timed out (2 s) " +
                    rw("writer waits that timed out", rf) + " vs " +
                    rw("writer waits that timed out", rn),
                -1, "no target"});
  }
  if (cfg.wants("8") && !cfg.sqlite_dir.empty()) {
    std::ostringstream meas, rel;
    bool met = true;
    for (auto w : {"1 process", "2 processes"}) {
      double s = m("s8", std::string("cycles/s, ") + w, "sqlock semaphore");
      double b = m("s8", std::string("cycles/s, ") + w, "bare sqlite3, same statements");
      double l = m("s8", std::string("cycles/s, ") + w, "sqlock lock (scenario 5's cycle)");
      met = met && ratio(s, b) >= 0.85;
      meas << w << ": " << x(ratio(s, b)) << " (" << report::fmt(s) << " vs " << report::fmt(b)
           << " cycles/s); ";
      rel << w << ": " << x(ratio(s, l)) << "; ";
    }
    rep.target({"8. SQLite: sqlock semaphore cycle >= 0.85x the bare sqlite3 statements "
                "(scenario 5's target applied to semaphores)",
                meas.str(), met ? 1 : 0, ""});
    rep.target({"8. (reported) SQLite semaphore cycle / lock cycle, sqlock", rel.str(), -1,
                "no target"});
  }
  if (cfg.wants("6") && !cfg.pg_url.empty()) {
    double heap = m("s6", "client heap per held lease (" + std::to_string(cfg.keepalive_leases) +
                              " leases)",
                    "sqlock");
    double cpu = m("s6", "idle client holding " + std::to_string(cfg.idle_leases) +
                             " leases (ttl 30 s): CPU",
                   "sqlock");
    rep.target({"6. under 1 KiB per held lease", report::fmt(heap) + " bytes of heap per lease",
                heap < 1024 ? 1 : 0, ""});
    rep.target({"6. idle client CPU near zero (< 1% of a core)",
                report::fmt(cpu) + "% of one core", cpu < 1 ? 1 : 0, ""});
  }
}

// Gnuplot data and script: scenario 1 throughput by thread count (log scale), handoff, SQLite.
void chart(const config& cfg, const report& rep, const std::string& dir) {
  std::ofstream d1(dir + "/chart_s1.dat");
  d1 << "variant";
  for (int t : cfg.thread_counts) d1 << "\t" << t;
  d1 << "\n";
  const char* s1v[][2] = {{"sqlock", "sqlock"},
                          {"bare libpq, same statements", "bare libpq"},
                          {"pgbench -M prepared, same statements", "pgbench"},
                          {"pg_try_advisory_lock + pg_advisory_unlock", "advisory"},
                          {"Redis SET NX PX + DEL", "Redis"}};
  for (auto& v : s1v) {
    d1 << "\"" << v[1] << "\"";
    for (int t : cfg.thread_counts) {
      double val = rep.median("s1", "cycles/s, " + std::to_string(t) + (t == 1 ? " thread" : " threads"), v[0]);
      d1 << "\t" << (std::isnan(val) ? 0 : val);
    }
    d1 << "\n";
  }
  std::ofstream d2(dir + "/chart_s2.dat");
  d2 << "what\tp50\tp99\n";
  auto row = [&](const std::string& label, double a, double b) {
    d2 << "\"" << label << "\"\t" << (std::isnan(a) ? 0 : a) << "\t" << (std::isnan(b) ? 0 : b)
       << "\n";
  };
  row("RTT+commit", rep.median("s2", "baseline: bare UPDATE (round trip + commit) p50", "libpq"),
      rep.median("s2", "baseline: bare UPDATE (round trip + commit) p99", "libpq"));
  row("NOTIFY", rep.median("s2", "handoff p50", "sqlock, LISTEN/NOTIFY"),
      rep.median("s2", "handoff p99", "sqlock, LISTEN/NOTIFY"));
  row("polling",
      rep.median("s2", "handoff p50", "sqlock, polling fallback (notifications=false)"),
      rep.median("s2", "handoff p99", "sqlock, polling fallback (notifications=false)"));
  std::ofstream d5(dir + "/chart_s5.dat");
  d5 << "what\tsqlock\t\"bare sqlite3 (same SQL)\"\n";
  for (auto w : {"1 process", "2 processes"}) {
    double a = rep.median("s5", std::string("cycles/s, ") + w, "sqlock");
    double b = rep.median("s5", std::string("cycles/s, ") + w, "bare sqlite3, same statements");
    d5 << "\"" << w << "\"\t" << (std::isnan(a) ? 0 : a) << "\t" << (std::isnan(b) ? 0 : b) << "\n";
  }
  std::ofstream d7(dir + "/chart_s7.dat");
  d7 << "threads\t\"sqlock semaphore\"\t\"bare semaphore SQL\"\t\"sqlock lock\"\t\"bare lock SQL\"\n";
  for (int t : cfg.thread_counts) {
    std::string tl = std::to_string(t) + (t == 1 ? " thread" : " threads");
    d7 << "\"" << tl << "\"";
    for (auto v : {"sqlock semaphore", "bare libpq, same statements (semaphore)",
                   "sqlock lock (scenario 1's cycle)", "bare libpq, same statements (lock)"}) {
      double val = rep.median("s7", "cycles/s, " + tl, v);
      d7 << "\t" << (std::isnan(val) ? 0 : val);
    }
    d7 << "\n";
  }
  std::ofstream gp(dir + "/chart.gp");
  gp << "set terminal pngcairo size 1500,1000 font 'sans,10'\n"
        "set output 'performance.png'\n"
        "set multiplot layout 2,2 title 'sqlock benchmark (medians of " << cfg.repeats
     << " runs; same machine, same run)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.8 border -1\nset key top left font 'sans,8'\n"
        "set grid ytics\nset key autotitle columnhead\n"
        "set title '1. Uncontended acquire+release (PostgreSQL 15)'\n"
        "set ylabel 'cycles/s (log scale)'\nset logscale y\n"
        "set xtics nomirror\n"
        "plot for [i=2:" << cfg.thread_counts.size() + 1
     << "] 'chart_s1.dat' using i:xtic(1) title 'threads: ' . columnhead(i)\n"
        "unset logscale y\n"
        "set title '2. Handoff: release -> next grant (4 waiting)'\nset ylabel 'ms'\n"
        "set logscale y\n"
        "plot 'chart_s2.dat' using 2:xtic(1), '' using 3\n"
        "unset logscale y\n"
        "set title '5. SQLite acquire+release (WAL, synchronous=FULL)'\nset ylabel 'cycles/s'\n"
        "set yrange [0:*]\n"
        "plot 'chart_s5.dat' using 2:xtic(1), '' using 3\n"
        "set title '7. Semaphore vs lock acquire+release (PostgreSQL 15, limit 4, count 1)'\n"
        "set ylabel 'cycles/s'\nset yrange [0:*]\n"
        "plot 'chart_s7.dat' using 2:xtic(1), '' using 3, '' using 4, '' using 5\n"
        "unset multiplot\n";
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
    if (a == "--pg") cfg.pg_url = val();
    else if (a == "--pg-admin") cfg.pg_admin_url = val();
    else if (a == "--pg-capture") cfg.pg_capture_url = val();
    else if (a == "--pg-log") cfg.pg_log = val();
    else if (a == "--pgbench") cfg.pgbench = val();
    else if (a == "--redis") {
      auto hp = val();
      auto c = hp.rfind(':');
      cfg.redis_host = hp.substr(0, c);
      cfg.redis_port = std::stoi(hp.substr(c + 1));
    } else if (a == "--sqlite-dir") cfg.sqlite_dir = val();
    else if (a == "--out") cfg.out_dir = val();
    else if (a == "--smoke") cfg.smoke = true;
    else if (a == "--repeats") repeats = std::stoi(val());
    else if (a == "--seconds") seconds = std::stod(val());
    else if (a == "--only") {
      std::stringstream ss(val());
      std::string s;
      while (std::getline(ss, s, ',')) cfg.only.insert(s);
    } else {
      usage();
      return 64;
    }
  }
  if (cfg.out_dir.empty() || (cfg.pg_url.empty() && cfg.sqlite_dir.empty())) {
    usage();
    return 64;
  }
  if (!cfg.pg_url.empty() &&
      (cfg.pg_admin_url.empty() || cfg.pg_capture_url.empty() || cfg.pg_log.empty())) {
    std::cerr << "sqlock_bench: --pg needs --pg-admin, --pg-capture and --pg-log\n";
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
  std::string pg_version = "not run", redis_version = "not run";
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
    if (!cfg.pg_url.empty()) run_postgresql(cfg, rep);
    if (!cfg.sqlite_dir.empty() && cfg.wants("5")) {
      std::cerr << "scenario 5: SQLite\n";
      run_sqlite(cfg, rep);
    }
    if (!cfg.sqlite_dir.empty() && cfg.wants("8")) {
      std::cerr << "scenario 8: SQLite semaphores\n";
      run_sqlite_semaphores(cfg, rep);
    }
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
      << "- SQLite: " << sqlite3_libversion() << ", file on local disk\n"
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
