// SPDX-License-Identifier: Apache-2.0
// The chart of the results (performance.png): gnuplot data files and the script that draws them.

#include <cmath>
#include <fstream>

#include "bench.hpp"
#include "etcd_peer.hpp"

namespace bench {

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
                          {"Redis SET NX PX + DEL", "Redis"},
                          {etcd_cycle_variant.c_str(), "etcd Mutex"}};
  for (auto& v : s1v) {
    d1 << "\"" << v[1] << "\"";
    for (int t : cfg.thread_counts) {
      double val = rep.median(
          "s1", "cycles/s, " + std::to_string(t) + (t == 1 ? " thread" : " threads"), v[0]);
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
  row("polling", rep.median("s2", "handoff p50", "sqlock, polling fallback (notifications=false)"),
      rep.median("s2", "handoff p99", "sqlock, polling fallback (notifications=false)"));
  std::ofstream d5(dir + "/chart_s5.dat");
  d5 << "what\tsqlock\t\"bare sqlite3 (same SQL)\"\n";
  for (auto w : {"1 process", "2 processes"}) {
    double a = rep.median("s5", std::string("cycles/s, ") + w, "sqlock");
    double b = rep.median("s5", std::string("cycles/s, ") + w, "bare sqlite3, same statements");
    d5 << "\"" << w << "\"\t" << (std::isnan(a) ? 0 : a) << "\t" << (std::isnan(b) ? 0 : b) << "\n";
  }
  std::ofstream d7(dir + "/chart_s7.dat");
  d7 << "threads\t\"sqlock semaphore\"\t\"bare semaphore SQL\"\t\"sqlock lock\"\t\"bare lock "
        "SQL\"\n";
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
        "set multiplot layout 2,2 title 'sqlock benchmark (medians of "
     << cfg.repeats
     << " runs; same machine, same run)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.8 border -1\nset key top left font 'sans,8'\n"
        "set grid ytics\nset key autotitle columnhead\n"
        "set title '1. Uncontended acquire+release (PostgreSQL 15)'\n"
        "set ylabel 'cycles/s (log scale)'\nset logscale y\n"
        "set xtics nomirror\n"
        "plot for [i=2:"
     << cfg.thread_counts.size() + 1
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

}  // namespace bench
