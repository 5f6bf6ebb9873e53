// SPDX-License-Identifier: Apache-2.0
// Scenarios 3 and 6 on PostgreSQL: what keeping leases alive costs the server and the client
// (one client holding many leases that renew), and the client's footprint (memory per held
// lease, CPU and statements of an idle client).

#include <atomic>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "pg_scenarios.hpp"

namespace bench {
namespace {

const char* s3 = "s3";
const char* s6 = "s6";

// Acquires `n` leases with `threads` threads into `out` (reserved by the caller).
void acquire_many(sqlock::client& c, const std::vector<std::string>& names,
                  const sqlock::lock_options& opts, int threads, std::vector<sqlock::lease>& out) {
  std::vector<std::vector<sqlock::lease>> parts(static_cast<std::size_t>(threads));
  for (auto& part : parts) part.reserve(names.size() / static_cast<std::size_t>(threads) + 1);
  std::vector<std::thread> pool;
  std::mutex err_mu;
  std::string err;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        for (std::size_t i = static_cast<std::size_t>(t); i < names.size();
             i += static_cast<std::size_t>(threads)) {
          auto l = c.try_acquire(names[i], opts);
          if (!l) throw failure("acquire_many: refused " + names[i]);
          parts[static_cast<std::size_t>(t)].push_back(std::move(*l));
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(err_mu);
        err = e.what();
      }
    });
  for (auto& t : pool) t.join();
  if (!err.empty()) throw failure(err);
  for (auto& part : parts)
    for (auto& l : part) out.push_back(std::move(l));
}

}  // namespace

void scenario_keepalive(const config& cfg, report& rep, server_stats& stats) {
  rep.section(s3,
              "3. Keepalive cost (PostgreSQL): one client holding " +
                  std::to_string(cfg.keepalive_leases) + " leases",
              "ttl " + std::to_string(cfg.keepalive_ttl.count()) +
                  " ms, so each lease is due for renewal every ttl/3 = " +
                  std::to_string(cfg.keepalive_ttl.count() / 3) +
                  " ms (the renewal interval). Measured over a window of 3 intervals after "
                  "all leases are held and renewing.");
  rep.section(s6, "6. Client footprint (PostgreSQL client)");
  const int n = cfg.keepalive_leases;
  const auto interval = cfg.keepalive_ttl / 3;
  const double intervals = 3;
  for (int r = 0; r < cfg.repeats; ++r) {
    std::vector<std::string> names;
    names.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
      names.push_back("ka-" + std::to_string(r) + "-" + std::to_string(i));
    // Renewal gaps per lease, from the client's own events; the map is filled up front so the
    // listener never allocates (it must not disturb the memory figure).
    std::mutex mu;
    std::unordered_map<std::string, clk::time_point> last;
    last.reserve(static_cast<std::size_t>(n) * 2);
    for (auto& nm : names) last.emplace(nm, clk::time_point{});
    std::vector<double> gaps, rtts;
    gaps.reserve(static_cast<std::size_t>(n) * 8);
    rtts.reserve(1024);
    std::atomic<bool> window{false};
    sqlock::client_options co;
    co.backend = backend_opts(4, true);
    co.listeners.push_back([&](const sqlock::lock_event& e) {
      if (e.kind != sqlock::event_kind::renewed && e.kind != sqlock::event_kind::acquired) return;
      auto now = clk::now();
      std::lock_guard<std::mutex> lock(mu);
      auto it = last.find(e.name);
      if (it == last.end()) return;
      if (e.kind == sqlock::event_kind::renewed && window && it->second != clk::time_point{}) {
        gaps.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
        if (rtts.empty() || rtts.back() != static_cast<double>(e.elapsed.count()))
          rtts.push_back(static_cast<double>(e.elapsed.count()));
      }
      it->second = now;
    });
    sqlock::client c(cfg.pg_url, co);
    sqlock::lock_options opts;
    opts.ttl = cfg.keepalive_ttl;
    {  // warm: connections, keepalive threads, schema check
      auto l = c.try_acquire("ka-warm", opts);
    }
    std::vector<sqlock::lease> leases;
    leases.reserve(static_cast<std::size_t>(n));
    auto heap0 = heap_bytes();
    auto rss0 = rss_bytes();
    acquire_many(c, names, opts, 4, leases);
    auto heap1 = heap_bytes();
    auto rss1 = rss_bytes();
    rep.add(s6, "client heap per held lease (" + std::to_string(n) + " leases)", "sqlock", "bytes",
            "mallinfo2() bytes in use after acquiring N leases (keepalive on) minus before, / N; "
            "includes the user's lease handle",
            static_cast<double>(heap1 - heap0) / n);
    rep.add(s6, "client RSS per held lease (" + std::to_string(n) + " leases)", "sqlock", "bytes",
            "/proc/self/statm resident pages after minus before, / N",
            static_cast<double>(rss1 - rss0) / n);

    // Let every lease go through at least one renewal before measuring.
    std::this_thread::sleep_for(interval + interval / 2);
    window = true;
    auto renew0 = stats.calls_like("WITH req AS");
    auto calls0 = stats.role_calls();
    auto cpu0 = stats.server_cpu();
    auto client0 = process_cpu_seconds();
    auto t0 = clk::now();
    std::this_thread::sleep_for(interval * 3);
    auto secs = std::chrono::duration<double>(clk::now() - t0).count();
    auto renew1 = stats.calls_like("WITH req AS");
    auto calls1 = stats.role_calls();
    auto cpu1 = stats.server_cpu();
    auto client1 = process_cpu_seconds();
    window = false;
    double per = secs / (static_cast<double>(interval.count()) / 1000.0);
    (void)intervals;
    const std::string how_stmt =
        "pg_stat_statements calls of sqlock's renew-many statement over the window / "
        "renewal intervals in the window";
    rep.add(s3, "renew statements per renewal interval", "sqlock", "statements", how_stmt,
            (renew1.first - renew0.first) / per);
    rep.add(s3, "all statements per renewal interval", "sqlock", "statements",
            "pg_stat_statements calls by the benchmark role over the window / intervals",
            (calls1 - calls0) / per);
    rep.add(s3, "renew statement execution time per interval", "sqlock", "ms",
            "pg_stat_statements total_exec_time of the renew statement over the window / "
            "intervals",
            (renew1.second - renew0.second) / per);
    rep.add(s3, "DB CPU per renewal interval", "sqlock", "ms",
            "utime+stime from /proc/<pid>/stat of every server process in pg_stat_activity "
            "(backends, autovacuum, WAL writer, checkpointer), window delta / intervals",
            (cpu1 - cpu0) * 1000 / per);
    rep.add(s3, "client CPU per renewal interval", "sqlock", "ms",
            "getrusage(RUSAGE_SELF) user+sys of the benchmark process over the window / "
            "intervals (the process does nothing else meanwhile)",
            (client1 - client0) * 1000 / per);
    std::vector<double> g;
    {
      std::lock_guard<std::mutex> lock(mu);
      g = gaps;
    }
    const std::string how_gap =
        "per lease, steady_clock between consecutive 'renewed' events of the client's event "
        "listener (which fire when the renew statement returned); due every ttl/3 = " +
        std::to_string(interval.count()) + " ms";
    rep.add(s3, "time between renewals of a lease p50", "sqlock", "ms", how_gap, p(g, 50));
    rep.add(s3, "time between renewals of a lease max", "sqlock", "ms", how_gap, p(g, 100));
    rep.add(s3, "renewal lag max (beyond ttl/3)", "sqlock", "ms",
            "max(0, max gap - ttl/3): how late the latest renewal came",
            std::max(0.0, p(g, 100) - static_cast<double>(interval.count())));
    rep.add(s3, "renewals per lease per interval", "sqlock", "",
            "'renewed' events in the window / leases / intervals",
            static_cast<double>(g.size()) / n / per);
    rep.add(s3, "renew-many round trip max", "sqlock", "ms",
            "the 'renewed' event's elapsed (the renew statement's round trip as the client saw "
            "it), max over the window",
            p(rtts, 100));
    std::cerr << "  s3 rep " << r + 1 << ": " << report::fmt((renew1.first - renew0.first) / per)
              << " renew statements per interval\n";
    auto rel0 = clk::now();
    leases.clear();
    std::cerr << "  s3 released " << n << " leases in "
              << report::fmt(std::chrono::duration<double>(clk::now() - rel0).count()) << " s\n";
  }

  // An idle client holding leases with the default ttl.
  {
    sqlock::client_options co;
    co.backend = backend_opts(4, true);
    sqlock::client c(cfg.pg_url, co);
    sqlock::lock_options opts;
    opts.ttl = milliseconds{30000};
    std::vector<std::string> names;
    for (int i = 0; i < cfg.idle_leases; ++i) names.push_back("idle-" + std::to_string(i));
    std::vector<sqlock::lease> leases;
    leases.reserve(names.size());
    acquire_many(c, names, opts, 4, leases);
    for (int r = 0; r < cfg.repeats; ++r) {
      auto cpu0 = process_cpu_seconds();
      auto calls0 = stats.role_calls();
      auto t0 = clk::now();
      std::this_thread::sleep_for(cfg.idle_window);
      auto secs = std::chrono::duration<double>(clk::now() - t0).count();
      auto cpu = process_cpu_seconds() - cpu0;
      const std::string what =
          "idle client holding " + std::to_string(cfg.idle_leases) + " leases (ttl 30 s)";
      rep.add(s6, what + ": CPU", "sqlock", "% of one core",
              "getrusage(RUSAGE_SELF) user+sys over a " +
                  std::to_string(cfg.idle_window.count() / 1000) +
                  " s window / wall time (the process does nothing else)",
              cpu / secs * 100);
      rep.add(s6, what + ": statements per minute", "sqlock", "statements/min",
              "pg_stat_statements calls by the benchmark role over the window",
              (stats.role_calls() - calls0) / secs * 60);
    }
  }
}

}  // namespace bench
