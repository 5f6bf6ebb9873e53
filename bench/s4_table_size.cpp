// SPDX-License-Identifier: Apache-2.0
// Scenario 4 on PostgreSQL: acquire latency against the table's size, and purging a large
// table's free rows while another client acquires.

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "pg_scenarios.hpp"

namespace bench {
namespace {

const char* s4 = "s4";

void fill(pg& admin, const std::string& schema, long rows) {
  const std::string t = "\"" + schema + "\".sqlock_locks";
  admin.exec("DELETE FROM " + t + " WHERE name LIKE 'fill-%'");
  admin.exec("INSERT INTO " + t +
             " (name, owner, nonce, token, acquired_at, expires_at) "
             "SELECT 'fill-' || lpad(g::text, 8, '0'), 'bench-fill', md5(g::text), g, "
             "now() - interval '1 hour', now() - interval '1 hour' "
             "FROM generate_series(1, " +
             std::to_string(rows) + ") g");
  admin.exec("SELECT setval('\"" + schema + "\".sqlock_token_seq', " +
             std::to_string(rows + 1000000000L) + ")");
  admin.exec("VACUUM ANALYZE " + t);
}

}  // namespace

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
    admin.exec(
        "SELECT pg_stat_statements_reset(0, 0, queryid) FROM pg_stat_statements "
        "WHERE query LIKE '%DELETE FROM \"" +
        schema +
        "\".sqlock_locks%' "
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
        "WHERE query LIKE '%DELETE FROM \"" +
        schema +
        "\".sqlock_locks%' "
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

}  // namespace bench
