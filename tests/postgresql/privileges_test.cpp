// SPDX-License-Identifier: Apache-2.0
// Who may do what with sqlock's schema on PostgreSQL (schema 3): the privilege matrix of the
// roles docs/postgresql.md describes, the row pinning a mere USAGE grant used to allow, error
// messages that must not reveal the current token, migration files that pin their own search_path,
// and the least-privilege runtime role (the grants of docs/postgresql.md) doing every runtime
// operation.
//
// Roles are made per test (unique names, NOLOGIN) by the superuser of
// SQLOCK_TEST_POSTGRESQL_ADMIN_URL, which acts as them with SET ROLE: no passwords needed.

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/postgresql.hpp>
#include <sqlock/sqlock.hpp>

#include "backends/common/migrations.hpp"
#include "support/docs_grants.hpp"
#include "support/fixtures.hpp"
#include "support/log_capture.hpp"
#include "support/poll.hpp"
#include "support/spawn.hpp"
#include "support/temp_dir.hpp"
#include "support/tokens.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;

namespace {

// docs/postgresql.md's runtime-role GRANT block (support/docs_grants.hpp).
std::vector<std::string> readme_runtime_grants(const std::string& schema_ident,
                                               const std::string& role_ident) {
  auto out = docs_grants("The runtime role needs only:", "app", schema_ident, role_ident);
  REQUIRE(out.size() >= 5);
  return out;
}

std::string unique_role(const std::string& what) {
  static std::atomic<int> n{0};
  return "sqlock_priv_" + std::to_string(::getpid()) + "_" + std::to_string(++n) + "_" + what;
}

// The four roles of docs/postgresql.md, on one migrated schema. The owner is the migrating role
// (the fixture's); the others are made here and dropped at the end.
struct roles {
  postgresql_fixture& db;
  pg_session admin{admin_url()};
  std::string owner, runtime = unique_role("runtime"), usage = unique_role("usage"),
                     none = unique_role("none");
  explicit roles(postgresql_fixture& d) : db(d) {
    owner = admin.value(
        "SELECT nspowner::regrole::text FROM pg_catalog.pg_namespace "
        "WHERE nspname = $1",
        {db.schema()});
    REQUIRE(!owner.empty());
    const auto s = admin.ident(db.schema());
    for (auto* r : {&runtime, &usage, &none}) admin.query("CREATE ROLE " + admin.ident(*r));
    for (auto& g : readme_runtime_grants(s, admin.ident(runtime))) admin.query(g);
    admin.query("GRANT USAGE ON SCHEMA " + s + " TO " + admin.ident(usage));
  }
  ~roles() {
    for (auto* r : {&runtime, &usage, &none}) {
      try {
        admin.query("DROP OWNED BY " + admin.ident(*r));
        admin.query("DROP ROLE " + admin.ident(*r));
      } catch (...) {
      }
    }
  }
  roles(const roles&) = delete;
  roles& operator=(const roles&) = delete;
};

// Runs `sql` in `s` as `role` in a transaction that is rolled back; returns the SQLSTATE
// ("" when it succeeded).
std::string sqlstate_as(pg_session& s, const std::string& role, const std::string& sql) {
  s.query("BEGIN");
  s.query("SET LOCAL ROLE " + s.ident(role));
  std::string state;
  try {
    s.query(sql);
  } catch (const std::runtime_error&) {
    state = s.last_sqlstate();
    if (state.empty()) state = "?";
  }
  s.query("ROLLBACK");
  return state;
}

struct function_row {
  std::string signature;  // regprocedure text, schema-qualified
  std::string call;       // SELECT of it with NULL arguments
};

// Every function in the schema, from pg_proc: a function added later is in the matrix too.
std::vector<function_row> schema_functions(pg_session& admin, const std::string& schema) {
  std::vector<function_row> out;
  for (auto& r :
       admin.query("SELECT p.oid::regprocedure::text, pg_catalog.quote_ident(n.nspname) || '.' || "
                   "pg_catalog.quote_ident(p.proname), p.pronargs FROM pg_catalog.pg_proc p "
                   "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 "
                   "ORDER BY 1",
                   {schema})) {
    std::string args;
    for (int i = 0; i < std::stoi(r[2]); ++i) args += i ? ", NULL" : "NULL";
    out.push_back({r[0], "SELECT " + r[1] + "(" + args + ")"});
  }
  return out;
}

bool catalog_says(pg_session& admin, const std::string& fn, const std::string& role,
                  const std::string& object, const std::string& privilege) {
  return admin.value("SELECT pg_catalog." + fn + "($1, $2, $3)", {role, object, privilege}) == "t";
}

const std::string permission_denied = "42501";

// A big current token: a message that contains it contains it by accident of no digit.
void push_sequence(pg_session& admin, const std::string& schema) {
  admin.query(
      "SELECT pg_catalog.setval((pg_catalog.quote_ident($1) || '.sqlock_token_seq')"
      "::regclass, 7000000000)",
      {schema});
}

}  // namespace

TEST_SUITE("postgresql") {
  TEST_CASE(
      "privilege matrix: owner, runtime role (the grants of docs/postgresql.md), USAGE only, "
      "none") {
    postgresql_fixture db;
    roles r(db);
    auto& admin = r.admin;
    const auto s = admin.ident(db.schema());

    auto fns = schema_functions(admin, db.schema());
    std::set<std::string> names;
    for (auto& f : fns) names.insert(f.signature.substr(f.signature.rfind('.') + 1));
    CHECK(names.count("sqlock_assert_held(text,bigint)") == 1);
    CHECK(names.count("sqlock_semaphore_assert_held(text,bigint)") == 1);
    CHECK(names.count("sqlock_semaphore_acquire(text,bigint,bigint,text,text,text,bigint,boolean,"
                      "boolean,bigint,text)") == 1);
    CHECK(names.count("sqlock_semaphore_attempt(text,bigint,bigint,text,text,text,bigint,boolean,"
                      "boolean,bigint,text,bigint,bigint,text)") == 1);
    CHECK(names.count("sqlock_semaphore_release(text,text,bigint,text,text,boolean)") == 1);

    // Functions: the owner and the runtime role may call every one (with NULL arguments each
    // fails, but past the privilege check); a role with USAGE only, or nothing, may call none.
    // Schema 8's internal helpers (called by the SECURITY DEFINER functions, as the owner) are
    // the owner's alone.
    // Schema 10's trigger functions fire as the owner (SECURITY DEFINER) without EXECUTE, and
    // its switch is an admin's (docs/postgresql.md grants it to an admin role, not the runtime).
    const std::set<std::string> internal = {"sqlock_sql_caller()", "sqlock_sql_ttl(text,interval)",
                                            "sqlock_wake_channel()", "sqlock_history_lock_ended()",
                                            "sqlock_history_holder_ended()",
                                            "sqlock_set_history(boolean)",
                                            // schema 9's trigger function (EXECUTE revoked
                                            // from PUBLIC there), which no role calls
                                            "sqlock_keep_revoked_expiry()"};
    for (auto& f : fns) {
      CAPTURE(f.signature);
      if (internal.count(f.signature.substr(f.signature.rfind('.') + 1))) {
        CHECK(sqlstate_as(admin, r.owner, f.call) != permission_denied);
        for (auto& role : {r.runtime, r.usage, r.none}) {
          CAPTURE(role);
          CHECK_FALSE(catalog_says(admin, "has_function_privilege", role, f.signature, "EXECUTE"));
          CHECK(sqlstate_as(admin, role, f.call) == permission_denied);
        }
        continue;
      }
      for (auto& role : {r.owner, r.runtime}) {
        CAPTURE(role);
        CHECK(catalog_says(admin, "has_function_privilege", role, f.signature, "EXECUTE"));
        CHECK(sqlstate_as(admin, role, f.call) != permission_denied);
      }
      for (auto& role : {r.usage, r.none}) {
        CAPTURE(role);
        CHECK_FALSE(catalog_says(admin, "has_function_privilege", role, f.signature, "EXECUTE"));
        CHECK(sqlstate_as(admin, role, f.call) == permission_denied);
      }
    }

    // Tables and the sequence: what the runtime role may do is exactly docs/postgresql.md's list.
    const std::map<std::string, std::set<std::string>> runtime_may = {
        {"sqlock_locks", {"SELECT", "INSERT", "UPDATE", "DELETE"}},
        {"sqlock_lock_waiters", {"SELECT", "INSERT", "UPDATE", "DELETE"}},
        {"sqlock_semaphores", {"SELECT", "INSERT", "UPDATE", "DELETE"}},
        {"sqlock_semaphore_holders", {"SELECT", "INSERT", "UPDATE", "DELETE"}},
        {"sqlock_semaphore_tickets", {"SELECT", "INSERT", "UPDATE", "DELETE"}},
        {"sqlock_schema_version", {"SELECT"}},
        // Schema 10: written by SECURITY DEFINER triggers; read and trimmed by an admin role.
        {"sqlock_history", {}},
        {"sqlock_settings", {}},
    };
    auto tables = admin.query(
        "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'S') ORDER BY 1",
        {db.schema()});
    int table_count = 0;
    for (auto& t : tables) {
      const std::string object = s + "." + admin.ident(t[0]);
      CAPTURE(object);
      if (t[1] == "S") {
        CHECK(t[0] == "sqlock_token_seq");
        CHECK(catalog_says(admin, "has_sequence_privilege", r.owner, object, "USAGE"));
        CHECK(catalog_says(admin, "has_sequence_privilege", r.runtime, object, "USAGE"));
        CHECK_FALSE(catalog_says(admin, "has_sequence_privilege", r.runtime, object, "UPDATE"));
        for (auto& role : {r.usage, r.none})
          CHECK_FALSE(catalog_says(admin, "has_sequence_privilege", role, object, "USAGE"));
        continue;
      }
      ++table_count;
      REQUIRE_MESSAGE(runtime_may.count(t[0]) == 1, "a table the matrix does not know: ", t[0]);
      for (const char* p : {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}) {
        CAPTURE(p);
        CHECK(catalog_says(admin, "has_table_privilege", r.owner, object, p));
        CHECK(catalog_says(admin, "has_table_privilege", r.runtime, object, p) ==
              (runtime_may.at(t[0]).count(p) == 1));
        CHECK_FALSE(catalog_says(admin, "has_table_privilege", r.usage, object, p));
        CHECK_FALSE(catalog_says(admin, "has_table_privilege", r.none, object, p));
      }
      const std::string read = "SELECT 1 FROM " + object + " LIMIT 1";
      CHECK(sqlstate_as(admin, r.owner, read) == "");
      CHECK(sqlstate_as(admin, r.runtime, read) ==
            (runtime_may.at(t[0]).count("SELECT") ? "" : permission_denied));
      CHECK(sqlstate_as(admin, r.usage, read) == permission_denied);
      CHECK(sqlstate_as(admin, r.none, read) == permission_denied);
    }
    CHECK(table_count == static_cast<int>(runtime_may.size()));

    // The schema itself.
    for (auto& role : {r.owner, r.runtime, r.usage})
      CHECK(catalog_says(admin, "has_schema_privilege", role, db.schema(), "USAGE"));
    CHECK_FALSE(catalog_says(admin, "has_schema_privilege", r.none, db.schema(), "USAGE"));
    for (auto& role : {r.runtime, r.usage, r.none})
      CHECK_FALSE(catalog_says(admin, "has_schema_privilege", role, db.schema(), "CREATE"));
  }

  TEST_CASE(
      "the runtime role with the grants of docs/postgresql.md can use every lock and semaphore "
      "operation and fence with both assert functions") {
    postgresql_fixture db;
    roles r(db);
    // Acting as the runtime role: a client whose sessions SET ROLE to it.
    auto o = db.options();
    const std::string url = admin_url() + (admin_url().find('?') == std::string::npos ? "?" : "&") +
                            "options=-c%20role%3D" + r.runtime;
    sqlock::client c(url, o);
    CHECK(pg_session(url).value("SELECT current_user") == r.runtime);
    auto l = c.try_acquire("ledger");
    REQUIRE(l);
    CHECK(l->renew());
    sqlock::semaphore_options so;
    so.limit = 2;
    auto h = c.try_acquire_semaphore("slots", so);
    REQUIRE(h);
    CHECK(h->renew());
    pqxx::connection app(url);
    {
      pqxx::work tx(app);
      CHECK_NOTHROW(sqlock::postgresql::assert_held(tx, "ledger", l->token(), db.schema()));
      CHECK_NOTHROW(
          sqlock::postgresql::assert_semaphore_held(tx, "slots", h->token(), db.schema()));
      tx.commit();
    }
    l->release();
    h->release();
    CHECK(c.try_acquire("ledger"));
  }

  TEST_CASE(
      "a role with USAGE only cannot call the assert functions, so cannot pin a lease's "
      "row; a stale token pins nothing either") {
    postgresql_fixture db;
    roles r(db);
    sqlock::client holder(db.url(), db.options());
    sqlock::lock_options lo;
    lo.keepalive = false;
    auto l = holder.try_acquire("ledger", lo);
    REQUIRE(l);
    sqlock::semaphore_options so;
    so.limit = 3;
    so.keepalive = false;
    auto h = holder.try_acquire_semaphore("slots", so);
    REQUIRE(h);
    const auto s = r.admin.ident(db.schema());

    // Each attacker transaction stays open (aborted, never rolled back) while the holder renews:
    // a row lock it had taken would last until it ends, and the renewals would skip the row.
    auto attack = [&](const std::string& role, const std::string& sql) {
      auto attacker = std::make_unique<pg_session>(admin_url());
      attacker->query("BEGIN");
      attacker->query("SET LOCAL ROLE " + attacker->ident(role));
      std::string state;
      try {
        attacker->query(sql);
      } catch (const std::runtime_error&) {
        state = attacker->last_sqlstate();
      }
      return std::make_pair(std::move(attacker), state);
    };
    const auto tok = [](std::int64_t t) { return std::to_string(t); };
    {
      auto a1 =
          attack(r.usage, "SELECT " + s + ".sqlock_assert_held('ledger', " + tok(l->token()) + ")");
      auto a2 = attack(r.usage, "SELECT " + s + ".sqlock_semaphore_assert_held('slots', " +
                                    tok(h->token()) + ")");
      CHECK(a1.second == permission_denied);
      CHECK(a2.second == permission_denied);
      CHECK(l->renew());
      CHECK(h->renew());
    }
    {
      // A role that may fence, with a wrong token: refused, and no lock stays behind.
      auto a1 = attack(
          r.runtime, "SELECT " + s + ".sqlock_assert_held('ledger', " + tok(l->token() + 1) + ")");
      CHECK(a1.second == "SQ001");
      CHECK(l->renew());
    }
    {
      // The control: the right token does pin the row (that is the fence), and this test sees it.
      auto a1 = attack(r.runtime,
                       "SELECT " + s + ".sqlock_assert_held('ledger', " + tok(l->token()) + ")");
      CHECK(a1.second == "");
      CHECK(sqlock_test::code_of([&] { (void)l->renew(); }) == sqlock::errc::unavailable);
      // End it synchronously: closing the connection leaves the server to notice the EOF and
      // drop the lock a moment later, and the renewal below raced that under TSan.
      a1.first->query("ROLLBACK");
    }
    CHECK(l->renew());
  }

  TEST_CASE(
      "no error of sqlock_assert_held or sqlock_semaphore_assert_held names the current "
      "token") {
    postgresql_fixture db;
    roles r(db);
    push_sequence(r.admin, db.schema());
    sqlock::client a(db.url(), db.options());
    sqlock::client b(db.url(), db.options());
    sqlock::lock_options lo;
    lo.ttl = 30s;
    const auto stale = sqlock_test::stale_token(a, "ledger", lo);
    auto current = b.try_acquire("ledger", lo);
    REQUIRE(current);
    REQUIRE(current->token() > stale);
    sqlock::semaphore_options so;
    so.limit = 2;
    auto holder = b.try_acquire_semaphore("slots", so);
    REQUIRE(holder);
    const std::vector<std::string> secrets = {std::to_string(current->token()),
                                              std::to_string(holder->token())};
    auto reveals = [&](const std::string& message) {
      for (auto& t : secrets)
        if (message.find(t) != std::string::npos) return true;
      return false;
    };

    pqxx::connection app(db.direct_url());
    const std::vector<std::pair<const char*, std::int64_t>> probes = {
        {"lock, stale token", stale}, {"lock, other token", 1}, {"lock, newer token", 9000000000}};
    for (auto& [probe, token] : probes) {
      const std::string what = probe;
      CAPTURE(what);
      pqxx::work tx(app);
      try {
        sqlock::postgresql::assert_held(tx, "ledger", token, db.schema());
        FAIL("accepted a token that is not the current one");
      } catch (const sqlock::error& e) {
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(e.code() == sqlock::errc::lease_lost);
        CHECK_FALSE(reveals(e.what()));
        CHECK(std::string(e.what()).find(std::to_string(token)) != std::string::npos);  // its own
      }
    }
    for (std::int64_t token : {stale, holder->token() + 1, std::int64_t{1}}) {
      CAPTURE(token);
      pqxx::work tx(app);
      try {
        sqlock::postgresql::assert_semaphore_held(tx, "slots", token, db.schema());
        FAIL("accepted a token that is not a holder's");
      } catch (const sqlock::error& e) {
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(e.code() == sqlock::errc::lease_lost);
        CHECK_FALSE(reveals(e.what()));
      }
    }
    // The same through plain SQL as the runtime role: the server's message itself.
    const auto s = r.admin.ident(db.schema());
    CHECK(sqlstate_as(r.admin, r.runtime,
                      "SELECT " + s + ".sqlock_assert_held('ledger', " + std::to_string(stale) +
                          ")") == "SQ001");
    try {
      r.admin.query("SELECT " + s + ".sqlock_assert_held('ledger', " + std::to_string(stale) + ")");
      FAIL("accepted a stale token");
    } catch (const std::runtime_error& e) {
      CHECK_FALSE(reveals(e.what()));
    }
  }

  TEST_CASE(
      "migration files applied by another tool pin search_path: a temporary table cannot "
      "shadow sqlock_locks, during the migration or in sqlock_assert_held afterwards") {
    // Two ways another tool applies the printed files: all in one transaction, and psql -f
    // (each statement its own transaction). Each up to schema 2 (a database left there) and 3.
    const auto& all = sqlock::detail::embedded_migrations("postgresql");
    REQUIRE(all.size() >= 3);
    for (const bool one_transaction : {true, false}) {
      for (const int target : {2, static_cast<int>(all.size())}) {
        CAPTURE(one_transaction);
        CAPTURE(target);
        postgresql_fixture db(false);
        pg_session admin(admin_url());
        const auto s = admin.ident(db.schema());
        {
          pg_session owner(db.direct_url());
          owner.query("CREATE SCHEMA " + s);
        }
        // What `sqlock migrate print` writes, files up to `target`.
        std::string printed;
        for (int v = 0; v < target; ++v)
          printed += "-- sqlock migration " + std::string(all[v].up_file) + "\n" + all[v].up + "\n";
        // The migrating session: search_path names just the schema, as a tool's setting would,
        // and a temporary sqlock_locks and sqlock_schema_version exist (searched first).
        const std::string prelude =
            "SET search_path TO " + s +
            "; CREATE TEMP TABLE sqlock_locks (name text, token bigint, expires_at timestamptz);"
            " CREATE TEMP TABLE sqlock_schema_version (version integer, applied_at timestamptz)";
        if (one_transaction) {
          pg_session owner(db.direct_url());
          owner.query(prelude);
          owner.query("BEGIN");
          owner.query(printed);
          owner.query("COMMIT");
          // The transaction-local pin is gone with the transaction.
          CHECK(owner.value("SHOW search_path") == s);
        } else {
          sqlock_test::temp_dir dir;
          const std::string file = dir.path() + "/printed.sql";
          std::ofstream(file) << printed;
          const std::string psql = "/usr/bin/psql";
          REQUIRE(::access(psql.c_str(), X_OK) == 0);
          auto pid = sqlock_test::spawn({psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                                         db.direct_url(), "-c", prelude, "-f", file});
          REQUIRE(sqlock_test::wait_exit(pid) == 0);
        }
        // The real objects are in the schema, and the version was recorded there.
        CHECK(admin.value("SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($1) || "
                          "'.sqlock_locks') IS NOT NULL",
                          {db.schema()}) == "t");
        CHECK(admin.value("SELECT max(version) FROM " + s + ".sqlock_schema_version") ==
              std::to_string(target));

        // An attacker allowed to fence (the runtime role) forges a lock in a temporary table of
        // its own: the SECURITY DEFINER function must read the real table, where no lock exists.
        const auto attacker = unique_role("attacker");
        admin.query("CREATE ROLE " + admin.ident(attacker));
        admin.query("GRANT USAGE ON SCHEMA " + s + " TO " + admin.ident(attacker));
        admin.query("GRANT EXECUTE ON FUNCTION " + s + ".sqlock_assert_held(text, bigint) TO " +
                    admin.ident(attacker));
        pg_session forger(admin_url());
        forger.query("SET ROLE " + forger.ident(attacker));
        forger.query(
            "CREATE TEMP TABLE sqlock_locks (name text, token bigint, "
            "expires_at timestamptz)");
        forger.query(
            "INSERT INTO pg_temp.sqlock_locks VALUES ('ledger', 42, now() + "
            "interval '1 hour')");
        // Usable by the function's owner (FOR SHARE needs UPDATE), as an attacker would make it.
        forger.query("GRANT ALL ON pg_temp.sqlock_locks TO PUBLIC");
        std::string state = "none";
        try {
          forger.query("SELECT " + s + ".sqlock_assert_held('ledger', 42)");
        } catch (const std::runtime_error&) {
          state = forger.last_sqlstate();
        }
        CHECK_MESSAGE(state == "SQ001", "a forged token passed sqlock_assert_held");
        forger.query("RESET ROLE");
        forger.query("DROP TABLE pg_temp.sqlock_locks");
        admin.query("DROP OWNED BY " + admin.ident(attacker));
        admin.query("DROP ROLE " + admin.ident(attacker));
      }
    }
  }

  TEST_CASE("the least-privilege runtime role can do every runtime operation") {
    postgresql_fixture db;
    grant_runtime(db.schema());
    log_capture logs;
    auto o = db.options();
    o.log = logs.hook();
    auto runtime_url = required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL");
    sqlock::client c(runtime_url, o);
    sqlock::client other(runtime_url, o);
    CHECK(c.schema_version() == c.get_backend()->latest_schema_version());
    CHECK(c.migrate() == c.get_backend()->latest_schema_version());  // a no-op when current
    auto l = c.try_acquire("job");
    REQUIRE(l);
    CHECK(l->renew());
    CHECK(c.inspect("job")->held);
    // It may read which server it talks to (failover tracking, docs/postgresql-ha.md).
    CHECK(c.get_backend()->server_epoch() == 1);
    CHECK_FALSE(logs.contains("cannot tell which server"));
    CHECK(c.list().size() == 1);
    std::thread releaser([&] {
      std::this_thread::sleep_for(200ms);
      l->release();
    });
    auto w = other.try_acquire_for("job", 10s);  // marks the row; the release notifies
    releaser.join();
    REQUIRE(w);
    CHECK(other.force_release("job"));
    sqlock::semaphore_options so;
    so.limit = 2;
    auto s1 = c.try_acquire_semaphore("pool", so);
    REQUIRE(s1);
    CHECK(s1->renew());
    CHECK(c.inspect_semaphore("pool")->used == 1);
    CHECK(c.list_semaphores().size() == 1);
    auto s2 = other.try_acquire_semaphore("pool", so);
    REQUIRE(s2);
    so.fair = true;
    CHECK_FALSE(other.try_acquire_semaphore_for("pool", 50ms, so));  // takes and drops a ticket
    CHECK(c.force_release_semaphore("pool") == 2);
    CHECK(c.purge(0ms) == 2);
    CHECK_FALSE(c.inspect("job"));
    CHECK_FALSE(c.inspect_semaphore("pool"));
    CHECK_FALSE(logs.has(sqlock::log_level::warn, "permission"));
  }

  TEST_CASE("the least-privilege runtime role works with the history on and needs no right on it") {
    postgresql_fixture db;
    grant_runtime(db.schema());
    sqlock::client owner(db.url(), db.options());
    REQUIRE_FALSE(owner.enable_history());
    auto runtime_url = required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL");
    sqlock::client c(runtime_url, db.options());
    // Every way a lease ends, by the runtime role: release, takeover, force release, purge,
    // and for a semaphore holder release, force release and the grant that deletes ended rows.
    auto l1 = c.try_acquire("job");
    REQUIRE(l1);
    const auto t1 = l1->token();
    l1->release();
    auto l2 = c.try_acquire("job", ttl(150ms, false));
    REQUIRE(l2);
    const auto t2 = l2->token();
    REQUIRE(eventually([&] { return !c.inspect("job")->held; }));
    auto l3 = c.try_acquire("job");
    REQUIRE(l3);
    const auto t3 = l3->token();
    CHECK(c.force_release("job"));
    sqlock::semaphore_options so;
    so.limit = 2;
    auto s1 = c.try_acquire_semaphore("pool", so);
    auto s2 = c.try_acquire_semaphore("pool", so);
    REQUIRE(s1);
    REQUIRE(s2);
    const auto st1 = s1->token(), st2 = s2->token();
    s1->release();
    CHECK(c.force_release_semaphore("pool", st2) == 1);
    auto s3 = c.try_acquire_semaphore("pool", so);
    REQUIRE(s3);
    s3->release();
    CHECK(c.force_release_semaphore("pool") == 0);
    CHECK(c.purge(0ms) >= 1);
    // The runtime role cannot read the history (an admin's), nor switch it.
    CHECK_THROWS_AS((void)c.history(), sqlock::error);
    CHECK_THROWS_AS((void)c.enable_history(false), sqlock::error);
    std::map<std::int64_t, sqlock::lease_end> how;
    for (const auto& h : owner.history()) how[h.token] = h.ended_how;
    CHECK(how[t1] == sqlock::lease_end::released);
    CHECK(how[t2] == sqlock::lease_end::taken_over);
    CHECK(how[t3] == sqlock::lease_end::force_released);
    CHECK(how[st1] == sqlock::lease_end::released);
    CHECK(how[st2] == sqlock::lease_end::force_released);
    CHECK(how[s3->token()] == sqlock::lease_end::released);
    CHECK(how.size() == 6);
  }

}  // TEST_SUITE("postgresql")
