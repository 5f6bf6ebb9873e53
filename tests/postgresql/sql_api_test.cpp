// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only: the lock and semaphore protocols as SQL functions (schemas 7 and 8,
// migrations/postgresql/007_sql_api.up.sql and 008_semaphore_sql_api.up.sql): sqlock_try_acquire,
// sqlock_renew, sqlock_release and their sqlock_semaphore_ counterparts. The same rows and token
// sequence as the C++ client, so each excludes the other; inside the caller's transaction they
// commit or roll back with it.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/postgresql.hpp>
#include <sqlock/sqlock.hpp>

#include "backends/postgresql/statements.hpp"
#include "support/docs_grants.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/semaphores.hpp"
#include "support/spawn.hpp"

using namespace std::chrono_literals;
using sqlock_test::pg_session;
using sqlock_test::postgresql_fixture;

namespace {

// A session of the fixture's role with the schema's functions at hand: f("try_acquire") is the
// schema-qualified name.
struct sql_caller {
  postgresql_fixture& db;
  pg_session s{db.url()};
  explicit sql_caller(postgresql_fixture& d) : db(d) {}
  std::string f(const std::string& fn) { return s.ident(db.schema()) + ".sqlock_" + fn; }
  std::string try_acquire(const std::string& name, const std::string& ttl = "10 seconds") {
    return s.value("SELECT " + f("try_acquire") + "($1, $2::interval)", {name, ttl});
  }
  std::string renew(const std::string& name, const std::string& token,
                    const std::string& ttl = "10 seconds") {
    return s.value("SELECT " + f("renew") + "($1, $2::bigint, $3::interval)", {name, token, ttl});
  }
  std::string release(const std::string& name, const std::string& token) {
    return s.value("SELECT " + f("release") + "($1, $2::bigint)", {name, token});
  }
  // The semaphore functions of schema 8.
  std::string sem_try(const std::string& name, int limit, int count,
                      const std::string& ttl = "10 seconds") {
    return s.value(
        "SELECT " + f("semaphore_try_acquire") + "($1, $2::bigint, $3::bigint, $4::interval)",
        {name, std::to_string(limit), std::to_string(count), ttl});
  }
  std::string sem_renew(const std::string& name, const std::string& token,
                        const std::string& ttl = "10 seconds") {
    return s.value("SELECT " + f("semaphore_renew") + "($1, $2::bigint, $3::interval)",
                   {name, token, ttl});
  }
  std::string sem_release(const std::string& name, const std::string& token) {
    return s.value("SELECT " + f("semaphore_release") + "($1, $2::bigint)", {name, token});
  }
  std::string table(const std::string& t) { return s.ident(db.schema()) + "." + t; }
  // The SQLSTATE of `sql`, "" when it succeeded.
  std::string sqlstate(const std::string& sql, const std::vector<std::string>& params = {}) {
    try {
      s.query(sql, params);
    } catch (const std::runtime_error&) {
      return s.last_sqlstate();
    }
    return "";
  }
};

std::int64_t num(const std::string& s) { return std::stoll(s); }

}  // namespace

TEST_SUITE("postgresql") {
  TEST_CASE("SQL API: SQL and C++ callers exclude each other and share one token sequence") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());

    // SQL holds: C++ is refused, and sees the holder SQL named by default.
    const std::string t1 = sql.try_acquire("job");
    REQUIRE(!t1.empty());
    CHECK_FALSE(c.try_acquire("job"));
    auto rec = c.inspect("job");
    REQUIRE(rec);
    CHECK(rec->held);
    CHECK(rec->token == num(t1));
    CHECK(rec->owner.find("(backend ") != std::string::npos);
    // A second SQL caller is refused too, with NULL, not an error.
    CHECK(sql.try_acquire("job") == "");
    CHECK(sql.renew("job", t1) == "t");
    CHECK(sql.renew("job", std::to_string(num(t1) + 1)) == "f");  // not this lease's token
    CHECK(sql.release("job", t1) == "t");
    CHECK(sql.release("job", t1) == "f");  // already over
    CHECK(sql.renew("job", t1) == "f");

    // C++ holds: SQL gets NULL; tokens keep increasing across both.
    auto lease = c.try_acquire("job");
    REQUIRE(lease);
    CHECK(lease->token() > num(t1));
    CHECK(sql.try_acquire("job") == "");
    // A token is easy to guess: without the lease's nonce, SQL can neither end nor extend a
    // lease it did not grant.
    const std::string tc = std::to_string(lease->token());
    CHECK(sql.release("job", tc) == "f");
    CHECK(sql.renew("job", tc) == "f");
    CHECK(sql.s.value("SELECT " + sql.f("release") + "('job', $1::bigint, 'guess')", {tc}) == "f");
    CHECK(c.inspect("job")->held);
    CHECK(sql.s.value("SELECT " + sql.f("renew") + "('job', $1::bigint, '10 s', $2)",
                      {tc, lease->nonce()}) == "t");
    lease->release();
    const std::string t2 = sql.try_acquire("job");
    REQUIRE(!t2.empty());
    CHECK(num(t2) > lease->token());
    CHECK(sql.release("job", t2) == "t");

    // Named arguments and the caller's own owner and metadata.
    const std::string t3 = sql.s.value(
        "SELECT " + sql.f("try_acquire") +
        "(name => 'named', ttl => '5 s', owner => 'py-worker 7', metadata => 'batch 42')");
    REQUIRE(!t3.empty());
    rec = c.inspect("named");
    REQUIRE(rec);
    CHECK(rec->owner == "py-worker 7");
    CHECK(rec->metadata == "batch 42");
    CHECK(rec->token == num(t3));
  }

  TEST_CASE("SQL API: a refusal writes nothing, draws no token and waits for no row lock") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());
    auto lease = c.try_acquire("held", sqlock_test::ttl(5000ms, false));
    REQUIRE(lease);
    const std::string seq = "SELECT last_value FROM " + sql.table("sqlock_token_seq");
    const std::string before = sql.s.value(seq);
    const std::string row = "SELECT xmin::text, expires_at::text FROM " +
                            sql.table("sqlock_locks") + " WHERE name = 'held'";
    auto row_before = sql.s.query(row);
    for (int i = 0; i < 5; ++i) CHECK(sql.try_acquire("held") == "");
    CHECK(sql.s.value(seq) == before);
    CHECK(sql.s.query(row) == row_before);

    // An expired row share-locked by an open fenced transaction is refused at once, not waited
    // for (a statement_timeout turns a wait into an error this test would see).
    auto expired = c.try_acquire("fenced", sqlock_test::ttl(300ms, false));
    REQUIRE(expired);
    pg_session fence(db.url());
    fence.query("BEGIN");
    fence.query("SELECT " + sql.f("assert_held") + "('fenced', $1::bigint)",
                {std::to_string(expired->token())});
    REQUIRE(sqlock_test::eventually([&] { return !c.inspect("fenced")->held; }, 5000ms));
    sql.s.query("SET statement_timeout = '3s'");
    CHECK(sql.try_acquire("fenced") == "");
    fence.query("ROLLBACK");
    CHECK(num(sql.try_acquire("fenced")) > expired->token());
  }

  TEST_CASE(
      "SQL API: inside the caller's transaction a grant or a release commits or rolls back "
      "with it") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());

    // An acquire rolled back leaves nothing: no row for a first grant, the old one otherwise.
    sql.s.query("BEGIN");
    REQUIRE(!sql.try_acquire("tx").empty());
    CHECK_FALSE(c.inspect("tx"));  // not visible before the commit
    sql.s.query("ROLLBACK");
    CHECK_FALSE(c.inspect("tx"));
    CHECK(c.try_acquire("tx", sqlock_test::ttl(200ms, false)));
    REQUIRE(sqlock_test::eventually([&] { return !c.inspect("tx")->held; }, 5000ms));
    const auto expired_token = c.inspect("tx")->token;
    sql.s.query("BEGIN");
    const std::string rolled = sql.try_acquire("tx");
    REQUIRE(!rolled.empty());
    CHECK_FALSE(c.try_acquire("tx"));  // the open transaction holds the row: refused, at once
    sql.s.query("ROLLBACK");
    CHECK(c.inspect("tx")->token == expired_token);
    CHECK_FALSE(c.inspect("tx")->held);

    // Committed, it holds; its expiry counts from the statement's clock, not the transaction's
    // start: a grant made 400 ms into a transaction with a 30 s ttl expires 30 s after it.
    sql.s.query("BEGIN");
    sql.s.query("SELECT pg_sleep(0.4)");
    const std::string t = sql.try_acquire("tx", "30 seconds");
    REQUIRE(!t.empty());
    const std::string ahead =
        sql.s.value("SELECT extract(epoch FROM expires_at - now()) * 1000 FROM " +
                    sql.table("sqlock_locks") + " WHERE name = 'tx'");
    CHECK(std::stod(ahead) >= 30390.0);
    sql.s.query("COMMIT");
    CHECK(c.inspect("tx")->held);
    CHECK(c.inspect("tx")->token == num(t));

    // A release rolled back leaves the lease held (and renewable); committed, it ends it.
    sql.s.query("BEGIN");
    CHECK(sql.release("tx", t) == "t");
    sql.s.query("ROLLBACK");
    CHECK(c.inspect("tx")->held);
    CHECK(sql.renew("tx", t) == "t");
    sql.s.query("BEGIN");
    CHECK(sql.release("tx", t) == "t");
    CHECK(c.inspect("tx")->held);  // others see it held until the commit
    sql.s.query("COMMIT");
    CHECK_FALSE(c.inspect("tx")->held);
  }

  TEST_CASE(
      "SQL API: a client killed (SIGKILL) inside a work + release transaction leaves the "
      "lease held and the work undone") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());
    sql.s.query("CREATE TABLE " + sql.table("jobs_done") + " (job text PRIMARY KEY)");
    const std::string t = sql.try_acquire("worker", "30 seconds");
    REQUIRE(!t.empty());

    // psql, as the worker: marks the job done, releases, and is killed before its COMMIT. The
    // server notices the lost client while the last statement runs
    // (client_connection_check_interval) and rolls everything back.
    const std::string marker = "sqlock-sql-api-kill-" + std::to_string(::getpid());
    // One -c per statement: each is sent on its own, so the sleep shows in pg_stat_activity
    // only once the release before it has run.
    pid_t worker =
        sqlock_test::spawn({"/usr/bin/psql",
                            db.url(),
                            "-X",
                            "-q",
                            "-o",
                            "/dev/null",
                            "-v",
                            "ON_ERROR_STOP=1",
                            "-c",
                            "SET client_connection_check_interval = '100ms'",
                            "-c",
                            "SET application_name = '" + marker + "'",
                            "-c",
                            "BEGIN",
                            "-c",
                            "INSERT INTO " + sql.table("jobs_done") + " VALUES ('job 1')",
                            "-c",
                            "SELECT " + sql.f("release") + "('worker', " + t + ")",
                            "-c",
                            "SELECT pg_sleep(600)",
                            "-c",
                            "COMMIT"});
    const std::string in_sleep =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND query = 'SELECT pg_sleep(600)' AND state = 'active' AND backend_xid IS NOT NULL";
    REQUIRE(sqlock_test::eventually([&] { return sql.s.value(in_sleep, {marker}) == "1"; }, 20s));
    ::kill(worker, SIGKILL);
    CHECK(sqlock_test::wait_exit(worker) == 128 + SIGKILL);
    REQUIRE(sqlock_test::eventually(
        [&] {
          return sql.s.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                             {marker}) == "0";
        },
        20s));

    CHECK(sql.s.value("SELECT count(*) FROM " + sql.table("jobs_done")) == "0");
    auto rec = c.inspect("worker");
    REQUIRE(rec);
    CHECK(rec->held);
    CHECK(rec->token == num(t));
    CHECK(sql.renew("worker", t) == "t");  // the holder can go on
  }

  TEST_CASE("SQL API: a release wakes the C++ clients' waiters on the schema's channel") {
    postgresql_fixture db;
    sql_caller sql(db);
    pg_session listener(db.url());
    const std::string channel = sqlock::detail::pg::channel_for(db.schema());
    listener.query("LISTEN " + listener.ident(channel));
    const std::string t = sql.try_acquire("wake");
    REQUIRE(!t.empty());
    // No waiter marked the row: no notification (a notifying commit costs every client).
    // (Notifications of one session arrive in commit order: had this release sent one, it would
    // be read before the next one's, below.)
    CHECK(sql.release("wake", t) == "t");
    const std::string t2 = sql.try_acquire("wake");
    sql.s.query("UPDATE " + sql.table("sqlock_locks") +
                " SET waiters_until = now() + interval '1 minute' WHERE name = 'wake'");
    CHECK(sql.release("wake", t2) == "t");
    std::vector<std::string> got;
    REQUIRE(sqlock_test::eventually(
        [&] {
          PQconsumeInput(listener.get());
          while (PGnotify* n = PQnotifies(listener.get())) {
            got.emplace_back(n->relname + std::string(" ") + n->extra);
            PQfreemem(n);
          }
          return !got.empty();
        },
        5000ms));
    CHECK(got == std::vector<std::string>{channel + " wake"});

    // End to end: a C++ waiter blocked on a lock SQL holds gets it soon after SQL's release.
    sqlock::client c(db.url(), db.options());
    const std::string t3 = sql.try_acquire("wake", "1 minute");
    // The release comes once the waiter has marked the row (or after 10 s regardless).
    const std::string marked =
        "SELECT waiters_until > now() FROM " + sql.table("sqlock_locks") + " WHERE name = 'wake'";
    const std::string release = "SELECT " + sql.f("release") + "('wake', $1::bigint)";
    bool saw_mark = false;
    std::thread releaser([&] {
      pg_session s(db.url());
      saw_mark = sqlock_test::eventually([&] { return s.value(marked) == "t"; }, 10s);
      s.value(release, {t3});
    });
    auto lease = c.try_acquire_for("wake", 30s, sqlock_test::ttl(5000ms));
    releaser.join();
    CHECK(saw_mark);
    REQUIRE(lease);  // well before the SQL lease's minute ran out
    CHECK(lease->token() > num(t3));
  }

  TEST_CASE("SQL API: bad input is a class-22 error that names the limit and changes nothing") {
    postgresql_fixture db;
    sql_caller sql(db);
    const std::string acquire = "SELECT " + sql.f("try_acquire") + "($1, $2::interval, $3, $4)";
    struct bad {
      std::vector<std::string> args;
      const char* state;
      const char* says;
    };
    const std::string long_name(256, 'n'), long_meta(4097, 'm');
    for (const bad& b : std::initializer_list<bad>{
             {{"", "10 s", "o", ""}, "22023", "1 to 255 bytes"},
             {{long_name, "10 s", "o", ""}, "22023", "1 to 255 bytes"},
             {{"x", "99 milliseconds", "o", ""}, "22023", "between 100 milliseconds and 7 days"},
             {{"x", "7 days 1 second", "o", ""}, "22023", "between 100 milliseconds and 7 days"},
             {{"x", "-1 second", "o", ""}, "22023", "between 100 milliseconds and 7 days"},
             {{"x", "10 s", "o", long_meta}, "22023", "at most 4096 bytes"},
             {{"x", "10 s", "", ""}, "22023", "an owner is 1 to 255 bytes"},
         }) {
      CAPTURE(b.says);
      CHECK(sql.sqlstate(acquire, b.args) == b.state);
    }
    try {
      sql.s.query(acquire, {"x", "1 s", "o", long_meta});
      FAIL("accepted oversized metadata");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find("metadata is at most 4096 bytes, not 4097") !=
            std::string::npos);
    }
    // NULLs: 22004. (A NULL owner means "the default".)
    CHECK(sql.sqlstate("SELECT " + sql.f("try_acquire") + "(NULL, '1 s')") == "22004");
    CHECK(sql.sqlstate("SELECT " + sql.f("try_acquire") + "('x', NULL)") == "22004");
    CHECK(sql.sqlstate("SELECT " + sql.f("renew") + "('x', NULL, '1 s')") == "22004");
    CHECK(sql.sqlstate("SELECT " + sql.f("renew") + "('x', 1, '1 hour 7 days')") == "22023");
    CHECK(sql.sqlstate("SELECT " + sql.f("release") + "(NULL, 1)") == "22004");
    CHECK(sql.s.value("SELECT count(*) FROM " + sql.table("sqlock_locks")) == "0");
  }

  TEST_CASE(
      "SQL API: a role with docs/postgresql.md's SQL-only grants can lock, fence and "
      "release, and touch no table") {
    postgresql_fixture db;
    sql_caller sql(db);
    pg_session admin(sqlock_test::admin_url());
    const std::string role = "sqlock_sql_only_" + std::to_string(::getpid());
    const std::string r = admin.ident(role);
    admin.query("DROP ROLE IF EXISTS " + r);
    admin.query("CREATE ROLE " + r);
    for (auto& g : sqlock_test::docs_grants("through the SQL functions of schemas 7 and 8",
                                            "sql_app", admin.ident(db.schema()), r))
      admin.query(g);
    auto as_role = [&](const std::string& q, const std::vector<std::string>& params = {}) {
      admin.query("SET ROLE " + r);
      try {
        auto v = admin.value(q, params);
        admin.query("RESET ROLE");
        return v;
      } catch (...) {
        const std::string state = admin.last_sqlstate();
        admin.query("RESET ROLE");
        return "error " + state;
      }
    };
    const std::string t = as_role("SELECT " + sql.f("try_acquire") + "('only-sql', '10 s')");
    REQUIRE(t.find("error") == std::string::npos);
    CHECK(as_role("SELECT " + sql.f("renew") + "('only-sql', $1::bigint, '10 s')", {t}) == "t");
    CHECK(as_role("SELECT " + sql.f("assert_held") + "('only-sql', $1::bigint, NULL)", {t}) == "");
    CHECK(as_role("SELECT " + sql.f("release") + "('only-sql', $1::bigint)", {t}) == "t");
    const std::string u =
        as_role("SELECT " + sql.f("semaphore_try_acquire") + "('only-sql', 2, 1, '10 s')");
    REQUIRE(u.find("error") == std::string::npos);
    CHECK(as_role("SELECT " + sql.f("semaphore_renew") + "('only-sql', $1::bigint, '10 s')", {u}) ==
          "t");
    CHECK(as_role("SELECT " + sql.f("semaphore_assert_held") + "('only-sql', $1::bigint, NULL)",
                  {u}) == "");
    CHECK(as_role("SELECT " + sql.f("semaphore_release") + "('only-sql', $1::bigint)", {u}) == "t");
    // It cannot fence (and so hold off the renewals of) a C++ client's lease by its token:
    // the two-argument fences are not granted, the three-argument ones want its nonce.
    sqlock::client c(db.url(), db.options());
    auto cxx = c.try_acquire("cxx-lease");
    REQUIRE(cxx);
    auto cxx_sem = c.try_acquire_semaphore("cxx-sem", sqlock_test::sem(2));
    REQUIRE(cxx_sem);
    CHECK(as_role("SELECT " + sql.f("assert_held") + "('cxx-lease', $1::bigint)",
                  {std::to_string(cxx->token())}) == "error 42501");
    CHECK(as_role("SELECT " + sql.f("assert_held") + "('cxx-lease', $1::bigint, NULL)",
                  {std::to_string(cxx->token())}) == "error SQ001");
    CHECK(as_role("SELECT " + sql.f("semaphore_assert_held") + "('cxx-sem', $1::bigint)",
                  {std::to_string(cxx_sem->token())}) == "error 42501");
    CHECK(as_role("SELECT " + sql.f("semaphore_assert_held") + "('cxx-sem', $1::bigint, NULL)",
                  {std::to_string(cxx_sem->token())}) == "error SQ001");
    // With the lease's nonce it may.
    CHECK(as_role("SELECT " + sql.f("assert_held") + "('cxx-lease', $1::bigint, $2)",
                  {std::to_string(cxx->token()), cxx->nonce()}) == "");
    // Nor schema 8's internal helpers.
    CHECK(as_role("SELECT " + sql.f("wake_channel") + "()") == "error 42501");
    CHECK(as_role("SELECT " + sql.f("sql_caller") + "()") == "error 42501");
    CHECK(as_role("SELECT " + sql.f("sql_ttl") + "('x', '1 s')") == "error 42501");
    // Nothing else: the tables, the sequence, the C++ client's functions.
    CHECK(as_role("SELECT count(*) FROM " + sql.table("sqlock_locks")) == "error 42501");
    CHECK(as_role("SELECT nextval('" + sql.table("sqlock_token_seq") + "')") == "error 42501");
    CHECK(as_role("SELECT " + sql.f("semaphore_release") +
                  "('x', 'n', 1::bigint, 'c', 'c', false)") == "error 42501");
    admin.query("DROP OWNED BY " + r);
    admin.query("DROP ROLE " + r);
  }

  TEST_CASE(
      "C++ in the caller's transaction: a lease released with the work commits with it, "
      "or stays held when the transaction rolls back") {
    postgresql_fixture db;
    sql_caller sql(db);
    std::atomic<int> lost{0}, released{0};
    auto options = db.options();
    options.listeners.push_back([&](const sqlock::lock_event& e) {
      if (e.kind == sqlock::event_kind::lost) ++lost;
      if (e.kind == sqlock::event_kind::released) ++released;
    });
    sqlock::client c(db.url(), options);
    sqlock::client other(db.url(), db.options());
    sql.s.query("CREATE TABLE " + sql.table("jobs_done") + " (job text PRIMARY KEY)");
    auto lock_opts = sqlock_test::ttl(30000ms);
    lock_opts.on_lost = [&](const sqlock::lost_event&) { ++lost; };

    // Rolled back: the work is undone and the lease goes on, renewed as before.
    sqlock::lease lease = c.acquire("job-1", lock_opts);
    {
      pqxx::connection conn(db.url());
      pqxx::work tx(conn);
      tx.exec("INSERT INTO " + sql.table("jobs_done") + " VALUES ('job-1')");
      CHECK(sqlock::postgresql::release(tx, lease, db.schema()));
      CHECK(lease.state() == sqlock::lease_state::released);  // not to be used from now on
      CHECK_FALSE(other.try_acquire("job-1"));                // held until the commit
      tx.abort();
    }
    CHECK(lease.renew());  // the transaction did not commit: held again
    CHECK(lease.state() == sqlock::lease_state::held);
    CHECK(other.inspect("job-1")->held);
    CHECK(sql.s.value("SELECT count(*) FROM " + sql.table("jobs_done")) == "0");

    // Committed: the work is done, and the lease is released, not lost.
    {
      pqxx::connection conn(db.url());
      pqxx::work tx(conn);
      sqlock::postgresql::assert_held(tx, "job-1", lease.token(), db.schema());
      tx.exec("INSERT INTO " + sql.table("jobs_done") + " VALUES ('job-1')");
      CHECK(sqlock::postgresql::release(tx, lease, db.schema()));
      tx.commit();
    }
    CHECK_FALSE(lease.renew());  // settles it at once
    CHECK(lease.state() == sqlock::lease_state::released);
    CHECK(sql.s.value("SELECT count(*) FROM " + sql.table("jobs_done")) == "1");
    auto next = other.try_acquire("job-1");
    REQUIRE(next);
    CHECK(next->token() > lease.token());
    lease.release();  // a no-op now
    CHECK(next->state() == sqlock::lease_state::held);

    // The keepalive settles it by itself: released, without a loss, within a renewal period.
    auto short_opts = sqlock_test::ttl(900ms);
    short_opts.on_lost = lock_opts.on_lost;
    sqlock::lease l2 = c.acquire("job-2", short_opts);
    {
      pqxx::connection conn(db.url());
      pqxx::work tx(conn);
      CHECK(sqlock::postgresql::release(tx, l2, db.schema()));
      tx.commit();
    }
    CHECK(l2.state() == sqlock::lease_state::released);
    CHECK(sqlock_test::eventually([&] { return released.load() >= 2; }, 5000ms));
    CHECK(lost.load() == 0);

    // Rolled back and then dropped: the handle's release ends it in the database.
    {
      sqlock::lease l3 = c.acquire("job-3", lock_opts);
      pqxx::connection conn3(db.url());
      pqxx::work tx3(conn3);
      CHECK(sqlock::postgresql::release(tx3, l3, db.schema()));
      tx3.abort();
    }
    CHECK_FALSE(other.inspect("job-3")->held);
    CHECK(lost.load() == 0);

    // Only locks: a semaphore's lease is refused before anything is sent.
    sqlock::semaphore_options so;
    so.limit = 2;
    auto units = c.acquire_semaphore("pool", so);
    pqxx::connection conn(db.url());
    pqxx::work tx(conn);
    CHECK_THROWS_AS(sqlock::postgresql::release(tx, units, db.schema()), sqlock::error);
  }

  TEST_CASE(
      "C++ in the caller's transaction: a lock taken with the work is a lease once it "
      "commits, and nothing if it rolls back") {
    postgresql_fixture db;
    sqlock::client c(db.url(), db.options());
    sqlock::client other(db.url(), db.options());
    pqxx::connection conn(db.url());
    auto opts = sqlock_test::ttl(900ms);  // renewed every 300 ms once adopted

    // Rolled back: no grant, whatever the statement returned inside the transaction.
    {
      pqxx::work tx(conn);
      auto grant = sqlock::postgresql::try_acquire(tx, c, "claim", opts, db.schema());
      REQUIRE(grant);
      CHECK(grant->token > 0);
      tx.abort();
    }
    CHECK_FALSE(other.inspect("claim"));
    // Committed: the grant becomes a lease of `c` with keepalive.
    std::optional<sqlock::transaction_grant> grant;
    {
      pqxx::work tx(conn);
      grant = sqlock::postgresql::try_acquire(tx, c, "claim", opts, db.schema());
      REQUIRE(grant);
      tx.exec("SELECT 1");  // the caller's own work
      tx.commit();
    }
    sqlock::lease lease = c.adopt(*grant);
    CHECK(lease.token() == grant->token);
    CHECK(lease.state() == sqlock::lease_state::held);
    auto rec = other.inspect("claim");
    REQUIRE(rec);
    CHECK(rec->owner == c.owner());
    CHECK(rec->token == grant->token);
    // Kept alive past its first ttl by the background renewals, and exclusive meanwhile.
    std::this_thread::sleep_for(1500ms);
    CHECK(lease.state() == sqlock::lease_state::held);
    CHECK_FALSE(other.try_acquire("claim"));
    // Held: a second grant in a transaction is refused, at once.
    {
      pqxx::work tx(conn);
      CHECK_FALSE(sqlock::postgresql::try_acquire(tx, c, "claim", opts, db.schema()));
    }
    lease.release();
    CHECK_FALSE(other.inspect("claim")->held);

    // A grant whose transaction rolled back cannot be adopted.
    {
      pqxx::work tx(conn);
      grant = sqlock::postgresql::try_acquire(tx, c, "claim", opts, db.schema());
      REQUIRE(grant);
      tx.abort();
    }
    CHECK(sqlock_test::code_of([&] { (void)c.adopt(*grant); }) == sqlock::errc::lease_lost);

    // Bad input is refused before anything is sent; a refused grant cannot be adopted.
    pqxx::work tx(conn);
    CHECK_THROWS_AS(sqlock::postgresql::try_acquire(tx, c, "", opts, db.schema()), sqlock::error);
    CHECK_THROWS_AS((void)c.adopt(sqlock::transaction_grant{}), sqlock::error);
  }

  TEST_CASE(
      "SQL API semaphores: SQL and C++ holders share one limit, one queue and one token "
      "sequence") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());
    using sqlock_test::sem;

    auto a = c.try_acquire_semaphore("pool", sem(2));
    REQUIRE(a);
    const std::string t1 = sql.sem_try("pool", 2, 1);
    REQUIRE(!t1.empty());
    CHECK(num(t1) > a->token());
    // Full: SQL gets NULL, C++ is refused, and C++ sees the SQL holder.
    CHECK(sql.sem_try("pool", 2, 1) == "");
    CHECK_FALSE(c.try_acquire_semaphore("pool", sem(2)));
    auto rec = c.inspect_semaphore("pool");
    REQUIRE(rec);
    CHECK(rec->used == 2);
    // Another limit while holders use this one: 22023.
    CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_try_acquire") + "('pool', 3, 1, '1 s')") ==
          "22023");

    // Without its nonce, SQL can neither extend nor end the C++ holder.
    const std::string ta = std::to_string(a->token());
    CHECK(sql.sem_renew("pool", ta) == "f");
    CHECK(sql.sem_release("pool", ta) == "f");
    CHECK(sql.s.value("SELECT " + sql.f("semaphore_release") + "('pool', $1::bigint, 'guess')",
                      {ta}) == "f");
    CHECK(c.inspect_semaphore("pool")->used == 2);
    CHECK(sql.sem_renew("pool", t1) == "t");

    // A release rolled back keeps the units; committed, it frees them.
    sql.s.query("BEGIN");
    CHECK(sql.sem_release("pool", t1) == "t");
    CHECK(c.inspect_semaphore("pool")->used == 2);  // not before the commit
    sql.s.query("ROLLBACK");
    CHECK(c.inspect_semaphore("pool")->used == 2);
    CHECK(sql.sem_renew("pool", t1) == "t");
    CHECK(sql.sem_release("pool", t1) == "t");
    CHECK(sql.sem_release("pool", t1) == "f");
    CHECK(sql.sem_renew("pool", t1) == "f");
    CHECK(c.inspect_semaphore("pool")->used == 1);

    // A fair C++ waiter for both units queues: a SQL try never passes it, though one unit is
    // free; the C++ release hands it the room.
    sqlock::client w(db.url(), db.options());
    std::optional<sqlock::lease> waited;
    std::thread waiter(
        [&] { waited = w.try_acquire_semaphore_for("pool", 20s, sqlock_test::fair_sem(2, 2)); });
    REQUIRE(
        sqlock_test::eventually([&] { return sqlock_test::waiter_count(c, "pool") == 1; }, 10s));
    CHECK(sql.sem_try("pool", 2, 1) == "");
    a->release();
    waiter.join();
    REQUIRE(waited);
    CHECK(waited->token() > num(t1));

    // And a SQL release hands room to a C++ fair waiter when the caller commits.
    const std::string t2 = [&] {
      waited->release();
      return sql.sem_try("pool", 2, 2);
    }();
    REQUIRE(!t2.empty());
    std::optional<sqlock::lease> handed;
    std::thread waiter2(
        [&] { handed = w.try_acquire_semaphore_for("pool", 20s, sqlock_test::fair_sem(2, 1)); });
    REQUIRE(
        sqlock_test::eventually([&] { return sqlock_test::waiter_count(c, "pool") == 1; }, 10s));
    sql.s.query("BEGIN");
    CHECK(sql.sem_release("pool", t2) == "t");
    sql.s.query("COMMIT");
    waiter2.join();
    REQUIRE(handed);
    CHECK(handed->token() > num(t2));
  }

  TEST_CASE(
      "SQL API semaphores: inside the caller's transaction a grant commits or rolls back with "
      "it, and its expiry counts from the statement's clock") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());

    sql.s.query("BEGIN");
    REQUIRE(!sql.sem_try("tx", 3, 2).empty());
    sql.s.query("ROLLBACK");
    auto rec = c.inspect_semaphore("tx");
    CHECK((!rec || rec->used == 0));

    sql.s.query("BEGIN");
    sql.s.query("SELECT pg_sleep(0.4)");
    const std::string t = sql.sem_try("tx", 3, 2, "30 seconds");
    REQUIRE(!t.empty());
    const std::string ahead =
        sql.s.value("SELECT extract(epoch FROM expires_at - now()) * 1000 FROM " +
                    sql.table("sqlock_semaphore_holders") + " WHERE name = 'tx'");
    CHECK(std::stod(ahead) >= 30390.0);
    sql.s.query("COMMIT");
    rec = c.inspect_semaphore("tx");
    REQUIRE(rec);
    CHECK(rec->used == 2);
    REQUIRE(rec->holders.size() == 1);
    CHECK(rec->holders[0].token == num(t));
    CHECK(rec->holders[0].owner.find("(backend ") != std::string::npos);

    // Force-released by an admin: the SQL holder can neither renew nor release it.
    CHECK(c.force_release_semaphore("tx", num(t)) == 1);
    CHECK(sql.sem_renew("tx", t) == "f");
    CHECK(sql.sem_release("tx", t) == "f");
  }

  TEST_CASE(
      "SQL API: a ttl is a number of seconds, whatever the session's time zone or the "
      "interval's months") {
    postgresql_fixture db;
    sql_caller sql(db);
    // A daylight-saving rule that moves the clock an hour within the next day: '1 day' on the
    // calendar is 23 hours here.
    sql.s.query("SET TimeZone = 'AAA0BBB,J" +
                sql.s.value("SELECT extract(doy FROM now() + interval '1 day')::int") +
                "/0,J365/0'");
    REQUIRE(sql.s.value("SELECT extract(epoch FROM (now() + interval '1 day') - now())") !=
            "86400.000000");
    const std::string t = sql.try_acquire("day", "1 day");
    REQUIRE(!t.empty());
    const std::string u = sql.sem_try("day", 2, 1, "1 day");
    REQUIRE(!u.empty());
    auto length = [&](const std::string& table) {
      return sql.s.value("SELECT extract(epoch FROM expires_at - acquired_at)::bigint FROM " +
                             sql.table(table) + " WHERE name = 'day' AND token = $1::bigint",
                         {table == "sqlock_locks" ? t : u});
    };
    CHECK(length("sqlock_locks") == "86400");
    CHECK(length("sqlock_semaphore_holders") == "86400");
    // A renewal by '1 day' leaves at least 86400 s.
    CHECK(sql.renew("day", t, "1 day") == "t");
    CHECK(sql.sem_renew("day", u, "1 day") == "t");
    const std::string left =
        "SELECT extract(epoch FROM expires_at - clock_timestamp()) >= 86399.5 FROM ";
    CHECK(sql.s.value(left + sql.table("sqlock_locks") + " WHERE name = 'day'") == "t");
    CHECK(sql.s.value(left + sql.table("sqlock_semaphore_holders") + " WHERE name = 'day'") == "t");
    // Months count as 30 days, as extract(epoch) does: '1 mon -23 days' is 7 days exactly,
    // '-1 year 361 days' is negative, '1 mon' is past 7 days.
    const std::string m = sql.try_acquire("mon", "1 mon -23 days");
    REQUIRE(!m.empty());
    CHECK(sql.s.value("SELECT extract(epoch FROM expires_at - acquired_at)::bigint FROM " +
                      sql.table("sqlock_locks") + " WHERE name = 'mon'") == "604800");
    for (const char* bad : {"-1 year 361 days", "1 mon", "99 milliseconds"}) {
      CAPTURE(bad);
      CHECK(sql.sqlstate("SELECT " + sql.f("try_acquire") + "('neg', $1::interval)", {bad}) ==
            "22023");
      CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_try_acquire") + "('neg', 1, 1, $1::interval)",
                         {bad}) == "22023");
      CHECK(sql.sqlstate("SELECT " + sql.f("renew") + "('day', $1::bigint, $2::interval)",
                         {t, bad}) == "22023");
    }
  }

  TEST_CASE(
      "SQL API semaphores: a release inside the caller's transaction leaves its durability "
      "alone, and a release followed by a grant in two such transactions does not deadlock") {
    postgresql_fixture db;
    sql_caller sql(db);
    sql_caller other(db);
    const std::string a = sql.sem_try("rot", 2, 1);
    const std::string b = sql.sem_try("rot", 2, 1);
    REQUIRE(!a.empty());
    REQUIRE(!b.empty());
    // The C++ client's release sets synchronous_commit off for its own autocommit statement
    // when it hands nothing; in the caller's transaction, the caller's setting stays.
    sql.s.query("BEGIN");
    CHECK(sql.s.value("SHOW synchronous_commit") == "on");
    CHECK(sql.sem_release("rot", a) == "t");
    CHECK(sql.s.value("SHOW synchronous_commit") == "on");
    sql.s.query("ROLLBACK");

    // Rotation: each transaction releases its holder, then takes a new one.
    sql.s.query("BEGIN");
    CHECK(sql.sem_release("rot", a) == "t");
    std::string other_release, other_grant, other_error;
    std::thread t([&] {
      try {
        other.s.query("BEGIN");
        other_release = other.sem_release("rot", b);  // waits for the first transaction
        other_grant = other.sem_try("rot", 2, 1);
        other.s.query("COMMIT");
      } catch (const std::exception& e) {
        other_error = std::string(e.what()) + " " + other.s.last_sqlstate();
      }
    });
    REQUIRE(sqlock_test::eventually(
        [&] {
          return sql.s.value(
                     "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                     "'Lock' AND datname = current_database()") == "1";
        },
        10s));
    const std::string mine = sql.sem_try("rot", 2, 1);
    sql.s.query("COMMIT");
    t.join();
    CHECK(other_error == "");
    CHECK(!mine.empty());
    CHECK(other_release == "t");
    CHECK(!other_grant.empty());
  }

  TEST_CASE(
      "SQL API semaphores: a try refused after the semaphore's row lock keeps no lock in the "
      "caller's open transaction") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());
    // A holder whose row an open fenced transaction share-locks lapses (its renewals skip the
    // locked row): the unlocked look sees room, the locked count counts it.
    auto o = sqlock_test::sem(1, 1, 600ms);
    auto held = c.try_acquire_semaphore("frozen", o);
    REQUIRE(held);
    pg_session fence(db.url());
    fence.query("BEGIN");
    fence.query("SELECT " + sql.f("semaphore_assert_held") + "('frozen', $1::bigint)",
                {std::to_string(held->token())});
    REQUIRE(sqlock_test::eventually([&] { return c.inspect_semaphore("frozen")->used == 0; }, 10s));
    sql.s.query("BEGIN");
    CHECK(sql.sem_try("frozen", 1, 1) == "");
    // The refusal rolled its block back: no lock on the semaphore's row is left (NOWAIT would
    // fail with 55P03).
    pg_session probe(db.url());
    CHECK(probe.value("SELECT name FROM " + sql.table("sqlock_semaphores") +
                      " WHERE name = 'frozen' FOR UPDATE NOWAIT") == "frozen");
    sql.s.query("ROLLBACK");
    fence.query("ROLLBACK");
  }

  TEST_CASE(
      "SQL API semaphores: a REPEATABLE READ caller whose snapshot predates a grant gets a "
      "serialization failure, never a unit too many") {
    postgresql_fixture db;
    sql_caller sql(db);
    sqlock::client c(db.url(), db.options());
    // The semaphore row exists (a first grant's row would conflict at its insert instead).
    c.try_acquire_semaphore("rr", sqlock_test::sem(1))->release();
    sql.s.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    sql.s.query("SELECT count(*) FROM " + sql.table("sqlock_semaphore_holders"));  // snapshot
    auto held = c.try_acquire_semaphore("rr", sqlock_test::sem(1));
    REQUIRE(held);
    // The snapshot sees the semaphore free; the grant must not believe it.
    CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_try_acquire") + "('rr', 1, 1, '10 s')") ==
          "40001");
    sql.s.query("ROLLBACK");
    CHECK(c.inspect_semaphore("rr")->used == 1);
  }

  TEST_CASE(
      "SQL API semaphores: bad input is a class-22 error that names the limit and changes "
      "nothing") {
    postgresql_fixture db;
    sql_caller sql(db);
    const std::string seq = "SELECT last_value FROM " + sql.table("sqlock_token_seq");
    const std::string before = sql.s.value(seq);
    const std::string fn = "SELECT " + sql.f("semaphore_try_acquire");
    struct bad {
      std::string args, state, says;
    };
    for (const auto& b : std::vector<bad>{
             {"('', 2, 1, '1 s')", "22023", "1 to 255 bytes"},
             {"(repeat('n', 256), 2, 1, '1 s')", "22023", "1 to 255 bytes"},
             {"('s', 0, 1, '1 s')", "22023", "between 1 and 1000000000"},
             {"('s', 1000000001, 1, '1 s')", "22023", "between 1 and 1000000000"},
             {"('s', 2, 0, '1 s')", "22023", "between 1 and the limit 2"},
             {"('s', 2, 3, '1 s')", "22023", "between 1 and the limit 2"},
             {"('s', 2, 1, '99 ms')", "22023", "100 milliseconds and 7 days"},
             {"('s', 2, 1, '8 days')", "22023", "100 milliseconds and 7 days"},
             {"('s', 2, 1, '1 s', repeat('o', 256))", "22023", "owner is 1 to 255"},
             {"('s', 2, 1, '1 s', NULL, repeat('m', 4097))", "22023", "at most 4096"},
             {"('s', 2, 1, '1 s', NULL, '', '')", "22023", "nonce is 1 to 255"},
             {"(NULL, 2, 1, '1 s')", "22004", "must not be NULL"},
             {"('s', NULL, 1, '1 s')", "22004", "must not be NULL"},
             {"('s', 2, 1, NULL)", "22004", "must not be NULL"},
         }) {
      CAPTURE(b.args);
      try {
        sql.s.query(fn + b.args);
        FAIL("accepted");
      } catch (const std::runtime_error& e) {
        CHECK(sql.s.last_sqlstate() == b.state);
        CHECK(std::string(e.what()).find(b.says) != std::string::npos);
      }
    }
    CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_renew") + "('s', 1, '8 days')") == "22023");
    CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_renew") + "('s', NULL, '1 s')") == "22004");
    CHECK(sql.sqlstate("SELECT " + sql.f("semaphore_release") + "('s', NULL)") == "22004");
    CHECK(sql.s.value(seq) == before);
    CHECK(sql.s.value("SELECT count(*) FROM " + sql.table("sqlock_semaphores")) == "0");
  }

  TEST_CASE(
      "SQL API: schema 7 refuses a schema where every role may create objects (the "
      "SECURITY DEFINER functions would run theirs)") {
    postgresql_fixture db(false);
    pg_session admin(sqlock_test::admin_url());
    const std::string s = admin.ident(db.schema());
    admin.query("CREATE SCHEMA " + s + " AUTHORIZATION sqlock_test");
    admin.query("GRANT CREATE ON SCHEMA " + s + " TO PUBLIC");
    sqlock::client c(db.url(), db.options());
    try {
      (void)c.migrate();
      FAIL("migrated a schema open to PUBLIC for CREATE");
    } catch (const sqlock::error& e) {
      CHECK(std::string(e.what()).find("REVOKE CREATE ON SCHEMA") != std::string::npos);
    }
    CHECK(c.schema_version() == 6);  // schema 7 left nothing behind (nor did 8)
    CHECK(admin.value("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = "
                      "p.pronamespace WHERE n.nspname = $1 AND p.proname = 'sqlock_try_acquire'",
                      {db.schema()}) == "0");
    admin.query("REVOKE CREATE ON SCHEMA " + s + " FROM PUBLIC");
    CHECK(c.migrate() == c.get_backend()->latest_schema_version());
  }
}
