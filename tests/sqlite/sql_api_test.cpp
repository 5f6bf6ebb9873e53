// SPDX-License-Identifier: Apache-2.0
// SQLite only: the lock protocol as SQL functions on the application's own connection
// (sqlock::sqlite::register_functions): sqlock_try_acquire, sqlock_renew, sqlock_release and their
// sqlock_semaphore_ counterparts inside its BEGIN IMMEDIATE transaction, on the same rows and
// token counter as the C++ client.

#include <signal.h>

#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/semaphores.hpp"
#include "support/spawn.hpp"
#include "support/sqlite.hpp"
#include "support/temp_dir.hpp"

using namespace std::chrono_literals;
using sqlock_test::sqlite_exec;
using sqlock_test::sqlite_open;

namespace {

// One value of `sql` (NULL as ""), or "error: <message>".
std::string value(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    return std::string("error: ") + sqlite3_errmsg(db);
  std::string out;
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    out = t ? t : "";
  } else if (rc != SQLITE_DONE) {
    out = std::string("error: ") + sqlite3_errmsg(db);
  }
  sqlite3_finalize(s);
  return out;
}

struct app_connection {
  sqlock_test::sqlite_handle h;
  explicit app_connection(const std::string& file) : h(sqlite_open(file)) {
    REQUIRE(sqlock::sqlite::register_functions(h.get()) == SQLITE_OK);
  }
  sqlite3* get() const { return h.get(); }
  // A call in a transaction of its own.
  std::string call(const std::string& sql) {
    sqlite_exec(get(), "BEGIN IMMEDIATE");
    std::string v = value(get(), sql);
    sqlite_exec(get(), "COMMIT");
    return v;
  }
};

}  // namespace

TEST_SUITE("sqlite") {
  TEST_CASE("SQL API on SQLite: SQL and C++ callers exclude each other and share one counter") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    app_connection app(db.file());

    const std::string t1 = app.call("SELECT sqlock_try_acquire('job', 30000)");
    REQUIRE(!t1.empty());
    REQUIRE(t1.find("error") == std::string::npos);
    CHECK_FALSE(c.try_acquire("job"));
    auto rec = c.inspect("job");
    REQUIRE(rec);
    CHECK(rec->token == std::stoll(t1));
    CHECK(rec->owner.find("sql (pid ") == 0);
    CHECK(app.call("SELECT sqlock_try_acquire('job', 30000)") == "");
    CHECK(app.call("SELECT sqlock_renew('job', " + t1 + ", 30000)") == "1");
    CHECK(app.call("SELECT sqlock_release('job', " + t1 + ")") == "1");
    CHECK(app.call("SELECT sqlock_release('job', " + t1 + ")") == "0");

    auto lease = c.try_acquire("job");
    REQUIRE(lease);
    CHECK(lease->token() > std::stoll(t1));
    CHECK(app.call("SELECT sqlock_try_acquire('job', 30000)") == "");
    // Without the lease's nonce, SQL can neither end nor extend a lease it did not grant.
    const std::string tc = std::to_string(lease->token());
    CHECK(app.call("SELECT sqlock_release('job', " + tc + ")") == "0");
    CHECK(app.call("SELECT sqlock_renew('job', " + tc + ", 30000)") == "0");
    CHECK(app.call("SELECT sqlock_renew('job', " + tc + ", 30000, '" + lease->nonce() + "')") ==
          "1");
    CHECK(c.inspect("job")->held);
    lease->release();
    const std::string t2 =
        app.call("SELECT sqlock_try_acquire('job', 30000, 'py worker', 'batch 7')");
    CHECK(std::stoll(t2) > lease->token());
    CHECK(c.inspect("job")->owner == "py worker");
    CHECK(c.inspect("job")->metadata == "batch 7");
  }

  TEST_CASE(
      "SQL API on SQLite: a grant or a release commits or rolls back with the caller's "
      "work, and only inside a write transaction") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    app_connection app(db.file());
    sqlite_exec(app.get(), "CREATE TABLE jobs_done (job TEXT)");

    // Outside a write transaction: an error that says where to call it, and nothing changes.
    CHECK(value(app.get(), "SELECT sqlock_try_acquire('tx', 30000)").find("BEGIN IMMEDIATE") !=
          std::string::npos);
    sqlite_exec(app.get(), "BEGIN");
    CHECK(value(app.get(), "SELECT sqlock_try_acquire('tx', 30000)").find("BEGIN IMMEDIATE") !=
          std::string::npos);
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK_FALSE(c.inspect("tx"));

    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    CHECK(!value(app.get(), "SELECT sqlock_try_acquire('tx', 30000)").empty());
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK_FALSE(c.inspect("tx"));

    const std::string t = app.call("SELECT sqlock_try_acquire('tx', 30000)");
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    sqlite_exec(app.get(), "INSERT INTO jobs_done VALUES ('job 1')");
    CHECK(value(app.get(), "SELECT sqlock_release('tx', " + t + ")") == "1");
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK(c.inspect("tx")->held);
    CHECK(value(app.get(), "SELECT count(*) FROM jobs_done") == "0");

    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    sqlite_exec(app.get(), "INSERT INTO jobs_done VALUES ('job 1')");
    CHECK(value(app.get(), "SELECT sqlock_assert_held('tx', " + t + ")") == "1");
    CHECK(value(app.get(), "SELECT sqlock_release('tx', " + t + ")") == "1");
    sqlite_exec(app.get(), "COMMIT");
    CHECK_FALSE(c.inspect("tx")->held);
    CHECK(value(app.get(), "SELECT count(*) FROM jobs_done") == "1");
  }

  TEST_CASE(
      "SQL API on SQLite: a process killed (SIGKILL) inside a work + release transaction "
      "leaves the lease held and the work undone") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    app_connection app(db.file());
    sqlite_exec(app.get(), "CREATE TABLE jobs_done (job TEXT)");
    const std::string t = app.call("SELECT sqlock_try_acquire('worker', 60000)");
    REQUIRE(!t.empty());
    sqlock_test::temp_dir dir;
    pid_t worker = sqlock_test::spawn({SQLOCK_TEST_WORKER, "--mode", "sqlite-release-hang", "--url",
                                       db.file(), "--name", "worker", "--token", t, "--iterations",
                                       "1", "--dir", dir.path()});
    REQUIRE(sqlock_test::eventually([&] { return std::filesystem::exists(dir.path() + "/ready"); },
                                    20s));
    ::kill(worker, SIGKILL);
    CHECK(sqlock_test::wait_exit(worker) == 128 + SIGKILL);
    CHECK(value(app.get(), "SELECT count(*) FROM jobs_done") == "0");
    auto rec = c.inspect("worker");
    REQUIRE(rec);
    CHECK(rec->held);
    CHECK(rec->token == std::stoll(t));
    CHECK(app.call("SELECT sqlock_renew('worker', " + t + ", 60000)") == "1");
  }

  TEST_CASE("SQL API on SQLite: bad input fails the statement with the C++ client's message") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    app_connection app(db.file());
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    for (const char* bad : {
             "SELECT sqlock_try_acquire('', 30000)",
             "SELECT sqlock_try_acquire(NULL, 30000)",
             "SELECT sqlock_try_acquire('x', 99)",
             "SELECT sqlock_try_acquire('x', 604800001)",
             "SELECT sqlock_try_acquire('x', '30 seconds')",
             "SELECT sqlock_try_acquire('x', 30000, '')",
             "SELECT sqlock_try_acquire('x', 30000, 'o', zeroblob(4097))",
             "SELECT sqlock_try_acquire('x', 30000, 'o', '', '')",
             "SELECT sqlock_renew('x', 'one', 30000)",
             "SELECT sqlock_release('x', NULL)",
             "SELECT sqlock_semaphore_try_acquire('', 2, 1, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 0, 1, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 1000000001, 1, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 2, 0, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 2, 3, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 2, 1, 99)",
             "SELECT sqlock_semaphore_try_acquire('s', '2', 1, 30000)",
             "SELECT sqlock_semaphore_try_acquire('s', 2, 1, 30000, 'o', zeroblob(4097))",
             "SELECT sqlock_semaphore_renew('s', 1, 604800001)",
             "SELECT sqlock_semaphore_release('s', NULL)",
         }) {
      CAPTURE(bad);
      CHECK(value(app.get(), bad).rfind("error: ", 0) == 0);
    }
    CHECK(value(app.get(), "SELECT sqlock_try_acquire('x', 99)").find("ttl") != std::string::npos);
    CHECK(value(app.get(), "SELECT sqlock_semaphore_try_acquire('s', 2, 3, 30000)")
              .find("from 1 to the limit 2") != std::string::npos);
    sqlite_exec(app.get(), "COMMIT");
    CHECK(c.list().empty());
    CHECK(c.list_semaphores().empty());
  }

  TEST_CASE(
      "SQL API on SQLite: semaphores: SQL and C++ holders share one limit, one queue and one "
      "counter, and commit or roll back with the caller's work") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    app_connection app(db.file());
    using sqlock_test::sem;

    auto a = c.try_acquire_semaphore("pool", sem(2));
    REQUIRE(a);
    const std::string t1 = app.call("SELECT sqlock_semaphore_try_acquire('pool', 2, 1, 30000)");
    REQUIRE(!t1.empty());
    REQUIRE(t1.find("error") == std::string::npos);
    CHECK(std::stoll(t1) > a->token());
    CHECK(app.call("SELECT sqlock_semaphore_try_acquire('pool', 2, 1, 30000)") == "");
    CHECK_FALSE(c.try_acquire_semaphore("pool", sem(2)));
    CHECK(c.inspect_semaphore("pool")->used == 2);
    CHECK(app.call("SELECT sqlock_semaphore_try_acquire('pool', 3, 1, 30000)").find("limit 2") !=
          std::string::npos);

    // Without its nonce, SQL can neither extend nor end the C++ holder.
    const std::string ta = std::to_string(a->token());
    CHECK(app.call("SELECT sqlock_semaphore_renew('pool', " + ta + ", 30000)") == "0");
    CHECK(app.call("SELECT sqlock_semaphore_release('pool', " + ta + ")") == "0");
    CHECK(app.call("SELECT sqlock_semaphore_release('pool', " + ta + ", 'guess')") == "0");
    CHECK(app.call("SELECT sqlock_semaphore_renew('pool', " + t1 + ", 30000)") == "1");

    // A release rolled back keeps the units; committed, it frees them.
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    CHECK(value(app.get(), "SELECT sqlock_semaphore_release('pool', " + t1 + ")") == "1");
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK(c.inspect_semaphore("pool")->used == 2);
    CHECK(app.call("SELECT sqlock_semaphore_release('pool', " + t1 + ")") == "1");
    CHECK(app.call("SELECT sqlock_semaphore_release('pool', " + t1 + ")") == "0");
    CHECK(app.call("SELECT sqlock_semaphore_renew('pool', " + t1 + ", 30000)") == "0");
    CHECK(c.inspect_semaphore("pool")->used == 1);

    // An acquire rolled back leaves nothing.
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    CHECK(!value(app.get(), "SELECT sqlock_semaphore_try_acquire('pool', 2, 1, 30000)").empty());
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK(c.inspect_semaphore("pool")->used == 1);

    // A fair C++ waiter for both units queues: a SQL try never passes it, though one unit is
    // free; the C++ release hands it the room.
    sqlock::client w(db.url());
    std::optional<sqlock::lease> waited;
    std::thread waiter(
        [&] { waited = w.try_acquire_semaphore_for("pool", 20s, sqlock_test::fair_sem(2, 2)); });
    REQUIRE(
        sqlock_test::eventually([&] { return sqlock_test::waiter_count(c, "pool") == 1; }, 10s));
    CHECK(app.call("SELECT sqlock_semaphore_try_acquire('pool', 2, 1, 30000)") == "");
    a->release();
    waiter.join();
    REQUIRE(waited);
    CHECK(waited->token() > std::stoll(t1));

    // A SQL release hands the room to a fair waiter (it takes the grant at its next attempt).
    waited->release();
    const std::string t2 = app.call("SELECT sqlock_semaphore_try_acquire('pool', 2, 2, 30000)");
    REQUIRE(!t2.empty());
    std::optional<sqlock::lease> handed;
    std::thread waiter2(
        [&] { handed = w.try_acquire_semaphore_for("pool", 20s, sqlock_test::fair_sem(2, 1)); });
    REQUIRE(
        sqlock_test::eventually([&] { return sqlock_test::waiter_count(c, "pool") == 1; }, 10s));
    CHECK(app.call("SELECT sqlock_semaphore_release('pool', " + t2 + ")") == "1");
    auto rec = c.inspect_semaphore("pool");
    REQUIRE(rec);
    CHECK(rec->used == 1);  // handed in the release's own transaction
    CHECK(rec->waiters.empty());
    waiter2.join();
    REQUIRE(handed);
    CHECK(handed->token() > std::stoll(t2));
  }
}
