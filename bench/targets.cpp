// The targets table: each target of the benchmark with the figures of this run that decide it
// (met, missed, or not measured when its scenario did not run).

#include <cmath>
#include <sstream>

#include "bench.hpp"
#include "etcd_peer.hpp"
#include "util.hpp"

namespace bench {
namespace {

double ratio(double a, double b) { return b > 0 ? a / b : NAN; }
std::string x(double r) { return std::isnan(r) ? "n/a" : report::fmt(r) + "x"; }

// One entry of a comparison of cycle rates: "<label>: <a/b>x (<a> vs <b> cycles/s); ".
void cycles_vs(std::ostringstream& out, const std::string& label, double a, double b) {
  out << label << ": " << x(ratio(a, b)) << " (" << report::fmt(a) << " vs " << report::fmt(b)
      << " cycles/s); ";
}

}  // namespace

void verdicts(const config& cfg, report& rep) {
  auto m = [&](const char* s, const std::string& metric, const std::string& v) {
    return rep.median(s, metric, v);
  };
  if (cfg.wants("1") && !cfg.pg_url.empty()) {
    std::ostringstream meas, adv, red;
    bool met = true;
    for (int t : cfg.thread_counts) {
      std::string tl = threads_label(t);
      double s = m("s1", "cycles/s, " + tl, "sqlock");
      double b = m("s1", "cycles/s, " + tl, "bare libpq, same statements");
      double a = m("s1", "cycles/s, " + tl, "pg_try_advisory_lock + pg_advisory_unlock");
      double rd = m("s1", "cycles/s, " + tl, "Redis SET NX PX + DEL");
      met = met && ratio(s, b) >= 0.85;
      cycles_vs(meas, tl, s, b);
      adv << tl << ": " << x(ratio(s, a)) << "; ";
      red << tl << ": " << x(ratio(s, rd)) << "; ";
    }
    rep.target({"1. sqlock >= 0.85x the bare libpq loop of the same statements, every thread count",
                meas.str(), met ? 1 : 0, ""});
    rep.target({"1. (reported) sqlock / advisory locks", adv.str(), -1, "no target"});
    if (cfg.redis_port) rep.target({"1. (reported) sqlock / Redis", red.str(), -1, "no target"});
    if (etcd_enabled(cfg)) {
      std::ostringstream et;
      for (int t : {1, 8}) {
        std::string tl = threads_label(t);
        cycles_vs(et, std::to_string(t) + (t == 1 ? " client" : " clients"),
                  m("s1", "cycles/s, " + tl, "sqlock"),
                  m("s1", "cycles/s, " + tl, etcd_cycle_variant));
      }
      rep.target({"1. (reported) sqlock / etcd Mutex, uncontended", et.str(), -1, "no target"});
    }
    const std::string t8 = std::to_string(cfg.thread_counts.back()) + " threads";
    double n1 = m("s1", "notify cost: cycles/s, " + t8,
                  "sqlock, every release notifies (row marked by a waiter)");
    double n0 =
        m("s1", "notify cost: cycles/s, " + t8, "sqlock, no waiter (release does not notify)");
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
                    "); acquire statement p99 " + report::fmt(a99) + " ms; wait-for-grant p99 " +
                    report::fmt(w99) + " ms",
                ratio(g, gn) >= 2 && a99 < 3 ? 1 : 0, ""});
    if (etcd_enabled(cfg)) {
      const std::string e0 = etcd_contention_variant(0), e1 = etcd_contention_variant(1);
      double g0 = m("s2", "contention: grants/s", e0), g1 = m("s2", "contention: grants/s", e1);
      auto wait = [&](const std::string& v) {
        return report::fmt(m("s2", "contention: wait for grant p50", v)) + " / " +
               report::fmt(m("s2", "contention: wait for grant p99", v)) + " ms";
      };
      rep.target({"2. (reported) sqlock / etcd Mutex, 8 contenders on one name",
                  "sqlock (hold ~0.1 ms) " + report::fmt(g) + " grants/s vs etcd hold 0 ms " +
                      report::fmt(g0) + " (" + x(ratio(g, g0)) + "), hold 1 ms " + report::fmt(g1) +
                      " (" + x(ratio(g, g1)) + "); wait for grant p50 / p99: sqlock " +
                      wait("sqlock (8 clients)") + ", etcd hold 0 ms " + wait(e0) + ", hold 1 ms " +
                      wait(e1),
                  -1, "no target"});
    }
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
      cycles_vs(meas, w, s, b);
    }
    rep.target(
        {"5. SQLite: sqlock >= 0.85x the bare sqlite3 statements", meas.str(), met ? 1 : 0, ""});
  }
  if (cfg.wants("7") && !cfg.pg_url.empty()) {
    std::ostringstream meas, rel, bare_rel;
    bool met = true;
    for (int t : cfg.thread_counts) {
      std::string tl = threads_label(t);
      double s = m("s7", "cycles/s, " + tl, "sqlock semaphore");
      double b = m("s7", "cycles/s, " + tl, "bare libpq, same statements (semaphore)");
      double l = m("s7", "cycles/s, " + tl, "sqlock lock (scenario 1's cycle)");
      double bl = m("s7", "cycles/s, " + tl, "bare libpq, same statements (lock)");
      met = met && ratio(s, b) >= 0.85;
      cycles_vs(meas, tl, s, b);
      cycles_vs(rel, tl, s, l);
      bare_rel << tl << ": " << x(ratio(b, bl)) << "; ";
    }
    rep.target(
        {"7. sqlock semaphore cycle >= 0.85x the bare libpq loop of the same statements "
         "(scenario 1's target applied to semaphores)",
         meas.str(), met ? 1 : 0, ""});
    rep.target({"7. (reported) semaphore cycle / lock cycle, sqlock", rel.str(), -1, "no target"});
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
                    rw("writer grants/s", rn) + "; reader grants/s " + rw("reader grants/s", rf) +
                    " vs " + rw("reader grants/s", rn) + "; writer waits that timed out (2 s) " +
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
      cycles_vs(meas, w, s, b);
      rel << w << ": " << x(ratio(s, l)) << "; ";
    }
    rep.target(
        {"8. SQLite: sqlock semaphore cycle >= 0.85x the bare sqlite3 statements "
         "(scenario 5's target applied to semaphores)",
         meas.str(), met ? 1 : 0, ""});
    rep.target(
        {"8. (reported) SQLite semaphore cycle / lock cycle, sqlock", rel.str(), -1, "no target"});
  }
  if (cfg.wants("6") && !cfg.pg_url.empty()) {
    double heap =
        m("s6", "client heap per held lease (" + std::to_string(cfg.keepalive_leases) + " leases)",
          "sqlock");
    double cpu = m(
        "s6", "idle client holding " + std::to_string(cfg.idle_leases) + " leases (ttl 30 s): CPU",
        "sqlock");
    rep.target({"6. under 1 KiB per held lease", report::fmt(heap) + " bytes of heap per lease",
                heap < 1024 ? 1 : 0, ""});
    rep.target({"6. idle client CPU near zero (< 1% of a core)", report::fmt(cpu) + "% of one core",
                cpu < 1 ? 1 : 0, ""});
  }
}

}  // namespace bench
