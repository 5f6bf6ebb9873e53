// SPDX-License-Identifier: Apache-2.0
// Scenario 1: uncontended acquire+release cycles on PostgreSQL, sqlock beside the bare libpq
// loop and pgbench sending the same statements, advisory locks and Redis; then the cost of a
// release that notifies a waiter.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <thread>

#include "etcd_peer.hpp"
#include "pg_scenarios.hpp"

namespace bench {
namespace {

const char* s1 = "s1";

const std::string& etcd_cycle = etcd_cycle_variant;
const char* how_etcd_rate =
    "etcd: completed Lock+Unlock cycles / wall time from the start barrier (every client "
    "connected and its session's lease granted) to the last goroutine's exit, timed in the Go "
    "client (bench/etcd, one process per run): one goroutine per thread, each its own "
    "clientv3.Client and concurrency.Session (ttl 30 s), cycling over its own 32 keys";
const char* how_etcd_latency =
    "etcd: per cycle, Go's monotonic clock around Mutex.Lock+Unlock in the calling goroutine; "
    "p50/p99 over every cycle of the run (nearest rank, computed by the Go client)";
const char* how_etcd_cpu =
    "etcd: getrusage(RUSAGE_SELF) user+sys of the Go client process during the run / cycles (the "
    "client side only; etcd is another process)";
const char* how_etcd_cs =
    "etcd: getrusage(RUSAGE_SELF) voluntary+involuntary context switches of the Go client "
    "process during the run / cycles";

// pgbench's \gset needs every result column to have a valid variable name; sqlock's first
// column is an unnamed `true` ("?column?"): give it one.
std::string name_first_column(std::string sql) {
  auto pos = sql.rfind("SELECT true, ");
  if (pos == std::string::npos) throw failure("pgbench: unexpected acquire statement shape");
  sql.replace(pos, 13, "SELECT true AS ok, ");
  return sql;
}

std::string pgbench_script(const statements& st, const std::string& dir) {
  auto subst = [](std::string sql, const std::vector<std::string>& vars) {
    for (std::size_t i = vars.size(); i >= 1; --i) {
      std::string from = "$" + std::to_string(i);
      // pgbench has no empty-string variables: the empty metadata becomes a literal.
      if (vars[i - 1].empty()) from += "::text";
      for (auto pos = sql.find(from); pos != std::string::npos; pos = sql.find(from, pos))
        sql.replace(pos, from.size(), vars[i - 1].empty() ? "''::text" : ":" + vars[i - 1]);
    }
    return sql;
  };
  std::string path = dir + "/pgbench_cycle.sql";
  std::ofstream f(path);
  f << "\\set p1 " << base_plain << " + :client_id * 100 + random(0, " << (names_per_thread - 1)
    << ")\n"
    << "\\set p3 random(1, 999999999999)\n"
    << name_first_column(subst(st.acquire, {"p1", "p2", "p3", "", "p5", "p6"})) << "\n\\gset a_\n"
    << subst(st.release, {"p1", "p3", "a_token", "chan", "hchan"}) << ";\n";
  return path;
}

}  // namespace

void scenario_uncontended(const config& cfg, report& rep, const statements& st,
                          server_stats& stats) {
  const bool etcd = etcd_enabled(cfg);
  rep.section(s1, "1. Uncontended acquire+release cycles (PostgreSQL 15, keepalive off)",
              std::string("Each thread cycles over its own 32 lock names (no contention): acquire, "
                          "then release. sqlock, the bare libpq loop and pgbench send the same two "
                          "statements (captured from the server's statement log) on the same "
                          "rows; pg_try_advisory_lock and Redis SET NX PX/DEL are what users pick "
                          "instead. Schema 3's statements are sqlock's cycle before issue 14 "
                          "(no queue; the release's commit waited for its flush, as the grant's "
                          "does): issue 14's baseline. The two durable statements (the least "
                          "upsert that grants a row with a token, and the UPDATE that ends it, "
                          "each a flushed commit) are the floor of a row lease with two flushes.") +
                  (etcd ? " etcd's own lock, concurrency.Mutex (Lock: one transaction putting "
                          "the caller's key; Unlock: one delete; each a fsync'd commit), runs at "
                          "1 and 8 clients in a Go process of its own."
                        : ""));
  const std::string& chan = st.channel;
  const std::string& how_tp = how_cycle_rate;
  const std::string& how_lat = how_cycle_latency;
  clients_by_threads sqlock_client(cfg);
  std::string script;
  if (!cfg.pgbench.empty()) script = pgbench_script(st, cfg.out_dir);

  std::vector<cycle_variant> variants;
  variants.push_back({"sqlock", [&](int threads) {
                        return sqlock_lock_cycles(cfg, sqlock_client(threads), threads);
                      }});
  // The same cycle with the history on (issue 18), switched on around each measured run only,
  // so every other variant (and scenario) runs with it off. Switching costs a table lock and a
  // re-plan of the cached statements, once per run, outside the cycles that count.
  variants.push_back({history_on_variant, [&](int threads) {
                        auto& c = sqlock_client(threads);
                        c.enable_history(true);
                        struct off {
                          sqlock::client& c;
                          ~off() {
                            try {
                              c.enable_history(false);
                            } catch (...) {
                            }
                          }
                        } restore{c};
                        return sqlock_lock_cycles(cfg, c, threads);
                      }});
  variants.push_back({"bare libpq, same statements",
                      [&](int threads) { return bare_lock_cycles(cfg, st, threads); }});
  variants.push_back(
      {schema3_variant, [&](int threads) { return schema3_cycles(cfg, st.channel, threads); }});
  variants.push_back(
      {two_durable_variant, [&](int threads) { return two_durable_cycles(cfg, threads); }});
  if (!script.empty())
    variants.push_back({"pgbench -M prepared, same statements", [&](int threads) {
                          std::vector<std::string> argv = {
                              cfg.pgbench, "-n",
                              "-M",        "prepared",
                              "-f",        script,
                              "-c",        std::to_string(threads),
                              "-j",        std::to_string(threads),
                              "-D",        "p2=bench-pgbench",
                              "-D",        "p5=30000",
                              "-D",        "p6=false",
                              "-D",        "chan=" + chan,
                              "-D",        "hchan=" + st.handoff_channel};
                          if (cfg.smoke) {
                            argv.insert(argv.end(), {"-t", "20"});
                          } else {
                            auto secs = std::max<long>(1, std::lround(cfg.run.count() / 1000.0));
                            argv.insert(argv.end(), {"-T", std::to_string(secs)});
                          }
                          argv.push_back(cfg.pg_url);
                          auto out = run_capture(argv);
                          run_result r;
                          auto tps = out.find("tps = ");
                          auto lat = out.find("latency average = ");
                          if (tps == std::string::npos || lat == std::string::npos)
                            throw failure("pgbench: unexpected output: " + out);
                          double t = std::stod(out.substr(tps + 6));
                          r.seconds = 1;
                          r.ops = static_cast<std::uint64_t>(t);
                          r.lat_us.push_back(std::stod(out.substr(lat + 18)) * 1000);  // mean only
                          r.events = 1;  // marks "mean latency only"
                          return r;
                        }});
  variants.push_back({"pg_try_advisory_lock + pg_advisory_unlock", [&](int threads) {
                        return run_workers(threads, cfg.run, [&](worker_ctx& w) -> op_fn {
                          auto c = std::make_shared<pg>(cfg.pg_url);
                          c->prepare("lock", "SELECT pg_try_advisory_lock($1::bigint)", 1);
                          c->prepare("unlock", "SELECT pg_advisory_unlock($1::bigint)", 1);
                          auto key = std::make_shared<std::string>(std::to_string(77000 + w.index));
                          return [c, key](worker_ctx&) {
                            auto r = c->run("lock", {key->c_str()});
                            if (PQgetvalue(r.get(), 0, 0)[0] != 't')
                              throw failure("advisory: refused");
                            c->run("unlock", {key->c_str()});
                          };
                        });
                      }});
  if (cfg.redis_port)
    variants.push_back({"Redis SET NX PX + DEL", [&](int threads) {
                          return run_workers(threads, cfg.run, [&](worker_ctx& w) -> op_fn {
                            auto r = std::make_shared<redis>(cfg.redis_host, cfg.redis_port);
                            return [r, i = 0, t = w.index](worker_ctx&) mutable {
                              auto key = "lock:" + name_for(base_plain, t, i++ % names_per_thread);
                              auto val = random_hex(16);
                              if (r->command({"SET", key, val, "NX", "PX", "30000"}) != "+OK")
                                throw failure("redis: SET NX refused");
                              r->command({"DEL", key});
                            };
                          });
                        }});

  // Warm-up: connections, prepared statements, the rows themselves.
  for (int threads : cfg.thread_counts) variants[0].run(threads);

  for (int r = 0; r < cfg.repeats; ++r) {
    for (int threads : cfg.thread_counts) {
      const std::string tlabel = threads_label(threads);
      for (auto& v : variants) {
        double calls0 = stats.role_calls();
        double cpu0 = process_cpu_seconds(), cs0 = process_context_switches();
        auto res = v.run(threads);
        double cpu = process_cpu_seconds() - cpu0, cs = process_context_switches() - cs0;
        double calls = stats.role_calls() - calls0;
        if (res.events != 1 && res.ops) {
          rep.add(s1, "client CPU per cycle, " + tlabel, v.name, "us",
                  "getrusage(RUSAGE_SELF) user+sys of the benchmark process during the run / "
                  "cycles (the client side only; the server is another process)",
                  cpu * 1e6 / static_cast<double>(res.ops));
          rep.add(s1, "client context switches per cycle, " + tlabel, v.name, "",
                  "getrusage(RUSAGE_SELF) voluntary+involuntary context switches during the run "
                  "/ cycles",
                  cs / static_cast<double>(res.ops));
        }
        rep.add(s1, "cycles/s, " + tlabel, v.name, "cycles/s", how_tp, res.ops_per_s());
        if (res.events == 1) {
          rep.add(s1, "cycle latency mean, " + tlabel, v.name, "ms",
                  "pgbench's 'latency average' (mean per script run)", res.lat_us[0] / 1000);
        } else {
          rep.add(s1, "cycle latency p50, " + tlabel, v.name, "ms", how_lat,
                  p(res.lat_us, 50) / 1000);
          rep.add(s1, "cycle latency p99, " + tlabel, v.name, "ms", how_lat,
                  p(res.lat_us, 99) / 1000);
        }
        if (v.name.rfind("sqlock", 0) == 0 || v.name.rfind("bare", 0) == 0)
          rep.add(s1, "statements per cycle, " + tlabel, v.name, "statements",
                  "pg_stat_statements calls by the benchmark role during the run / cycles",
                  res.ops ? calls / static_cast<double>(res.ops) : 0);
        std::cerr << "  s1 rep " << r + 1 << " " << tlabel << " " << v.name << ": "
                  << report::fmt(res.ops_per_s()) << " cycles/s\n";
      }
      if (etcd && (threads == 1 || threads == 8)) {
        auto e = etcd_uncontended(cfg, threads);
        const double cycles = static_cast<double>(e.ops);
        rep.add(s1, "client CPU per cycle, " + tlabel, etcd_cycle, "us", how_etcd_cpu,
                cycles > 0 ? e.cpu_s * 1e6 / cycles : 0);
        rep.add(s1, "client context switches per cycle, " + tlabel, etcd_cycle, "", how_etcd_cs,
                cycles > 0 ? e.ctx_switches / cycles : 0);
        rep.add(s1, "cycles/s, " + tlabel, etcd_cycle, "cycles/s", how_etcd_rate, e.ops_per_s);
        rep.add(s1, "cycle latency p50, " + tlabel, etcd_cycle, "ms", how_etcd_latency, e.p50_ms);
        rep.add(s1, "cycle latency p99, " + tlabel, etcd_cycle, "ms", how_etcd_latency, e.p99_ms);
        std::cerr << "  s1 rep " << r + 1 << " " << tlabel << " " << etcd_cycle << ": "
                  << report::fmt(e.ops_per_s) << " cycles/s\n";
      }
    }
  }

  // A release that notifies a waiter vs one that does not, at 8 threads: rows marked by a
  // waiter (waiters_until in the future) make sqlock's release call pg_notify. A LISTEN
  // connection stands in for the waiting clients and counts what arrives.
  const int threads = cfg.thread_counts.back();
  pg admin(cfg.pg_admin_url);
  admin.query(
      "INSERT INTO public.sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, "
      "waiters_until) SELECT (" +
      std::to_string(base_marked) +
      " + t * 100 + i)::text, "
      "'bench', '', nextval('public.sqlock_token_seq'), now(), now(), 'infinity' "
      "FROM generate_series(0, 63) t, generate_series(0, 31) i "
      "ON CONFLICT (name) DO UPDATE SET waiters_until = 'infinity'");
  notification_counter listener(cfg.pg_url, {chan});
  auto& c = sqlock_client(threads);
  auto opts = no_keepalive();
  const std::string how_rel =
      "per release, steady_clock around lease::release() in the calling thread";
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int marked = 1; marked >= 0; --marked) {
      std::string v = marked ? "sqlock, every release notifies (row marked by a waiter)"
                             : "sqlock, no waiter (release does not notify)";
      int base = marked ? base_marked : base_plain;
      auto heard0 = listener.heard();
      auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
        return [&, i = 0](worker_ctx& w) mutable {
          auto l = c.try_acquire(name_for(base, w.index, i++ % names_per_thread), opts);
          if (!l) throw failure("sqlock: uncontended acquire refused");
          auto t0 = clk::now();
          l->release();
          w.extra_us.push_back(us_between(t0, clk::now()));
        };
      });
      std::this_thread::sleep_for(milliseconds{200});
      std::string t = std::to_string(threads) + " threads";
      rep.add(s1, "notify cost: cycles/s, " + t, v, "cycles/s", how_tp, res.ops_per_s());
      rep.add(s1, "notify cost: release p50, " + t, v, "ms", how_rel, p(res.extra_us, 50) / 1000);
      rep.add(s1, "notify cost: release p99, " + t, v, "ms", how_rel, p(res.extra_us, 99) / 1000);
      rep.add(s1, "notify cost: notifications heard per cycle, " + t, v, "",
              "notifications received by a LISTEN connection on sqlock's channel / cycles",
              res.ops
                  ? static_cast<double>(listener.heard() - heard0) / static_cast<double>(res.ops)
                  : 0);
    }
  }
  sqlock_client.clear();
}

}  // namespace bench
