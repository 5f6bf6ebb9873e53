// Scenarios 1-4, 6 and 7 (semaphores) on PostgreSQL, each beside its baselines, in one run.

#include <sys/select.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sqlock/sqlock.hpp>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "bench.hpp"
#include "pg.hpp"
#include "util.hpp"

namespace bench {
namespace {

using std::chrono::microseconds;

// ---- sqlock's statements, as the server's statement log shows them ----

struct statements {
  std::string acquire, release, renew;
};

// The same channel sqlock's PostgreSQL backend uses for a schema (FNV-1a of its name).
std::string channel_for(const std::string& schema) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : schema) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sqlock_";
  for (int i = 15; i >= 0; --i) out.push_back(hex[(h >> (i * 4)) & 0xf]);
  return out;
}

// Runs one acquire/renew/release through a client whose role logs every statement
// (log_statement = all), then reads them back from the server log: the baselines send exactly
// what the server received from sqlock.
statements capture(const config& cfg) {
  std::ifstream probe(cfg.pg_log, std::ios::ate);
  auto offset = probe ? static_cast<std::streamoff>(probe.tellg()) : 0;
  {
    sqlock::client c(cfg.pg_capture_url);
    sqlock::lock_options o;
    o.keepalive = false;
    auto l = c.try_acquire("bench-capture-" + random_hex(4), o);
    if (!l) throw failure("capture: acquire refused");
    l->renew();
    l->release();
  }
  auto grab = [](const std::string& line, const std::string& key) -> std::string {
    auto p = line.find("execute " + key);
    if (p == std::string::npos) return {};
    auto colon = line.find(": ", p);
    return colon == std::string::npos ? std::string() : line.substr(colon + 2);
  };
  for (int attempt = 0; attempt < 40; ++attempt) {
    std::ifstream log(cfg.pg_log);
    log.seekg(offset);
    statements s;
    std::string line;
    while (std::getline(log, line)) {
      if (auto t = grab(line, "sqlock_acquire_"); !t.empty()) s.acquire = t;
      if (auto t = grab(line, "sqlock_release_"); !t.empty()) s.release = t;
      if (auto t = grab(line, "sqlock_renew_"); !t.empty()) s.renew = t;
    }
    if (!s.acquire.empty() && !s.release.empty() && !s.renew.empty()) return s;
    std::this_thread::sleep_for(milliseconds{50});
  }
  throw failure("capture: sqlock's statements not found in " + cfg.pg_log +
                " (is log_statement=all set for the capture role?)");
}

// ---- a backend wrapper that times grant attempts (sqlock::backend_wrapper) ----

class timing_backend final : public sqlock::backend_wrapper {
 public:
  explicit timing_backend(std::shared_ptr<sqlock::backend> inner)
      : sqlock::backend_wrapper(std::move(inner)) {}

  std::vector<double> take_attempts() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<double> out;
    out.swap(attempt_us_);
    return out;
  }

  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline u) override {
    return timed([&] { return wrapped().try_acquire(r, u); });
  }
  sqlock::acquire_result try_acquire_semaphore(const sqlock::semaphore_request& r,
                                               sqlock::deadline u) override {
    return timed([&] { return wrapped().try_acquire_semaphore(r, u); });
  }

 private:
  template <class F>
  sqlock::acquire_result timed(F attempt) {
    auto t0 = clk::now();
    auto res = attempt();
    auto us = us_between(t0, clk::now());
    std::lock_guard<std::mutex> lock(mu_);
    attempt_us_.push_back(us);
    return res;
  }
  std::mutex mu_;
  std::vector<double> attempt_us_;
};

struct timed_client {
  std::shared_ptr<timing_backend> backend;
  std::unique_ptr<sqlock::client> client;
};

sqlock::backend_options backend_opts(std::size_t pool, bool notifications,
                                     const std::string& schema = "public") {
  sqlock::backend_options o;
  o.pool_size = pool;
  o.notifications = notifications;
  o.schema = schema;
  return o;
}

timed_client make_timed(const config& cfg, const sqlock::backend_options& bo,
                        sqlock::client_options co = {}) {
  timed_client t;
  t.backend = std::make_shared<timing_backend>(sqlock::open_backend(cfg.pg_url, bo));
  t.client = std::make_unique<sqlock::client>(t.backend, std::move(co));
  return t;
}

sqlock::lock_options no_keepalive(milliseconds ttl = milliseconds{30000}) {
  sqlock::lock_options o;
  o.keepalive = false;
  o.ttl = ttl;
  return o;
}

// Names: numeric strings, so that pgbench (whose variables are numbers) can form the same ones.
std::string name_for(int base, int thread, int i) {
  return std::to_string(base + thread * 100 + i);
}
constexpr int names_per_thread = 32;
constexpr int base_plain = 1000000;
constexpr int base_marked = 2000000;

double p(std::vector<double> v, double q) { return percentile(v, q); }

// ---- server-side counters ----

struct server_stats {
  pg& admin;
  std::string role;
  /// Statements executed by the benchmark role (pg_stat_statements, updated at statement end).
  double role_calls() {
    return std::stod(admin.scalar(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r "
        "ON r.oid = s.userid WHERE r.rolname = $1",
        {role}));
  }
  /// calls and total_exec_time (ms) of statements whose text starts with `prefix`.
  std::pair<double, double> calls_like(const std::string& prefix) {
    auto rows = admin.query(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
        "FROM pg_stat_statements WHERE query LIKE $1",
        {prefix + "%"});
    return {std::stod(rows[0][0]), std::stod(rows[0][1])};
  }
  /// CPU seconds of every server process (backends, autovacuum, WAL writer, checkpointer...).
  double server_cpu() {
    double sum = 0;
    for (auto& row : admin.query("SELECT pid FROM pg_stat_activity")) {
      double c = pid_cpu_seconds(std::stoi(row[0]));
      if (c > 0) sum += c;
    }
    return sum;
  }
};

// Counts the notifications sqlock's releases send on its channel, from a LISTEN connection of
// our own (standing in for waiting clients).
class notification_counter {
 public:
  notification_counter(const std::string& url, const std::string& channel) : conn_(url) {
    conn_.exec("LISTEN " + channel);
    thread_ = std::thread([this] {
      while (!stop_) {
        int fd = PQsocket(conn_.get());
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        timeval tv{0, 100000};
        if (select(fd + 1, &set, nullptr, nullptr, &tv) > 0) {
          PQconsumeInput(conn_.get());
          while (PGnotify* n = PQnotifies(conn_.get())) {
            ++heard_;
            PQfreemem(n);
          }
        }
      }
    });
  }
  ~notification_counter() {
    stop_ = true;
    thread_.join();
  }
  std::uint64_t heard() const { return heard_.load(); }

 private:
  pg conn_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> heard_{0};
  std::thread thread_;
};

// ---- scenario 1: uncontended cycles ----

const char* s1 = "s1";

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
    << name_first_column(subst(st.acquire, {"p1", "p2", "p3", "", "p5", "p6", "p7"}))
    << "\n\\gset a_\n"
    << subst(st.release, {"p1", "p3", "a_token", "chan"}) << ";\n";
  return path;
}

struct s1_variant {
  std::string name;
  std::function<run_result(int threads)> run;
};

void scenario_uncontended(const config& cfg, report& rep, const statements& st,
                          server_stats& stats) {
  rep.section(s1, "1. Uncontended acquire+release cycles (PostgreSQL 15, keepalive off)",
              "Each thread cycles over its own 32 lock names (no contention): acquire, then "
              "release. sqlock, the bare libpq loop and pgbench send the same two statements "
              "(captured from the server's statement log) on the same rows; pg_try_advisory_lock "
              "and Redis SET NX PX/DEL are what users pick instead.");
  const std::string chan = channel_for("public");
  const std::string how_tp =
      "completed cycles / wall time from the start barrier to the last thread's exit";
  const std::string how_lat =
      "per cycle, steady_clock around acquire+release in the calling thread; p50/p99 over "
      "every cycle of the run";
  std::map<int, std::unique_ptr<sqlock::client>> clients;
  auto sqlock_client = [&](int threads) -> sqlock::client& {
    auto& c = clients[threads];
    if (!c) {
      sqlock::client_options co;
      co.backend = backend_opts(static_cast<std::size_t>(threads), true);
      c = std::make_unique<sqlock::client>(cfg.pg_url, co);
    }
    return *c;
  };
  std::string script;
  if (!cfg.pgbench.empty()) script = pgbench_script(st, cfg.out_dir);

  std::vector<s1_variant> variants;
  variants.push_back({"sqlock", [&](int threads) {
                        auto& c = sqlock_client(threads);
                        auto opts = no_keepalive();
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          return [&, i = 0](worker_ctx& w) mutable {
                            auto l = c.try_acquire(
                                name_for(base_plain, w.index, i++ % names_per_thread), opts);
                            if (!l) throw failure("sqlock: uncontended acquire refused");
                            l->release();
                          };
                        });
                      }});
  variants.push_back(
      {"bare libpq, same statements", [&](int threads) {
         std::vector<std::unique_ptr<pg>> conns;
         return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
           auto c = std::make_shared<pg>(cfg.pg_url);
           c->prepare("acq", st.acquire, 7);
           c->prepare("rel", st.release, 4);
           return [c, &chan, i = 0](worker_ctx& w) mutable {
             auto name = name_for(base_plain, w.index, i++ % names_per_thread);
             auto nonce = random_hex(16);
             auto r = c->run("acq", {name.c_str(), "bench-bare", nonce.c_str(), "", "30000",
                                     "false", "10000"});
             if (PQntuples(r.get()) != 1 || PQgetvalue(r.get(), 0, 0)[0] != 't')
               throw failure("bare: uncontended acquire refused");
             std::string token = PQgetvalue(r.get(), 0, 1);
             c->run("rel", {name.c_str(), nonce.c_str(), token.c_str(), chan.c_str()});
           };
         });
       }});
  if (!script.empty())
    variants.push_back(
        {"pgbench -M prepared, same statements", [&](int threads) {
           std::vector<std::string> argv = {cfg.pgbench, "-n", "-M", "prepared", "-f", script,
                                            "-c", std::to_string(threads), "-j",
                                            std::to_string(threads), "-D", "p2=bench-pgbench",
                                            "-D", "p5=30000", "-D", "p6=false",
                                            "-D", "p7=10000", "-D", "chan=" + chan};
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
      const std::string tlabel = std::to_string(threads) + (threads == 1 ? " thread" : " threads");
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
    }
  }

  // A release that notifies a waiter vs one that does not, at 8 threads: rows marked by a
  // waiter (waiters_until in the future) make sqlock's release call pg_notify. A LISTEN
  // connection stands in for the waiting clients and counts what arrives.
  const int threads = cfg.thread_counts.back();
  pg admin(cfg.pg_admin_url);
  admin.query(
      "INSERT INTO public.sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, "
      "waiters_until) SELECT (" + std::to_string(base_marked) + " + t * 100 + i)::text, "
      "'bench', '', nextval('public.sqlock_token_seq'), now(), now(), 'infinity' "
      "FROM generate_series(0, 63) t, generate_series(0, 31) i "
      "ON CONFLICT (name) DO UPDATE SET waiters_until = 'infinity'");
  notification_counter listener(cfg.pg_url, chan);
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
              res.ops ? static_cast<double>(listener.heard() - heard0) / static_cast<double>(res.ops)
                      : 0);
    }
  }
  clients.clear();
}

// ---- scenario 2: handoff and contention ----

const char* s2 = "s2";

void scenario_handoff(const config& cfg, report& rep) {
  rep.section(s2, "2. Handoff and contention (PostgreSQL)",
              "Handoff: " + std::to_string(cfg.waiters) +
                  " clients, each its own sqlock client (own connections and listener, as "
                  "separate processes would have), loop on try_acquire_for(name) -> hold 1 ms -> "
                  "release on ONE name; a client that released waits until another got the "
                  "lock before it queues again, so at every release the " +
                  std::to_string(cfg.waiters - 1) + " others are waiting. Contention: 8 threads, each its own client, loop "
                  "try_acquire_for(name) -> hold ~0.1 ms -> release on one name, against 8 "
                  "libpq threads looping on the naive upsert (retry at once when refused).");
  const std::string how_handoff =
      "steady_clock from the holder's release() returning to the next holder's acquire() "
      "returning (same process, so one clock); every handoff of the run";
  const std::string how_handoff_call =
      "steady_clock from the holder calling release() to the next holder's acquire() returning";
  // Baseline: one round trip + commit.
  {
    pg c(cfg.pg_url);
    c.exec("CREATE TABLE IF NOT EXISTS bench_rtt (id integer PRIMARY KEY, v bigint NOT NULL); "
           "INSERT INTO bench_rtt VALUES (1, 0) ON CONFLICT DO NOTHING");
  }
  for (int r = 0; r < cfg.repeats; ++r) {
    auto res = run_workers(1, cfg.run / 2, [&](worker_ctx&) -> op_fn {
      auto c = std::make_shared<pg>(cfg.pg_url);
      c->prepare("up", "UPDATE bench_rtt SET v = v + 1 WHERE id = $1::integer", 1);
      return [c](worker_ctx&) { c->run("up", {"1"}); };
    });
    const std::string how =
        "1 libpq thread, prepared single-row UPDATE in autocommit (one round trip + one WAL "
        "flush), steady_clock per call";
    rep.add(s2, "baseline: bare UPDATE (round trip + commit) p50", "libpq", "ms", how,
            p(res.lat_us, 50) / 1000);
    rep.add(s2, "baseline: bare UPDATE (round trip + commit) p99", "libpq", "ms", how,
            p(res.lat_us, 99) / 1000);
    auto sel = run_workers(1, cfg.run / 4, [&](worker_ctx&) -> op_fn {
      auto c = std::make_shared<pg>(cfg.pg_url);
      c->prepare("one", "SELECT 1", 0);
      return [c](worker_ctx&) { c->run("one", {}); };
    });
    rep.add(s2, "baseline: SELECT 1 (round trip, no commit) p50", "libpq", "ms",
            "1 libpq thread, prepared SELECT 1, steady_clock per call", p(sel.lat_us, 50) / 1000);
  }

  for (int notify = 1; notify >= 0; --notify) {
    std::vector<timed_client> clients;
    for (int i = 0; i < cfg.waiters; ++i) clients.push_back(make_timed(cfg, backend_opts(2, notify)));
    const std::string v = notify ? "sqlock, LISTEN/NOTIFY" : "sqlock, polling fallback (notifications=false)";
    const std::string name = notify ? "handoff-notify" : "handoff-poll";
    notification_counter listener(cfg.pg_url, channel_for("public"));
    for (int r = 0; r < cfg.repeats; ++r) {
      std::atomic<std::uint64_t> grants{0}, releases{0};
      std::atomic<std::int64_t> rel_start{0}, rel_done{0};
      for (auto& c : clients) c.backend->take_attempts();
      auto heard0 = listener.heard();
      auto res = run_workers(
          cfg.waiters, cfg.run,
          [&](worker_ctx&) -> op_fn {
            return [&](worker_ctx& w) {
              auto& c = *clients[static_cast<std::size_t>(w.index)].client;
              auto opts = no_keepalive();
              while (!w.stopped()) {
                auto l = c.try_acquire_for(name, milliseconds{5000}, opts);
                if (!l) continue;
                auto granted = now_ns();
                auto k = grants.fetch_add(1);
                if (k > 0) {
                  auto give_up = clk::now() + milliseconds{1000};
                  while (releases.load(std::memory_order_acquire) < k && clk::now() < give_up)
                    std::this_thread::yield();
                  w.lat_us.push_back(static_cast<double>(granted - rel_done.load()) / 1000);
                  w.extra_us.push_back(static_cast<double>(granted - rel_start.load()) / 1000);
                }
                ++w.ops;
                std::this_thread::sleep_for(milliseconds{1});
                rel_start = now_ns();
                l->release();
                rel_done = now_ns();
                releases.fetch_add(1, std::memory_order_release);
                // Do not barge: the releaser would win its own lock back at once (it is the
                // only contender not asleep). It rejoins the waiters once another has it.
                while (grants.load() <= k + 1 && !w.stopped())
                  std::this_thread::sleep_for(microseconds{200});
              }
            };
          },
          true);
      std::uint64_t attempts = 0;
      for (auto& c : clients) attempts += c.backend->take_attempts().size();
      rep.add(s2, "handoff p50", v, "ms", how_handoff, p(res.lat_us, 50) / 1000);
      rep.add(s2, "handoff p99", v, "ms", how_handoff, p(res.lat_us, 99) / 1000);
      rep.add(s2, "handoff p50, from the release call", v, "ms", how_handoff_call,
              p(res.extra_us, 50) / 1000);
      rep.add(s2, "grants/s (1 ms holds)", v, "grants/s", "grants / wall time",
              res.ops_per_s());
      std::this_thread::sleep_for(milliseconds{100});
      rep.add(s2, "notifications sent per release", v, "",
              "notifications heard by an extra LISTEN connection on sqlock's channel / "
              "releases (a release notifies when a waiter marked the row)",
              releases ? static_cast<double>(listener.heard() - heard0) /
                             static_cast<double>(releases.load())
                       : 0);
      rep.add(s2, "acquire statements per grant", v, "",
              "try_acquire calls into the backend (timed by a wrapping backend) / grants",
              res.ops ? static_cast<double>(attempts) / static_cast<double>(res.ops) : 0);
      std::cerr << "  s2 handoff rep " << r + 1 << " " << v << ": p50 "
                << report::fmt(p(res.lat_us, 50) / 1000) << " ms\n";
    }
  }

  // 8 threads hammering one name.
  const int threads = 8;
  const auto hold = microseconds{100};
  const std::string how_grants = "grants / wall time (8 threads, hold ~0.1 ms)";
  const std::string how_attempt =
      "steady_clock around each acquire statement (sqlock: timed inside a wrapping backend; "
      "naive: around PQexecPrepared), p99 over every attempt";
  const std::string how_wait = "steady_clock from the call to the grant, p99 over every grant";
  std::vector<timed_client> clients;
  for (int i = 0; i < threads; ++i) clients.push_back(make_timed(cfg, backend_opts(2, true)));
  const std::string naive_acquire =
      "INSERT INTO public.sqlock_locks AS l (name, owner, nonce, token, acquired_at, expires_at) "
      "VALUES ($1::text, $2::text, $3::text, nextval('public.sqlock_token_seq'), now(), "
      "now() + $4::bigint * interval '1 millisecond') ON CONFLICT (name) DO UPDATE SET "
      "owner = excluded.owner, nonce = excluded.nonce, "
      "token = GREATEST(nextval('public.sqlock_token_seq'), l.token + 1), "
      "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at "
      "WHERE l.expires_at <= now() RETURNING l.token";
  const std::string naive_release =
      "UPDATE public.sqlock_locks SET expires_at = now() WHERE name = $1::text "
      "AND nonce = $2::text AND token = $3::bigint AND expires_at > now()";
  for (int r = 0; r < cfg.repeats; ++r) {
    {
      const std::string v = "sqlock (8 clients)";
      for (auto& c : clients) c.backend->take_attempts();
      auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
        return [&](worker_ctx& w) {
          auto& c = *clients[static_cast<std::size_t>(w.index)].client;
          auto t0 = clk::now();
          auto l = c.try_acquire_for("hot", milliseconds{5000}, no_keepalive());
          if (!l) return;
          w.extra_us.push_back(us_between(t0, clk::now()));
          std::this_thread::sleep_for(hold);
          l->release();
        };
      });
      std::vector<double> attempts;
      for (auto& c : clients) {
        auto a = c.backend->take_attempts();
        attempts.insert(attempts.end(), a.begin(), a.end());
      }
      rep.add(s2, "contention: grants/s", v, "grants/s", how_grants, res.ops_per_s());
      rep.add(s2, "contention: attempts/s", v, "attempts/s", "acquire statements / wall time",
              static_cast<double>(attempts.size()) / res.seconds);
      rep.add(s2, "contention: acquire statement p99", v, "ms", how_attempt,
              p(attempts, 99) / 1000);
      rep.add(s2, "contention: wait for grant p99", v, "ms", how_wait, p(res.extra_us, 99) / 1000);
    }
    {
      const std::string v = "naive upsert loop (8 libpq threads)";
      auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
        auto c = std::make_shared<pg>(cfg.pg_url);
        c->prepare("acq", naive_acquire, 4);
        c->prepare("rel", naive_release, 3);
        return [c, hold](worker_ctx& w) {
          auto t0 = clk::now();
          auto nonce = random_hex(16);
          std::string token;
          while (!w.stopped()) {
            auto a0 = clk::now();
            auto res = c->run("acq", {"hot-naive", "bench-naive", nonce.c_str(), "30000"});
            w.third_us.push_back(us_between(a0, clk::now()));
            if (PQntuples(res.get()) == 1) {
              token = PQgetvalue(res.get(), 0, 0);
              break;
            }
          }
          if (token.empty()) return;
          w.extra_us.push_back(us_between(t0, clk::now()));
          std::this_thread::sleep_for(hold);
          c->run("rel", {"hot-naive", nonce.c_str(), token.c_str()});
        };
      });
      std::uint64_t grants = res.extra_us.size();
      rep.add(s2, "contention: grants/s", v, "grants/s", how_grants,
              static_cast<double>(grants) / res.seconds);
      rep.add(s2, "contention: attempts/s", v, "attempts/s", "acquire statements / wall time",
              static_cast<double>(res.third_us.size()) / res.seconds);
      rep.add(s2, "contention: acquire statement p99", v, "ms", how_attempt,
              p(res.third_us, 99) / 1000);
      rep.add(s2, "contention: wait for grant p99", v, "ms", how_wait, p(res.extra_us, 99) / 1000);
    }
    std::cerr << "  s2 contention rep " << r + 1 << " done\n";
  }
}

// ---- scenario 3 (keepalive cost) and 6 (footprint) ----

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

void scenario_keepalive(const config& cfg, report& rep, server_stats& stats) {
  rep.section(s3, "3. Keepalive cost (PostgreSQL): one client holding " +
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
    for (int i = 0; i < n; ++i) names.push_back("ka-" + std::to_string(r) + "-" + std::to_string(i));
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
      const std::string what = "idle client holding " + std::to_string(cfg.idle_leases) +
                               " leases (ttl 30 s)";
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

// ---- scenario 4: table size and purge ----

const char* s4 = "s4";

void fill(pg& admin, const std::string& schema, long rows) {
  const std::string t = "\"" + schema + "\".sqlock_locks";
  admin.exec("DELETE FROM " + t + " WHERE name LIKE 'fill-%'");
  admin.exec("INSERT INTO " + t +
             " (name, owner, nonce, token, acquired_at, expires_at) "
             "SELECT 'fill-' || lpad(g::text, 8, '0'), 'bench-fill', md5(g::text), g, "
             "now() - interval '1 hour', now() - interval '1 hour' "
             "FROM generate_series(1, " + std::to_string(rows) + ") g");
  admin.exec("SELECT setval('\"" + schema + "\".sqlock_token_seq', " +
             std::to_string(rows + 1000000000L) + ")");
  admin.exec("VACUUM ANALYZE " + t);
}

void scenario_table_size(const config& cfg, report& rep, server_stats& stats) {
  rep.section(s4, "4. Table size and purge (PostgreSQL)",
              "Each size has its own schema, migrated by sqlock, filled with free rows (expired "
              "an hour ago) by INSERT ... SELECT generate_series, then VACUUM ANALYZE. One "
              "thread cycles try_acquire + release on random filled names.");
  pg admin(cfg.pg_admin_url);
  std::map<long, std::unique_ptr<sqlock::client>> clients;
  for (long n : cfg.table_sizes) {
    const std::string schema = "bench_rows_" + std::to_string(n);
    sqlock::client_options co;
    co.backend = backend_opts(2, true, schema);
    co.operation_timeout = milliseconds{60000};
    auto c = std::make_unique<sqlock::client>(cfg.pg_url, co);
    c->migrate();
    auto t0 = clk::now();
    fill(admin, schema, n);
    std::cerr << "  s4 filled " << n << " rows in "
              << report::fmt(std::chrono::duration<double>(clk::now() - t0).count()) << " s\n";
    clients[n] = std::move(c);
  }
  const std::string how =
      "1 thread: steady_clock around client::try_acquire on a random filled name (then "
      "release, not timed); p50/p99 over every acquire of the run";
  for (int r = 0; r < cfg.repeats; ++r) {
    for (long n : cfg.table_sizes) {
      auto& c = *clients[n];
      auto res = run_workers(1, cfg.run, [&](worker_ctx&) -> op_fn {
        return [&, n](worker_ctx& w) {
          std::uniform_int_distribution<long> pick(1, n);
          char name[32];
          std::snprintf(name, sizeof name, "fill-%08ld", pick(rng()));
          auto t0 = clk::now();
          auto l = c.try_acquire(name, no_keepalive());
          w.extra_us.push_back(us_between(t0, clk::now()));
          if (!l) throw failure(std::string("table size: refused ") + name);
          l->release();
        };
      });
      std::string rows = std::to_string(n) + " rows";
      rep.add(s4, "acquire p50, " + rows, "sqlock", "ms", how, p(res.extra_us, 50) / 1000);
      rep.add(s4, "acquire p99, " + rows, "sqlock", "ms", how, p(res.extra_us, 99) / 1000);
    }
  }

  // Purge of the largest table's free rows, with a concurrent acquirer.
  const long n = cfg.table_sizes.back();
  const std::string schema = "bench_rows_" + std::to_string(n);
  auto& c = *clients[n];
  const std::string how_purge =
      "client::purge(10 min) called until it returns 0 (each call purges in batches of 500 "
      "until its operation timeout); steady_clock around the whole";
  for (int r = 0; r < cfg.purge_repeats; ++r) {
    if (r > 0) fill(admin, schema, n);
    // The purge's DELETE statement: its max execution time is one batch's.
    admin.exec("SELECT pg_stat_statements_reset(0, 0, queryid) FROM pg_stat_statements "
               "WHERE query LIKE '%DELETE FROM \"" + schema + "\".sqlock_locks%' "
               "AND query NOT LIKE '%pg_stat_statements%'");
    std::atomic<bool> stop{false}, purging{false};
    std::vector<double> before, during;
    std::thread acquirer([&] {
      sqlock::client_options co;
      co.backend = backend_opts(1, true, schema);
      sqlock::client a(cfg.pg_url, co);
      for (int i = 0; !stop; ++i) {
        auto t0 = clk::now();
        bool was = purging;
        auto l = a.try_acquire("live-" + std::to_string(i % 8), no_keepalive());
        (was ? during : before).push_back(us_between(t0, clk::now()) / 1000);
        if (l) l->release();
      }
    });
    std::this_thread::sleep_for(cfg.run / 3);
    purging = true;
    auto t0 = clk::now();
    std::size_t total = 0, calls = 0;
    for (;;) {
      auto k = c.purge(milliseconds{600000});
      ++calls;
      total += k;
      if (k == 0) break;
    }
    auto secs = std::chrono::duration<double>(clk::now() - t0).count();
    std::this_thread::sleep_for(milliseconds{100});
    stop = true;
    acquirer.join();
    auto del = admin.query(
        "SELECT coalesce(sum(calls), 0), coalesce(max(max_exec_time), 0), "
        "coalesce(sum(total_exec_time), 0) FROM pg_stat_statements "
        "WHERE query LIKE '%DELETE FROM \"" + schema + "\".sqlock_locks%' "
               "AND query NOT LIKE '%pg_stat_statements%'");
    double batches = std::stod(del[0][0]), batch_max = std::stod(del[0][1]);
    std::string rows = std::to_string(total) + " free rows";
    rep.add(s4, "purge time, " + std::to_string(n) + " free rows", "sqlock", "s", how_purge, secs);
    rep.add(s4, "purge rate", "sqlock", "rows/s", "rows deleted / purge time",
            static_cast<double>(total) / secs);
    rep.add(s4, "purge: batches (DELETE statements)", "sqlock", "",
            "pg_stat_statements calls of purge's DELETE", batches);
    rep.add(s4, "purge: slowest batch", "sqlock", "ms",
            "pg_stat_statements max_exec_time of purge's DELETE (the table lock is held that "
            "long)",
            batch_max);
    const std::string how_acq =
        "a second client in another thread loops try_acquire+release on 8 names of the same "
        "table; steady_clock around each try_acquire";
    rep.add(s4, "acquire during purge p50", "sqlock", "ms", how_acq, p(during, 50));
    rep.add(s4, "acquire during purge max", "sqlock", "ms", how_acq, p(during, 100));
    rep.add(s4, "acquire before purge max", "sqlock", "ms", how_acq, p(before, 100));
    std::cerr << "  s4 purge rep " << r + 1 << ": " << total << " rows in " << report::fmt(secs)
              << " s, " << calls << " calls, max acquire during " << report::fmt(p(during, 100))
              << " ms\n";
  }
  (void)stats;
}

// ---- scenario 7: semaphores (issue 8) ----

const char* s7 = "s7";
constexpr int base_sem = 3000000;
constexpr std::int64_t sem_cycle_limit = 4;

// sqlock's semaphore statements as the server logged them, with the parameters of the capture
// run. Each parameter slot is classified by its captured value, so the bare loop fills the
// slots that vary (name, nonce, owner, token, channel, and the limit, which differs between
// the uncontended and the contended runs) and sends every other one exactly as sqlock did
// (count, ttl, metadata, flags, ticket time), whatever their order.
struct sem_statements {
  enum class slot { literal, name, nonce, owner, token, channel, limit };
  struct stmt {
    std::string sql, params;  // params: the log's DETAIL text
    std::vector<slot> slots;
    std::vector<std::string> literals;  // the captured value of each slot
  };
  stmt acquire, release;
};

// "$1 = 'a', $2 = NULL, ..." -> values (NULL as an empty optional).
std::vector<std::optional<std::string>> parse_log_params(const std::string& detail) {
  std::vector<std::optional<std::string>> out;
  std::size_t i = 0;
  while ((i = detail.find('$', i)) != std::string::npos) {
    auto eq = detail.find(" = ", i);
    if (eq == std::string::npos) break;
    i = eq + 3;
    if (detail.compare(i, 4, "NULL") == 0) {
      out.emplace_back();
      i += 4;
      continue;
    }
    if (i >= detail.size() || detail[i] != '\'') break;
    std::string v;
    for (++i; i < detail.size(); ++i) {
      if (detail[i] == '\'') {
        if (i + 1 < detail.size() && detail[i + 1] == '\'') {
          v.push_back('\'');
          ++i;
          continue;
        }
        break;
      }
      v.push_back(detail[i]);
    }
    out.emplace_back(std::move(v));
    ++i;
  }
  return out;
}

bool is_nonce(const std::string& v) {
  return v.size() == 32 && std::all_of(v.begin(), v.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

sem_statements capture_semaphore(const config& cfg, const std::string& chan) {
  std::ifstream probe(cfg.pg_log, std::ios::ate);
  auto offset = probe ? static_cast<std::streamoff>(probe.tellg()) : 0;
  const std::string name = "bench-capture-sem-" + random_hex(4);
  std::string owner, token;
  {
    sqlock::client c(cfg.pg_capture_url);
    sqlock::semaphore_options o;
    o.keepalive = false;
    o.limit = sem_cycle_limit;
    o.count = 1;
    auto l = c.try_acquire_semaphore(name, o);
    if (!l) throw failure("capture: semaphore acquire refused");
    owner = c.owner();
    token = std::to_string(l->token());
    l->release();
  }
  for (int attempt = 0; attempt < 40; ++attempt) {
    std::ifstream log(cfg.pg_log);
    log.seekg(offset);
    sem_statements s;
    sem_statements::stmt* pending = nullptr;
    std::string line;
    while (std::getline(log, line)) {
      auto d = line.find("DETAIL:  parameters: ");
      if (d != std::string::npos) {
        if (pending) pending->params = line.substr(d + 21);
        pending = nullptr;
        continue;
      }
      auto e = line.find(" execute ");
      if (e == std::string::npos) continue;
      auto colon = line.find(": ", e);
      if (colon == std::string::npos) continue;
      std::string stmt_name = line.substr(e + 9, colon - e - 9);
      std::string text = line.substr(colon + 2);
      pending = nullptr;
      if (text.find("sqlock_semaphore_acquire(") != std::string::npos) {
        s.acquire.sql = text;
        pending = &s.acquire;
      } else if (stmt_name.find("release") != std::string::npos &&
                 text.find("sqlock_semaphore_holders") != std::string::npos) {
        s.release.sql = text;
        pending = &s.release;
      }
    }
    if (s.acquire.sql.empty() || s.release.sql.empty() || s.acquire.params.empty() ||
        s.release.params.empty()) {
      std::this_thread::sleep_for(milliseconds{50});
      continue;
    }
    // The nonce: the 32-hex value both statements carry.
    auto av = parse_log_params(s.acquire.params), rv = parse_log_params(s.release.params);
    std::string nonce;
    for (auto& a : av)
      for (auto& r : rv)
        if (a && r && *a == *r && is_nonce(*a)) nonce = *a;
    if (nonce.empty()) throw failure("capture: no nonce shared by the semaphore statements");
    auto classify = [&](sem_statements::stmt& st,
                        const std::vector<std::optional<std::string>>& vals, bool release) {
      for (auto& v : vals) {
        using k = sem_statements::slot;
        k slot = k::literal;
        if (v && *v == name) slot = k::name;
        else if (v && *v == nonce) slot = k::nonce;
        else if (v && *v == owner) slot = k::owner;
        else if (v && *v == chan) slot = k::channel;
        else if (v && release && *v == token) slot = k::token;
        else if (v && !release && *v == std::to_string(sem_cycle_limit)) slot = k::limit;
        if (!v) throw failure("capture: a NULL parameter in " + st.sql.substr(0, 80));
        st.slots.push_back(slot);
        st.literals.push_back(*v);
      }
    };
    classify(s.acquire, av, false);
    classify(s.release, rv, true);
    if (std::count(s.acquire.slots.begin(), s.acquire.slots.end(), sem_statements::slot::limit) !=
        1)
      throw failure("capture: the semaphore acquire's limit is not exactly one parameter: " +
                    s.acquire.params);
    return s;
  }
  throw failure("capture: sqlock's semaphore statements not found in " + cfg.pg_log);
}

std::string describe_slots(const sem_statements::stmt& st) {
  std::ostringstream o;
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    using k = sem_statements::slot;
    o << (i ? ", " : "") << "$" << i + 1 << " = ";
    switch (st.slots[i]) {
      case k::name: o << "<name>"; break;
      case k::nonce: o << "<random nonce>"; break;
      case k::owner: o << "<owner>"; break;
      case k::token: o << "<token>"; break;
      case k::channel: o << "<channel>"; break;
      case k::limit: o << "<limit>"; break;
      case k::literal: o << "'" << st.literals[i] << "'"; break;
    }
  }
  return o.str();
}

// A libpq connection running sqlock's semaphore statements directly.
class bare_semaphore {
 public:
  bare_semaphore(const config& cfg, const sem_statements& st, const std::string& chan,
                 std::int64_t limit)
      : c_(cfg.pg_url), st_(st), chan_(chan), limit_(std::to_string(limit)) {
    c_.prepare("sacq", st.acquire.sql, static_cast<int>(st.acquire.slots.size()));
    c_.prepare("srel", st.release.sql, static_cast<int>(st.release.slots.size()));
  }
  /// The token, or empty when refused.
  std::string acquire(const std::string& name, const std::string& nonce) {
    auto params = fill(st_.acquire, name, nonce, {});
    auto r = c_.run("sacq", params);
    if (PQntuples(r.get()) != 1) throw failure("bare semaphore: no result row");
    int g = PQfnumber(r.get(), "granted"), t = PQfnumber(r.get(), "token");
    if (g < 0) g = 0;
    if (t < 0) t = 1;
    if (PQgetvalue(r.get(), 0, g)[0] != 't') return {};
    return PQgetvalue(r.get(), 0, t);
  }
  void release(const std::string& name, const std::string& nonce, const std::string& token) {
    c_.run("srel", fill(st_.release, name, nonce, token));
  }

 private:
  std::vector<const char*> fill(const sem_statements::stmt& st, const std::string& name,
                                const std::string& nonce, const std::string& token) {
    std::vector<const char*> p;
    for (std::size_t i = 0; i < st.slots.size(); ++i) {
      using k = sem_statements::slot;
      switch (st.slots[i]) {
        case k::name: p.push_back(name.c_str()); break;
        case k::nonce: p.push_back(nonce.c_str()); break;
        case k::owner: p.push_back("bench-bare"); break;
        case k::token: p.push_back(token.c_str()); break;
        case k::channel: p.push_back(chan_.c_str()); break;
        case k::limit: p.push_back(limit_.c_str()); break;
        case k::literal: p.push_back(st.literals[i].c_str()); break;
      }
    }
    return p;
  }
  pg c_;
  const sem_statements& st_;
  const std::string& chan_;
  const std::string limit_;
};

sqlock::semaphore_options sem_opts(std::int64_t limit, bool fair = false) {
  sqlock::semaphore_options o;
  o.keepalive = false;
  o.ttl = milliseconds{30000};
  o.limit = limit;
  o.count = 1;
  o.fair = fair;
  return o;
}

// Units in use, counted by the holders themselves: +1 after the grant returned, -1 before the
// release is sent (both inside the lease by the database's reckoning), so a count above the
// limit is a real violation.
struct unit_meter {
  std::atomic<int> in_use{0}, peak{0};
  std::atomic<std::uint64_t> over{0};
  int limit;
  explicit unit_meter(int l) : limit(l) {}
  void enter() {
    int now = in_use.fetch_add(1) + 1;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    if (now > limit) over.fetch_add(1);
  }
  void leave() { in_use.fetch_sub(1); }
};

void scenario_semaphores(const config& cfg, report& rep, const statements& st,
                         server_stats& stats) {
  rep.section(s7, "7. Semaphores (PostgreSQL): cycles, contention, readers/writer",
              "Uncontended: each thread cycles acquire+release of 1 unit of its own 32 "
              "semaphores of limit 4 (keepalive off), beside the lock cycle of scenario 1 in the "
              "same repeats. sqlock against the bare libpq loop of the statements it sends, "
              "captured from the server's statement log with their parameters: the semaphore "
              "grant is one call of the PL/pgSQL function sqlock_semaphore_acquire, the release "
              "one UPDATE of sqlock_semaphore_holders (statements.sql). Contended: 8 clients on "
              "one semaphore of limit 2 loop try_acquire_semaphore_for -> hold ~1 ms -> "
              "release, non-fair and fair, against 8 libpq threads calling the grant function "
              "in a loop (retry at once when refused). Readers/writer: a sqlock::shared_mutex, 6 "
              "reader clients looping lock_shared -> hold 1 ms -> unlock_shared, 1 writer "
              "client: every 20 ms lock (wait at most 2 s) -> hold 1 ms -> unlock; fair=false "
              "vs fair=true. Holders count themselves in and out, so a broken limit or a "
              "writer beside a reader is reported as a safety violation.");
  const std::string chan = channel_for("public");
  std::cerr << "  s7 capturing sqlock's semaphore statements\n";
  auto sst = capture_semaphore(cfg, chan);
  std::ofstream(cfg.out_dir + "/statements.sql", std::ios::app)
      << "-- semaphore acquire (limit 4, count 1; parameters: " << describe_slots(sst.acquire)
      << ")\n" << sst.acquire.sql << ";\n-- semaphore release (parameters: "
      << describe_slots(sst.release) << ")\n" << sst.release.sql << ";\n";

  // ---- uncontended cycles, semaphore and lock side by side ----
  const std::string how_tp =
      "completed cycles / wall time from the start barrier to the last thread's exit";
  const std::string how_lat =
      "per cycle, steady_clock around acquire+release in the calling thread; p50/p99 over "
      "every cycle of the run";
  std::map<int, std::unique_ptr<sqlock::client>> clients;
  auto sqlock_client = [&](int threads) -> sqlock::client& {
    auto& c = clients[threads];
    if (!c) {
      sqlock::client_options co;
      co.backend = backend_opts(static_cast<std::size_t>(threads), true);
      c = std::make_unique<sqlock::client>(cfg.pg_url, co);
    }
    return *c;
  };
  std::vector<s1_variant> variants;
  variants.push_back({"sqlock semaphore", [&](int threads) {
                        auto& c = sqlock_client(threads);
                        auto opts = sem_opts(sem_cycle_limit);
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          return [&, i = 0](worker_ctx& w) mutable {
                            auto l = c.try_acquire_semaphore(
                                "sem-" + name_for(base_sem, w.index, i++ % names_per_thread),
                                opts);
                            if (!l) throw failure("sqlock: uncontended semaphore acquire refused");
                            l->release();
                          };
                        });
                      }});
  variants.push_back({"bare libpq, same statements (semaphore)", [&](int threads) {
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          auto b = std::make_shared<bare_semaphore>(cfg, sst, chan,
                                                                    sem_cycle_limit);
                          return [b, i = 0](worker_ctx& w) mutable {
                            auto name =
                                "sem-" + name_for(base_sem, w.index, i++ % names_per_thread);
                            auto nonce = random_hex(16);
                            auto token = b->acquire(name, nonce);
                            if (token.empty())
                              throw failure("bare: uncontended semaphore acquire refused");
                            b->release(name, nonce, token);
                          };
                        });
                      }});
  variants.push_back({"sqlock lock (scenario 1's cycle)", [&](int threads) {
                        auto& c = sqlock_client(threads);
                        auto opts = no_keepalive();
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          return [&, i = 0](worker_ctx& w) mutable {
                            auto l = c.try_acquire(
                                name_for(base_plain, w.index, i++ % names_per_thread), opts);
                            if (!l) throw failure("sqlock: uncontended acquire refused");
                            l->release();
                          };
                        });
                      }});
  variants.push_back(
      {"bare libpq, same statements (lock)", [&](int threads) {
         return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
           auto c = std::make_shared<pg>(cfg.pg_url);
           c->prepare("acq", st.acquire, 7);
           c->prepare("rel", st.release, 4);
           return [c, &chan, i = 0](worker_ctx& w) mutable {
             auto name = name_for(base_plain, w.index, i++ % names_per_thread);
             auto nonce = random_hex(16);
             auto r = c->run("acq", {name.c_str(), "bench-bare", nonce.c_str(), "", "30000",
                                     "false", "10000"});
             if (PQntuples(r.get()) != 1 || PQgetvalue(r.get(), 0, 0)[0] != 't')
               throw failure("bare: uncontended acquire refused");
             std::string token = PQgetvalue(r.get(), 0, 1);
             c->run("rel", {name.c_str(), nonce.c_str(), token.c_str(), chan.c_str()});
           };
         });
       }});
  for (int threads : cfg.thread_counts) variants[0].run(threads);  // warm-up: rows, pools
  for (int threads : cfg.thread_counts) variants[2].run(threads);
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int threads : cfg.thread_counts) {
      const std::string tlabel = std::to_string(threads) + (threads == 1 ? " thread" : " threads");
      for (auto& v : variants) {
        double calls0 = stats.role_calls();
        double cpu0 = process_cpu_seconds();
        auto res = v.run(threads);
        double cpu = process_cpu_seconds() - cpu0;
        double calls = stats.role_calls() - calls0;
        rep.add(s7, "cycles/s, " + tlabel, v.name, "cycles/s", how_tp, res.ops_per_s());
        rep.add(s7, "cycle latency p50, " + tlabel, v.name, "ms", how_lat,
                p(res.lat_us, 50) / 1000);
        rep.add(s7, "cycle latency p99, " + tlabel, v.name, "ms", how_lat,
                p(res.lat_us, 99) / 1000);
        rep.add(s7, "statements per cycle, " + tlabel, v.name, "statements",
                "pg_stat_statements calls by the benchmark role during the run / cycles; with "
                "pg_stat_statements.track = all the statements the grant function runs inside "
                "count too (the client sends 2 per cycle)",
                res.ops ? calls / static_cast<double>(res.ops) : 0);
        rep.add(s7, "client CPU per cycle, " + tlabel, v.name, "us",
                "getrusage(RUSAGE_SELF) user+sys of the benchmark process during the run / "
                "cycles (the client side only)",
                res.ops ? cpu * 1e6 / static_cast<double>(res.ops) : 0);
        std::cerr << "  s7 rep " << r + 1 << " " << tlabel << " " << v.name << ": "
                  << report::fmt(res.ops_per_s()) << " cycles/s\n";
      }
    }
  }
  clients.clear();

  // ---- contended: 8 clients, limit 2 ----
  const int threads = 8;
  const int limit = 2;
  // Held 1 ms (10x scenario 2's hold): long enough against a handoff that both units are
  // usually in use, so the limit is really exercised.
  const auto hold = microseconds{1000};
  std::vector<timed_client> tcs;
  for (int i = 0; i < threads; ++i) tcs.push_back(make_timed(cfg, backend_opts(2, true)));
  const std::string how_grants = "grants / wall time (8 threads, hold ~1 ms)";
  const std::string how_wait =
      "steady_clock from the call to the grant, over every grant of the run";
  const std::string how_units =
      "units in use counted by the holders (+1 after the grant returned, -1 before the "
      "release is sent): the most at any instant";
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int fair = 0; fair <= 1; ++fair) {
      const std::string v = fair ? "sqlock, fair (8 clients)" : "sqlock, non-fair (8 clients)";
      const std::string name = fair ? "sem-hot-fair" : "sem-hot";
      for (auto& c : tcs) c.backend->take_attempts();
      unit_meter meter(limit);
      auto opts = sem_opts(limit, fair != 0);
      auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
        return [&](worker_ctx& w) {
          auto& c = *tcs[static_cast<std::size_t>(w.index)].client;
          auto t0 = clk::now();
          auto l = c.try_acquire_semaphore_for(name, milliseconds{5000}, opts);
          if (!l) {
            ++w.events;  // timed out
            return;
          }
          meter.enter();
          w.extra_us.push_back(us_between(t0, clk::now()));
          std::this_thread::sleep_for(hold);
          meter.leave();
          l->release();
        };
      });
      std::vector<double> attempts;
      for (auto& c : tcs) {
        auto a = c.backend->take_attempts();
        attempts.insert(attempts.end(), a.begin(), a.end());
      }
      auto grants = static_cast<double>(res.extra_us.size());
      rep.add(s7, "contended (limit 2): grants/s", v, "grants/s", how_grants,
              grants / res.seconds);
      rep.add(s7, "contended (limit 2): wait for grant p50", v, "ms", how_wait,
              p(res.extra_us, 50) / 1000);
      rep.add(s7, "contended (limit 2): wait for grant p99", v, "ms", how_wait,
              p(res.extra_us, 99) / 1000);
      rep.add(s7, "contended (limit 2): acquire statements per grant", v, "",
              "try_acquire_semaphore calls into the backend (timed by a wrapping backend) / "
              "grants",
              grants > 0 ? static_cast<double>(attempts.size()) / grants : 0);
      rep.add(s7, "contended (limit 2): acquire statement p99", v, "ms",
              "steady_clock around each grant-function call, inside a wrapping backend",
              p(attempts, 99) / 1000);
      rep.add(s7, "contended (limit 2): waits that timed out (5 s)", v, "", "count per run",
              static_cast<double>(res.events));
      rep.add(s7, "contended (limit 2): most units in use at once", v, "units", how_units,
              static_cast<double>(meter.peak.load()));
      if (meter.over.load() > 0)
        rep.violation("7. contended semaphore: " + std::to_string(meter.peak.load()) +
                      " units in use at once with limit 2 (" + v + ")");
      std::cerr << "  s7 contended rep " << r + 1 << " " << v << ": "
                << report::fmt(grants / res.seconds) << " grants/s, peak " << meter.peak.load()
                << " units\n";
    }
    {
      const std::string v = "bare grant function loop (8 libpq threads, retry at once)";
      unit_meter meter(limit);
      auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
        auto b = std::make_shared<bare_semaphore>(cfg, sst, chan, limit);
        return [b, &meter, hold](worker_ctx& w) {
          auto t0 = clk::now();
          auto nonce = random_hex(16);
          std::string token;
          while (!w.stopped()) {
            auto a0 = clk::now();
            token = b->acquire("sem-hot-bare", nonce);
            w.third_us.push_back(us_between(a0, clk::now()));
            if (!token.empty()) break;
          }
          if (token.empty()) return;
          meter.enter();
          w.extra_us.push_back(us_between(t0, clk::now()));
          std::this_thread::sleep_for(hold);
          meter.leave();
          b->release("sem-hot-bare", nonce, token);
        };
      });
      auto grants = static_cast<double>(res.extra_us.size());
      rep.add(s7, "contended (limit 2): grants/s", v, "grants/s", how_grants,
              grants / res.seconds);
      rep.add(s7, "contended (limit 2): wait for grant p50", v, "ms", how_wait,
              p(res.extra_us, 50) / 1000);
      rep.add(s7, "contended (limit 2): wait for grant p99", v, "ms", how_wait,
              p(res.extra_us, 99) / 1000);
      rep.add(s7, "contended (limit 2): acquire statements per grant", v, "",
              "grant-function calls / grants",
              grants > 0 ? static_cast<double>(res.third_us.size()) / grants : 0);
      rep.add(s7, "contended (limit 2): acquire statement p99", v, "ms",
              "steady_clock around each grant-function call (PQexecPrepared)",
              p(res.third_us, 99) / 1000);
      rep.add(s7, "contended (limit 2): most units in use at once", v, "units", how_units,
              static_cast<double>(meter.peak.load()));
      if (meter.over.load() > 0)
        rep.violation("7. contended semaphore: " + std::to_string(meter.peak.load()) +
                      " units in use at once with limit 2 (" + v + ")");
    }
  }
  tcs.clear();

  // ---- readers/writer: shared_mutex, 6 readers + 1 occasional writer ----
  const int readers = 6;
  const auto reader_hold = milliseconds{1};
  const auto writer_think = milliseconds{20};
  // The writer gives up after 2 s (in a smoke run, after one run's length).
  const auto writer_cap = std::min(milliseconds{2000}, std::max(cfg.run, milliseconds{500}));
  const std::string cap_text = std::to_string(writer_cap.count()) + " ms";
  std::vector<std::unique_ptr<sqlock::client>> rwc;
  for (int i = 0; i <= readers; ++i) {
    sqlock::client_options co;
    co.backend = backend_opts(2, true);
    rwc.push_back(std::make_unique<sqlock::client>(cfg.pg_url, co));
  }
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int fair = 0; fair <= 1; ++fair) {
      const std::string v = fair ? "sqlock shared_mutex, fair=true" : "sqlock shared_mutex, fair=false";
      const std::string name = fair ? "rw-fair" : "rw";
      std::vector<std::unique_ptr<sqlock::shared_mutex>> mx;
      for (auto& c : rwc)
        mx.push_back(std::make_unique<sqlock::shared_mutex>(*c, name, no_keepalive(), fair != 0));
      std::atomic<int> readers_in{0}, writer_in{0};
      std::atomic<std::uint64_t> exclusion_broken{0}, writer_timeouts{0};
      auto res = run_workers(
          readers + 1, cfg.run,
          [&](worker_ctx&) -> op_fn {
            return [&](worker_ctx& w) {
              auto& m = *mx[static_cast<std::size_t>(w.index)];
              if (w.index < readers) {
                while (!w.stopped()) {
                  auto t0 = clk::now();
                  if (!m.try_lock_shared_for(milliseconds{5000})) continue;
                  readers_in.fetch_add(1);
                  if (writer_in.load() != 0) exclusion_broken.fetch_add(1);
                  w.extra_us.push_back(us_between(t0, clk::now()));
                  ++w.ops;
                  std::this_thread::sleep_for(reader_hold);
                  readers_in.fetch_sub(1);
                  m.unlock_shared();
                }
                return;
              }
              while (!w.stopped()) {
                std::this_thread::sleep_for(writer_think);
                if (w.stopped()) break;
                auto t0 = clk::now();
                bool got = m.try_lock_for(writer_cap);
                auto waited = us_between(t0, clk::now());
                // Unfinished waits count at their length so far (a lower bound).
                w.third_us.push_back(waited);
                if (!got) {
                  if (!w.stopped()) writer_timeouts.fetch_add(1);
                  continue;
                }
                writer_in.store(1);
                if (readers_in.load() != 0) exclusion_broken.fetch_add(1);
                ++w.events;
                std::this_thread::sleep_for(reader_hold);
                writer_in.store(0);
                m.unlock();
              }
            };
          },
          true);
      mx.clear();
      double secs = res.seconds;
      rep.add(s7, "readers/writer: reader grants/s", v, "grants/s",
              "shared locks granted to the 6 readers / wall time", static_cast<double>(res.ops) / secs);
      rep.add(s7, "readers/writer: writer grants/s", v, "grants/s",
              "exclusive locks granted to the writer / wall time", static_cast<double>(res.events) / secs);
      rep.add(s7, "readers/writer: reader wait p99", v, "ms",
              "steady_clock from lock_shared's call to its grant", p(res.extra_us, 99) / 1000);
      const std::string how_w =
          "steady_clock from the writer's lock call to its grant; a wait that timed out (" +
          cap_text + ") or was cut by the end of the run counts at its length (a lower bound)";
      rep.add(s7, "readers/writer: writer wait p50", v, "ms", how_w, p(res.third_us, 50) / 1000);
      rep.add(s7, "readers/writer: writer wait p99", v, "ms", how_w, p(res.third_us, 99) / 1000);
      rep.add(s7, "readers/writer: writer waits that timed out", v, "",
              "writer lock calls that gave up after " + cap_text + ", per run",
              static_cast<double>(writer_timeouts.load()));
      if (exclusion_broken.load() > 0)
        rep.violation("7. readers/writer: a reader and the writer held the shared_mutex at "
                      "once (" + v + ")");
      std::cerr << "  s7 readers/writer rep " << r + 1 << " " << v << ": "
                << report::fmt(static_cast<double>(res.ops) / secs) << " reader, " << report::fmt(static_cast<double>(res.events) / secs)
                << " writer grants/s, writer p99 " << report::fmt(p(res.third_us, 99) / 1000)
                << " ms\n";
    }
  }
}

}  // namespace

void run_postgresql(const config& cfg, report& rep) {
  pg admin(cfg.pg_admin_url);
  std::string role;
  {
    pg me(cfg.pg_url);
    role = me.scalar("SELECT current_user");
  }
  server_stats stats{admin, role};
  {
    sqlock::client c(cfg.pg_url);
    if (c.schema_version() == 0) c.migrate();
  }
  std::cerr << "capturing sqlock's statements from the server log\n";
  auto st = capture(cfg);
  std::ofstream(cfg.out_dir + "/statements.sql")
      << "-- sqlock's statements as the server logged them (log_statement = all)\n-- acquire\n"
      << st.acquire << ";\n-- release\n" << st.release << ";\n-- renew many\n" << st.renew << ";\n";
  if (cfg.wants("1")) {
    std::cerr << "scenario 1: uncontended cycles\n";
    scenario_uncontended(cfg, rep, st, stats);
  }
  if (cfg.wants("2")) {
    std::cerr << "scenario 2: handoff and contention\n";
    scenario_handoff(cfg, rep);
  }
  if (cfg.wants("3") || cfg.wants("6")) {
    std::cerr << "scenarios 3 and 6: keepalive cost, footprint\n";
    scenario_keepalive(cfg, rep, stats);
  }
  if (cfg.wants("4")) {
    std::cerr << "scenario 4: table size and purge\n";
    scenario_table_size(cfg, rep, stats);
  }
  if (cfg.wants("7")) {
    std::cerr << "scenario 7: semaphores (cycles beside the lock cycle, contention, "
                 "readers/writer)\n";
    scenario_semaphores(cfg, rep, st, stats);
  }
}

}  // namespace bench
