// SPDX-License-Identifier: Apache-2.0
// Scenario 7 on PostgreSQL: semaphores. The uncontended cycle beside the lock cycle of scenario
// 1 (sqlock and the bare libpq loop of each), a contended semaphore of limit 2 against a bare
// loop of its grant function, and a readers/writer shared_mutex; holders count themselves in
// and out, so a broken limit or a writer beside a reader is reported as a safety violation.

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "pg_scenarios.hpp"

namespace bench {
namespace {

using std::chrono::microseconds;

const char* s7 = "s7";
constexpr std::int64_t sem_cycle_limit = 4;

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
        case k::name:
          p.push_back(name.c_str());
          break;
        case k::nonce:
          p.push_back(nonce.c_str());
          break;
        case k::owner:
          p.push_back("bench-bare");
          break;
        case k::token:
          p.push_back(token.c_str());
          break;
        case k::channel:
          p.push_back(chan_.c_str());
          break;
        case k::limit:
          p.push_back(limit_.c_str());
          break;
        case k::literal:
          p.push_back(st.literals[i].c_str());
          break;
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

// Uncontended cycles, semaphore and lock side by side: sqlock and the bare loop of each.
void semaphore_cycles(const config& cfg, report& rep, const statements& st,
                      const sem_statements& sst, server_stats& stats) {
  const std::string& chan = st.channel;
  const std::string& how_tp = how_cycle_rate;
  const std::string& how_lat = how_cycle_latency;
  clients_by_threads sqlock_client(cfg);
  std::vector<cycle_variant> variants;
  variants.push_back({"sqlock semaphore", [&](int threads) {
                        auto& c = sqlock_client(threads);
                        auto opts = sem_opts(sem_cycle_limit);
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          return [&, i = 0](worker_ctx& w) mutable {
                            auto l = c.try_acquire_semaphore(
                                "sem-" + name_for(base_sem, w.index, i++ % names_per_thread), opts);
                            if (!l) throw failure("sqlock: uncontended semaphore acquire refused");
                            l->release();
                          };
                        });
                      }});
  variants.push_back({"bare libpq, same statements (semaphore)", [&](int threads) {
                        return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
                          auto b =
                              std::make_shared<bare_semaphore>(cfg, sst, chan, sem_cycle_limit);
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
                        return sqlock_lock_cycles(cfg, sqlock_client(threads), threads);
                      }});
  variants.push_back({"bare libpq, same statements (lock)",
                      [&](int threads) { return bare_lock_cycles(cfg, st, threads); }});
  for (int threads : cfg.thread_counts) variants[0].run(threads);  // warm-up: rows, pools
  for (int threads : cfg.thread_counts) variants[2].run(threads);
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int threads : cfg.thread_counts) {
      const std::string tlabel = threads_label(threads);
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
  sqlock_client.clear();
}

// Contended: 8 clients on one semaphore of limit 2, non-fair and fair, against 8 libpq threads
// looping on the grant function.
void semaphore_contended(const config& cfg, report& rep, const sem_statements& sst,
                         const std::string& chan) {
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
  // The figures of every variant: its grants/s and waits for a grant (returns the grants)...
  auto add_grants = [&](const std::string& v, const run_result& res) {
    auto grants = static_cast<double>(res.extra_us.size());
    rep.add(s7, "contended (limit 2): grants/s", v, "grants/s", how_grants, grants / res.seconds);
    rep.add(s7, "contended (limit 2): wait for grant p50", v, "ms", how_wait,
            p(res.extra_us, 50) / 1000);
    rep.add(s7, "contended (limit 2): wait for grant p99", v, "ms", how_wait,
            p(res.extra_us, 99) / 1000);
    return grants;
  };
  // ...and the most units in use at once, a safety violation above the limit.
  auto add_units = [&](const std::string& v, const unit_meter& meter) {
    rep.add(s7, "contended (limit 2): most units in use at once", v, "units", how_units,
            static_cast<double>(meter.peak.load()));
    if (meter.over.load() > 0)
      rep.violation("7. contended semaphore: " + std::to_string(meter.peak.load()) +
                    " units in use at once with limit 2 (" + v + ")");
  };
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
      auto grants = add_grants(v, res);
      rep.add(s7, "contended (limit 2): acquire statements per grant", v, "",
              "try_acquire_semaphore calls into the backend (timed by a wrapping backend) / "
              "grants",
              grants > 0 ? static_cast<double>(attempts.size()) / grants : 0);
      rep.add(s7, "contended (limit 2): acquire statement p99", v, "ms",
              "steady_clock around each grant-function call, inside a wrapping backend",
              p(attempts, 99) / 1000);
      rep.add(s7, "contended (limit 2): waits that timed out (5 s)", v, "", "count per run",
              static_cast<double>(res.events));
      add_units(v, meter);
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
      auto grants = add_grants(v, res);
      rep.add(s7, "contended (limit 2): acquire statements per grant", v, "",
              "grant-function calls / grants",
              grants > 0 ? static_cast<double>(res.third_us.size()) / grants : 0);
      rep.add(s7, "contended (limit 2): acquire statement p99", v, "ms",
              "steady_clock around each grant-function call (PQexecPrepared)",
              p(res.third_us, 99) / 1000);
      add_units(v, meter);
    }
  }
  tcs.clear();
}

// Readers/writer: a shared_mutex, 6 readers + 1 occasional writer.
void shared_mutex_readers_writer(const config& cfg, report& rep) {
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
      const std::string v =
          fair ? "sqlock shared_mutex, fair=true" : "sqlock shared_mutex, fair=false";
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
              "shared locks granted to the 6 readers / wall time",
              static_cast<double>(res.ops) / secs);
      rep.add(s7, "readers/writer: writer grants/s", v, "grants/s",
              "exclusive locks granted to the writer / wall time",
              static_cast<double>(res.events) / secs);
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
        rep.violation(
            "7. readers/writer: a reader and the writer held the shared_mutex at "
            "once (" +
            v + ")");
      std::cerr << "  s7 readers/writer rep " << r + 1 << " " << v << ": "
                << report::fmt(static_cast<double>(res.ops) / secs) << " reader, "
                << report::fmt(static_cast<double>(res.events) / secs)
                << " writer grants/s, writer p99 " << report::fmt(p(res.third_us, 99) / 1000)
                << " ms\n";
    }
  }
}

}  // namespace

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
  const std::string& chan = st.channel;
  std::cerr << "  s7 capturing sqlock's semaphore statements\n";
  auto sst = capture_semaphore(cfg, chan, sem_cycle_limit);
  std::ofstream(cfg.out_dir + "/statements.sql", std::ios::app)
      << "-- semaphore acquire (limit 4, count 1; parameters: " << describe_slots(sst.acquire)
      << ")\n"
      << sst.acquire.sql << ";\n-- semaphore release (parameters: " << describe_slots(sst.release)
      << ")\n"
      << sst.release.sql << ";\n";
  semaphore_cycles(cfg, rep, st, sst, stats);
  semaphore_contended(cfg, rep, sst, chan);
  shared_mutex_readers_writer(cfg, rep);
}

}  // namespace bench
