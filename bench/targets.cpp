// SPDX-License-Identifier: Apache-2.0
// The targets table: each target of the benchmark with the figures of this run that decide it
// (met, missed, or not measured when its scenario did not run).

#include <cmath>
#include <sstream>

#include "bench.hpp"
#include "etcd_peer.hpp"
#include "pg_scenarios.hpp"
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
    {
      std::ostringstream meas, floor;
      bool met = true;
      for (int t : cfg.thread_counts) {
        if (t != 1 && t != 8) continue;
        std::string tl = threads_label(t);
        double s = m("s1", "cycles/s, " + tl, "sqlock");
        double d = m("s1", "cycles/s, " + tl, schema3_variant);
        met = met && ratio(s, d) >= (t == 1 ? 1.4 : 1.0);
        cycles_vs(meas, tl, s, d);
        cycles_vs(floor, tl + " (reported) against the minimal two durable statements", s,
                  m("s1", "cycles/s, " + tl, two_durable_variant));
      }
      rep.target(
          {"14. uncontended: sqlock >= 1.4x the bare libpq loop of schema 3's two durable "
           "statements at 1 thread, >= 1.0x at 8",
           meas.str() + floor.str(), met ? 1 : 0, ""});
    }
    {
      // Issue 18: the history's cost on the uncontended cycle, stated, no target.
      std::ostringstream hist;
      for (int t : cfg.thread_counts) {
        std::string tl = threads_label(t);
        cycles_vs(hist, tl, m("s1", "cycles/s, " + tl, history_on_variant),
                  m("s1", "cycles/s, " + tl, "sqlock"));
      }
      rep.target({"18. (reported) PostgreSQL: history on / off, uncontended cycle", hist.str(), -1,
                  "no target"});
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
    double base99 = m("s2", "baseline: bare UPDATE (round trip + commit) p99", "libpq");
    rep.target({"2. (reported) handoff without notifications (polling fallback) p50",
                report::fmt(poll) + " ms", -1, "no target"});
    rep.target({"14. handoff p50 <= 1.3x one bare round trip + commit, p99 <= 3x",
                "p50 " + report::fmt(h) + " vs " + report::fmt(base) + " ms (" + x(ratio(h, base)) +
                    "); p99 " + report::fmt(h99) + " vs " + report::fmt(base99) + " ms (" +
                    x(ratio(h99, base99)) + ")",
                ratio(h, base) <= 1.3 && ratio(h99, base99) <= 3 ? 1 : 0, ""});
    {
      auto a = [&](int mode) {
        return report::fmt(
                   m("s2", "anatomy: handoff release statement p50", anatomy_variant(true, mode))) +
               " / " +
               report::fmt(m("s2", "anatomy: handoff release statement p50",
                             anatomy_variant(false, mode))) +
               " ms";
      };
      rep.target(
          {"14. (reported) a handoff release alone (one connection, p50), durable / "
           "synchronous_commit off",
           "no other listener: " + a(0) + "; 8 listeners on its channel (schema 4): " + a(1) +
               "; 8 on channels of their own (schema 5): " + a(2) + "; bare UPDATE + commit " +
               report::fmt(base) + " ms",
           -1, "no target"});
    }
    std::ostringstream naive, peer, wait;
    bool met_naive = true, met_peer = true;
    for (int hold : {0, 1}) {
      double gn = m("s2", "contention: grants/s", contention_variant("naive upsert loop", hold));
      double ge =
          etcd_enabled(cfg) ? m("s2", "contention: grants/s", etcd_contention_variant(hold)) : NAN;
      for (const char* who : {"sqlock, non-fair", "sqlock, fair"}) {
        const std::string v = contention_variant(who, hold);
        double g = m("s2", "contention: grants/s", v);
        met_naive = met_naive && ratio(g, gn) >= 2.5;
        met_peer = met_peer && !(ratio(g, ge) < 3);
        const std::string label = std::string(who) + ", hold " + std::to_string(hold) + " ms";
        naive << label << ": " << x(ratio(g, gn)) << " (" << report::fmt(g) << " vs "
              << report::fmt(gn) << " grants/s); ";
        peer << label << ": " << x(ratio(g, ge)) << " (" << report::fmt(g) << " vs "
             << report::fmt(ge) << "); ";
        wait << label << ": " << report::fmt(m("s2", "contention: wait for grant p50", v)) << " / "
             << report::fmt(m("s2", "contention: wait for grant p99", v)) << " ms; ";
      }
      wait << "naive, hold " << hold << " ms: "
           << report::fmt(m("s2", "contention: wait for grant p50",
                            contention_variant("naive upsert loop", hold)))
           << " / "
           << report::fmt(m("s2", "contention: wait for grant p99",
                            contention_variant("naive upsert loop", hold)))
           << " ms; ";
    }
    rep.target(
        {"14. 8 contenders on one name, hold 0 and 1 ms, fair and non-fair: grants/s >= 2.5x "
         "the naive upsert loop",
         naive.str(), met_naive ? 1 : 0, ""});
    if (etcd_enabled(cfg))
      rep.target({"14. the same contention: grants/s >= 3x etcd's concurrency.Mutex", peer.str(),
                  met_peer ? 1 : 0, ""});
    rep.target({"14. (reported) wait for grant p50 / p99 under the same contention", wait.str(), -1,
                "no target"});
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
    double s1p = m("s5", "cycles/s, 1 process", "sqlock");
    double b1p = m("s5", "cycles/s, 1 process", "bare sqlite3, same statements");
    rep.target(
        {"14. SQLite, one process, synchronous=FULL: sqlock >= 1.0x the bare sqlite3 cycle "
         "(grant and release each a durable BEGIN IMMEDIATE)",
         x(ratio(s1p, b1p)) + " (" + report::fmt(s1p) + " vs " + report::fmt(b1p) + " cycles/s)",
         ratio(s1p, b1p) >= 1.0 ? 1 : 0, ""});
    std::ostringstream hist;
    for (auto w : {"1 process", "2 processes"})
      cycles_vs(hist, w, m("s5", std::string("cycles/s, ") + w, history_on_variant),
                m("s5", std::string("cycles/s, ") + w, "sqlock"));
    rep.target({"18. (reported) SQLite: history on / off, acquire+release cycle", hist.str(), -1,
                "no target"});
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
