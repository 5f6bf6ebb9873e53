// SPDX-License-Identifier: Apache-2.0
// Scenario 2 on PostgreSQL: handoff (how soon a waiter gets a released lock, with LISTEN/NOTIFY
// and with polling) and contention (8 clients on one name against the naive upsert loop).

#include <atomic>
#include <iostream>
#include <memory>
#include <thread>

#include "etcd_peer.hpp"
#include "pg_scenarios.hpp"

namespace bench {
namespace {

using std::chrono::microseconds;

const char* s2 = "s2";

// Where a handoff release's time goes: sqlock's own release statement (as captured) hands one
// lock back and forth between two nonces on ONE connection, nothing else running: each round
// queues the other nonce's ticket (unflushed), then times the release that grants it. With no
// other LISTEN connection, with 8 idle ones on the channel the handoff notifies (schema 4: one
// channel per schema, so every waiting client heard every handoff), and with 8 on channels of
// their own (schema 5: a channel per client; PostgreSQL still signals every listening backend
// of the database, but no other client is sent anything); durable (as sqlock runs it) or with
// synchronous_commit off for the session (what the flush costs).
void handoff_anatomy(const config& cfg, report& rep, const statements& st, int r) {
  const std::string how =
      "1 libpq connection, nothing else running: per round, queue the other nonce's ticket "
      "(unflushed), then steady_clock around sqlock's release statement (captured text), which "
      "hands the lock to it; p50 over every round";
  for (int mode : {0, 1, 2}) {
    std::vector<std::unique_ptr<notification_counter>> idle;
    for (int i = 0; mode > 0 && i < 8; ++i)
      idle.push_back(std::make_unique<notification_counter>(
          cfg.pg_url,
          std::vector{mode == 1 ? st.handoff_channel : st.handoff_channel + std::to_string(i)}));
    for (bool durable : {true, false}) {
      auto res = run_workers(1, cfg.run / 2, [&](worker_ctx&) -> op_fn {
        auto c = std::make_shared<pg>(cfg.pg_url);
        c->exec(
            "DELETE FROM public.sqlock_lock_waiters WHERE name = 'anatomy'; "
            "DELETE FROM public.sqlock_locks WHERE name = 'anatomy'; "
            "INSERT INTO public.sqlock_locks (name, owner, nonce, token, acquired_at, expires_at) "
            "VALUES ('anatomy', 'bench', 'a', nextval('public.sqlock_token_seq'), now(), "
            "now() + interval '1 hour')");
        if (!durable) c->exec("SET synchronous_commit = off");
        c->prepare("queue",
                   "INSERT INTO public.sqlock_lock_waiters (name, nonce, owner, ttl_ms, ticket, "
                   "attempt, expires_at) SELECT 'anatomy', $1::text, 'bench', 30000, "
                   "nextval('public.sqlock_token_seq'), 1, now() + interval '1 hour' FROM (SELECT "
                   "set_config('synchronous_commit', 'off', true)) s",
                   1);
        c->prepare("rel", st.release, 5);
        auto token = std::make_shared<std::string>(
            c->scalar("SELECT token::text FROM public.sqlock_locks WHERE name = 'anatomy'"));
        return [c, token, &st, holder = std::string("a")](worker_ctx& w) mutable {
          const std::string next = holder == "a" ? "b" : "a";
          c->run("queue", {next.c_str()});
          auto t0 = clk::now();
          auto res = c->run("rel", {"anatomy", holder.c_str(), token->c_str(), st.channel.c_str(),
                                    st.handoff_channel.c_str()});
          w.extra_us.push_back(us_between(t0, clk::now()));
          if (PQntuples(res.get()) != 1 || PQgetisnull(res.get(), 0, 5))
            throw failure("handoff anatomy: the release handed nothing over");
          *token = PQgetvalue(res.get(), 0, 5);
          holder = next;
        };
      });
      const std::string v = anatomy_variant(durable, mode);
      rep.add(s2, "anatomy: handoff release statement p50", v, "ms", how,
              p(res.extra_us, 50) / 1000);
      std::cerr << "  s2 anatomy rep " << r + 1 << " " << v << ": "
                << report::fmt(p(res.extra_us, 50) / 1000) << " ms\n";
    }
  }
}

}  // namespace

void scenario_handoff(const config& cfg, report& rep, const statements& st) {
  rep.section(s2, "2. Handoff and contention (PostgreSQL)",
              "Handoff: " + std::to_string(cfg.waiters) +
                  " clients, each its own sqlock client (own connections and listener, as "
                  "separate processes would have), loop on try_acquire_for(name) -> hold 1 ms -> "
                  "release on ONE name; a client that released waits until another got the "
                  "lock before it queues again, so at every release the " +
                  std::to_string(cfg.waiters - 1) +
                  " others are waiting. Contention: 8 threads, each its own client, loop "
                  "try_acquire_for(name) -> hold 0 or 1 ms -> release on one name, non-fair and "
                  "fair, against 8 libpq threads looping on the naive upsert (retry at once when "
                  "refused, the same holds)" +
                  (etcd_enabled(cfg)
                       ? std::string(" and 8 clients of etcd's concurrency.Mutex (Lock -> hold "
                                     "0 ms or 1 ms -> Unlock on one key; a waiter watches the "
                                     "deletion of the key queued before its own).")
                       : std::string(".")));
  const std::string how_handoff =
      "steady_clock from the holder's release() returning to the next holder's acquire() "
      "returning (same process, so one clock); every handoff of the run";
  const std::string how_handoff_call =
      "steady_clock from the holder calling release() to the next holder's acquire() returning";
  // Baseline: one round trip + commit.
  {
    pg c(cfg.pg_url);
    c.exec(
        "CREATE TABLE IF NOT EXISTS bench_rtt (id integer PRIMARY KEY, v bigint NOT NULL); "
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
    handoff_anatomy(cfg, rep, st, r);
  }

  for (int notify = 1; notify >= 0; --notify) {
    // Handoffs go to the waiting client's own channel (schema 5), so no extra connection can
    // hear them all: the clients count the grants a release handed them ("handed over").
    auto handed = std::make_shared<std::atomic<std::uint64_t>>(0);
    sqlock::client_options co;
    co.listeners.push_back([handed](const sqlock::lock_event& e) {
      if (e.kind == sqlock::event_kind::acquired && e.reason == "handed over") ++*handed;
    });
    std::vector<timed_client> clients;
    for (int i = 0; i < cfg.waiters; ++i)
      clients.push_back(make_timed(cfg, backend_opts(2, notify), co));
    const std::string v =
        notify ? "sqlock, LISTEN/NOTIFY" : "sqlock, polling fallback (notifications=false)";
    const std::string name = notify ? "handoff-notify" : "handoff-poll";
    notification_counter listener(cfg.pg_url, {st.channel});
    for (int r = 0; r < cfg.repeats; ++r) {
      std::atomic<std::uint64_t> grants{0}, releases{0};
      std::atomic<std::int64_t> rel_start{0}, rel_done{0};
      for (auto& c : clients) {
        c.backend->take_attempts();
        c.backend->take_releases();
      }
      auto heard0 = listener.heard() + handed->load();
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
      std::vector<double> rel_us;
      for (auto& c : clients) {
        attempts += c.backend->take_attempts().size();
        auto rl = c.backend->take_releases();
        rel_us.insert(rel_us.end(), rl.begin(), rl.end());
      }
      rep.add(s2, "handoff p50", v, "ms", how_handoff, p(res.lat_us, 50) / 1000);
      rep.add(s2, "handoff p99", v, "ms", how_handoff, p(res.lat_us, 99) / 1000);
      rep.add(s2, "handoff p50, from the release call", v, "ms", how_handoff_call,
              p(res.extra_us, 50) / 1000);
      rep.add(s2, "grants/s (1 ms holds)", v, "grants/s", "grants / wall time", res.ops_per_s());
      rep.add(s2, "release statement p50", v, "ms",
              "steady_clock around the backend's release (timed by a wrapping backend): the "
              "statement that hands the lock over, with its durable commit",
              p(rel_us, 50) / 1000);
      std::this_thread::sleep_for(milliseconds{100});
      rep.add(s2, "notifications sent per release", v, "",
              "(wake-ups heard by an extra LISTEN connection on sqlock's channel + grants the "
              "clients were handed by a release, each one handoff notification) / releases",
              releases ? static_cast<double>(listener.heard() + handed->load() - heard0) /
                             static_cast<double>(releases.load())
                       : 0);
      rep.add(s2, "acquire statements per grant", v, "",
              "try_acquire calls into the backend (timed by a wrapping backend) / grants",
              res.ops ? static_cast<double>(attempts) / static_cast<double>(res.ops) : 0);
      std::cerr << "  s2 handoff rep " << r + 1 << " " << v << ": p50 "
                << report::fmt(p(res.lat_us, 50) / 1000) << " ms\n";
    }
  }

  // 8 clients hammering one name, holding 0 or 1 ms.
  const int threads = 8;
  const std::string how_grants = "grants / wall time (8 threads, each its own client)";
  const std::string how_attempt =
      "steady_clock around each acquire statement (sqlock: timed inside a wrapping backend; "
      "naive: around PQexecPrepared), p99 over every attempt";
  const std::string how_wait = "steady_clock from the call to the grant, p50/p99 over every grant";
  const std::string how_etcd_grants =
      "etcd: grants / wall time from the start barrier (every client connected, its session's "
      "lease granted) to the last goroutine's exit, timed in the Go client (bench/etcd, one "
      "process per run): 8 goroutines, each its own clientv3.Client and concurrency.Session (ttl "
      "30 s), Mutex.Lock -> hold -> Unlock on one key";
  const std::string how_etcd_wait =
      "etcd: Go's monotonic clock from the Mutex.Lock call to its return, p50/p99 over every "
      "grant (nearest rank, computed by the Go client)";
  const std::string how_etcd_holders =
      "etcd: each holder counts itself in (an atomic counter in the Go process) after Lock "
      "returned and out before it calls Unlock; the most seen at once. More than 1 is a safety "
      "violation";
  const std::string how_holders =
      "each holder counts itself in (an atomic counter) after the grant returned and out before "
      "it releases; the most seen at once. More than 1 is a safety violation";
  std::vector<timed_client> clients;
  for (int i = 0; i < threads; ++i) clients.push_back(make_timed(cfg, backend_opts(2, true)));
  auto add = [&](const std::string& v, const run_result& res, std::size_t attempts,
                 double attempt_p99, int most) {
    rep.add(s2, "contention: grants/s", v, "grants/s", how_grants,
            static_cast<double>(res.extra_us.size()) / res.seconds);
    rep.add(s2, "contention: attempts/s", v, "attempts/s", "acquire statements / wall time",
            static_cast<double>(attempts) / res.seconds);
    rep.add(s2, "contention: acquire statement p99", v, "ms", how_attempt, attempt_p99 / 1000);
    rep.add(s2, "contention: wait for grant p50", v, "ms", how_wait, p(res.extra_us, 50) / 1000);
    rep.add(s2, "contention: wait for grant p99", v, "ms", how_wait, p(res.extra_us, 99) / 1000);
    rep.add(s2, "contention: most holders at once", v, "", how_holders, most);
    if (most > 1) rep.violation(v + ": " + std::to_string(most) + " holders at once");
  };
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int hold_ms : {0, 1}) {
      const milliseconds hold{hold_ms};
      for (bool fair : {false, true}) {
        const std::string v =
            contention_variant(fair ? "sqlock, fair" : "sqlock, non-fair", hold_ms);
        for (auto& c : clients) {
          c.backend->take_attempts();
          c.backend->take_releases();
        }
        unit_meter holders(1);
        auto opts = no_keepalive();
        opts.fair = fair;
        auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
          return [&](worker_ctx& w) {
            auto& c = *clients[static_cast<std::size_t>(w.index)].client;
            auto t0 = clk::now();
            auto l = c.try_acquire_for("hot", milliseconds{5000}, opts);
            if (!l) return;
            w.extra_us.push_back(us_between(t0, clk::now()));
            holders.enter();
            if (hold_ms > 0) std::this_thread::sleep_for(hold);
            holders.leave();
            l->release();
          };
        });
        std::vector<double> attempts, rel_us;
        for (auto& c : clients) {
          auto a = c.backend->take_attempts();
          attempts.insert(attempts.end(), a.begin(), a.end());
          auto rl = c.backend->take_releases();
          rel_us.insert(rel_us.end(), rl.begin(), rl.end());
        }
        rep.add(s2, "contention: release statement p50", v, "ms",
                "steady_clock around the backend's release (a wrapping backend), p50 over every "
                "release",
                p(rel_us, 50) / 1000);
        add(v, res, attempts.size(), p(attempts, 99), holders.peak.load());
        std::cerr << "  s2 contention rep " << r + 1 << " " << v << ": "
                  << report::fmt(static_cast<double>(res.extra_us.size()) / res.seconds)
                  << " grants/s\n";
      }
      {
        const std::string v = contention_variant("naive upsert loop", hold_ms);
        unit_meter holders(1);
        auto res = run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
          auto c = std::make_shared<pg>(cfg.pg_url);
          c->prepare("acq", naive_acquire, 4);
          c->prepare("rel", naive_release, 3);
          return [c, hold, hold_ms, &holders](worker_ctx& w) {
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
            holders.enter();
            if (hold_ms > 0) std::this_thread::sleep_for(hold);
            holders.leave();
            c->run("rel", {"hot-naive", nonce.c_str(), token.c_str()});
          };
        });
        add(v, res, res.third_us.size(), p(res.third_us, 99), holders.peak.load());
        std::cerr << "  s2 contention rep " << r + 1 << " " << v << ": "
                  << report::fmt(static_cast<double>(res.extra_us.size()) / res.seconds)
                  << " grants/s\n";
      }
      if (etcd_enabled(cfg)) {
        const std::string v = etcd_contention_variant(hold_ms);
        auto e = etcd_contended(cfg, threads, hold_ms);
        rep.add(s2, "contention: grants/s", v, "grants/s", how_etcd_grants, e.ops_per_s);
        rep.add(s2, "contention: wait for grant p50", v, "ms", how_etcd_wait, e.p50_ms);
        rep.add(s2, "contention: wait for grant p99", v, "ms", how_etcd_wait, e.p99_ms);
        rep.add(s2, "contention: most holders at once", v, "", how_etcd_holders, e.max_holders);
        if (e.overlaps > 0)
          rep.violation("etcd concurrency.Mutex, 8 clients, hold " + std::to_string(hold_ms) +
                        " ms, repeat " + std::to_string(r + 1) + ": " + std::to_string(e.overlaps) +
                        " grants while another client held the lock (most holders at once: " +
                        std::to_string(e.max_holders) + ")");
      }
    }
    std::cerr << "  s2 contention rep " << r + 1 << " done\n";
  }
}

}  // namespace bench
