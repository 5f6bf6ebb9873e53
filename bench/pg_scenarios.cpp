// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL half of the benchmark: captures sqlock's statements, then runs scenarios 1-4,
// 6 and 7 (one file each), each beside its baselines, in one run; and the helpers they share.

#include "pg_scenarios.hpp"

#include <fstream>
#include <iostream>

namespace bench {

sqlock::backend_options backend_opts(std::size_t pool, bool notifications,
                                     const std::string& schema) {
  sqlock::backend_options o;
  o.pool_size = pool;
  o.notifications = notifications;
  o.schema = schema;
  return o;
}

timed_client make_timed(const config& cfg, const sqlock::backend_options& bo,
                        sqlock::client_options co) {
  timed_client t;
  t.backend = std::make_shared<timing_backend>(sqlock::open_backend(cfg.pg_url, bo));
  t.client = std::make_unique<sqlock::client>(t.backend, std::move(co));
  return t;
}

sqlock::client& clients_by_threads::operator()(int threads) {
  auto& c = clients_[threads];
  if (!c) {
    sqlock::client_options co;
    co.backend = backend_opts(static_cast<std::size_t>(threads), true);
    c = std::make_unique<sqlock::client>(cfg_.pg_url, co);
  }
  return *c;
}

run_result sqlock_lock_cycles(const config& cfg, sqlock::client& c, int threads) {
  auto opts = no_keepalive();
  return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
    return [&, i = 0](worker_ctx& w) mutable {
      auto l = c.try_acquire(name_for(base_plain, w.index, i++ % names_per_thread), opts);
      if (!l) throw failure("sqlock: uncontended acquire refused");
      l->release();
    };
  });
}

run_result bare_lock_cycles(const config& cfg, const statements& st, int threads) {
  return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
    auto c = std::make_shared<pg>(cfg.pg_url);
    c->prepare("acq", st.acquire, 6);
    c->prepare("rel", st.release, 5);
    return [c, &st, i = 0](worker_ctx& w) mutable {
      auto name = name_for(base_plain, w.index, i++ % names_per_thread);
      auto nonce = random_hex(16);
      auto r = c->run("acq", {name.c_str(), "bench-bare", nonce.c_str(), "", "30000", "false"});
      if (PQntuples(r.get()) != 1 || PQgetvalue(r.get(), 0, 0)[0] != 't')
        throw failure("bare: uncontended acquire refused");
      std::string token = PQgetvalue(r.get(), 0, 1);
      c->run("rel", {name.c_str(), nonce.c_str(), token.c_str(), st.channel.c_str(),
                     st.handoff_channel.c_str()});
    };
  });
}

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

run_result two_durable_cycles(const config& cfg, int threads) {
  return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
    auto c = std::make_shared<pg>(cfg.pg_url);
    c->prepare("acq", naive_acquire, 4);
    c->prepare("rel", naive_release, 3);
    return [c, i = 0](worker_ctx& w) mutable {
      auto name = name_for(base_plain, w.index, i++ % names_per_thread);
      auto nonce = random_hex(16);
      auto r = c->run("acq", {name.c_str(), "bench-durable", nonce.c_str(), "30000"});
      if (PQntuples(r.get()) != 1) throw failure("two durable statements: acquire refused");
      std::string token = PQgetvalue(r.get(), 0, 0);
      c->run("rel", {name.c_str(), nonce.c_str(), token.c_str()});
    };
  });
}

namespace {
const std::string seq = "nextval('public.sqlock_token_seq'::regclass)";
std::string epoch_us(const std::string& x) {
  return "(extract(epoch from " + x + ") * 1000000)::bigint";
}
}  // namespace

const std::string schema3_acquire =
    "WITH cur AS (SELECT " + epoch_us("expires_at - now()") +
    " AS left_us, waiters_until < now() + $7::bigint * interval '500 microseconds' AS mark_due "
    "FROM public.sqlock_locks WHERE name = $1::text), "
    "free AS (SELECT 1 FROM public.sqlock_locks WHERE name = $1::text AND expires_at <= now() "
    "FOR UPDATE SKIP LOCKED), "
    "granted AS (INSERT INTO public.sqlock_locks AS l "
    "(name, owner, nonce, token, acquired_at, expires_at, metadata) "
    "SELECT $1::text, $2::text, $3::text, " +
    seq +
    ", now(), now() + $5::bigint * interval '1 millisecond', $4::text "
    "WHERE NOT EXISTS (SELECT 1 FROM cur WHERE left_us > 0) "
    "AND (NOT EXISTS (SELECT 1 FROM cur) OR EXISTS (SELECT 1 FROM free)) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
    "token = GREATEST(" +
    seq +
    ", l.token + 1), acquired_at = excluded.acquired_at, "
    "expires_at = excluded.expires_at, metadata = excluded.metadata "
    "WHERE l.expires_at <= now() RETURNING l.token, " +
    epoch_us("l.acquired_at") + " AS acquired_us, " + epoch_us("l.expires_at") +
    " AS expires_us), "
    "marked AS (UPDATE public.sqlock_locks SET waiters_until = now() + $7::bigint * interval "
    "'1 millisecond' WHERE name IN (SELECT name FROM public.sqlock_locks WHERE $6::boolean "
    "AND name = $1::text AND expires_at > now() AND waiters_until < now() + $7::bigint * "
    "interval '500 microseconds' FOR UPDATE SKIP LOCKED) RETURNING 1) "
    "SELECT true, token, acquired_us, expires_us FROM granted "
    "UNION ALL SELECT false, cur.left_us, (SELECT count(*) FROM marked), "
    "CASE WHEN cur.mark_due THEN 1 ELSE 0 END FROM cur "
    "WHERE NOT EXISTS (SELECT 1 FROM granted)";
const std::string schema3_release =
    "WITH ended AS (UPDATE public.sqlock_locks SET expires_at = now() WHERE name = $1::text "
    "AND nonce = $2::text AND ($3::bigint IS NULL OR token = $3::bigint) "
    "AND expires_at > now() RETURNING waiters_until > now() AS waited) "
    "SELECT true, CASE WHEN waited THEN pg_notify($4::text, $1::text)::text END, false "
    "FROM ended";

run_result schema3_cycles(const config& cfg, const std::string& channel, int threads) {
  return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
    auto c = std::make_shared<pg>(cfg.pg_url);
    c->prepare("acq", schema3_acquire, 7);
    c->prepare("rel", schema3_release, 4);
    return [c, &channel, i = 0](worker_ctx& w) mutable {
      auto name = name_for(base_plain, w.index, i++ % names_per_thread);
      auto nonce = random_hex(16);
      auto r = c->run(
          "acq", {name.c_str(), "bench-schema3", nonce.c_str(), "", "30000", "false", "10000"});
      if (PQntuples(r.get()) != 1 || PQgetvalue(r.get(), 0, 0)[0] != 't')
        throw failure("schema 3 statements: uncontended acquire refused");
      std::string token = PQgetvalue(r.get(), 0, 1);
      c->run("rel", {name.c_str(), nonce.c_str(), token.c_str(), channel.c_str()});
    };
  });
}

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
      << st.acquire << ";\n-- release\n"
      << st.release << ";\n-- renew many\n"
      << st.renew << ";\n";
  if (cfg.wants("1")) {
    std::cerr << "scenario 1: uncontended cycles\n";
    scenario_uncontended(cfg, rep, st, stats);
  }
  if (cfg.wants("2")) {
    std::cerr << "scenario 2: handoff and contention\n";
    scenario_handoff(cfg, rep, st);
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
