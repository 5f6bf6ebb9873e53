// SPDX-License-Identifier: Apache-2.0
// SQLite only: same-database fencing inside the user's own transaction.

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/sqlite.hpp"

using namespace std::chrono_literals;
using sqlock_test::code_of;

using sqlock_test::sqlite_exec;
using sqlock_test::sqlite_open;

TEST_SUITE("sqlite") {
  TEST_CASE("a fenced write with the live token commits; a stale token is rejected") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    auto app = sqlite_open(db.file());
    sqlite_exec(app.get(), "CREATE TABLE ledger (entry TEXT, token INTEGER)");

    sqlock::lock_options short_lease;
    short_lease.ttl = 150ms;
    short_lease.keepalive = false;
    auto old = c.try_acquire("ledger", short_lease);
    REQUIRE(old);
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    sqlock::sqlite::assert_held(app.get(), "ledger", old->token());
    sqlite_exec(app.get(), "INSERT INTO ledger VALUES ('first', 1)");
    sqlite_exec(app.get(), "COMMIT");

    CHECK(sqlock_test::eventually([&] { return old->lost(); }));
    sqlock::client other(db.url());
    std::optional<sqlock::lease> fresh;
    CHECK(sqlock_test::eventually([&] { return bool(fresh = other.try_acquire("ledger")); }));
    REQUIRE(fresh);
    CHECK(fresh->token() > old->token());

    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    CHECK(code_of([&] { sqlock::sqlite::assert_held(app.get(), "ledger", old->token()); }) ==
          sqlock::errc::lease_lost);
    sqlite_exec(app.get(), "ROLLBACK");
    CHECK(code_of([&] { sqlock::sqlite::assert_held(app.get(), "ledger", fresh->token()); }) ==
          sqlock::errc::usage);  // outside a transaction the check proves nothing
    CHECK(code_of([&] { sqlock::sqlite::assert_held(app.get(), "nope", 1); }) ==
          sqlock::errc::usage);
  }

  TEST_CASE("the SQL function rejects a stale token inside the statement") {
    sqlock_test::sqlite_fixture db;
    sqlock::client c(db.url());
    auto app = sqlite_open(db.file());
    REQUIRE(sqlock::sqlite::register_functions(app.get()) == SQLITE_OK);
    sqlite_exec(app.get(), "CREATE TABLE ledger (entry TEXT, token INTEGER)");
    auto l = c.try_acquire("ledger");
    REQUIRE(l);
    std::string ok = "BEGIN IMMEDIATE; INSERT INTO ledger SELECT 'ok', " +
                     std::to_string(l->token()) + " WHERE sqlock_assert_held('ledger', " +
                     std::to_string(l->token()) + "); COMMIT;";
    sqlite_exec(app.get(), ok.c_str());
    std::string stale = "INSERT INTO ledger SELECT 'stale', 0 WHERE sqlock_assert_held('ledger', " +
                        std::to_string(l->token() - 1) + ")";
    char* err = nullptr;
    CHECK(sqlite3_exec(app.get(), stale.c_str(), nullptr, nullptr, &err) == SQLITE_ERROR);
    REQUIRE(err);
    CHECK(std::string(err).find("lease lost") != std::string::npos);
    sqlite3_free(err);
  }

  TEST_CASE("a takeover cannot commit while a fenced transaction is open") {
    sqlock_test::sqlite_fixture db;
    sqlock::client holder(db.url());
    sqlock::lock_options o;
    o.ttl = 300ms;
    o.keepalive = false;
    auto l = holder.try_acquire("ledger", o);
    REQUIRE(l);
    auto app = sqlite_open(db.file());
    sqlite_exec(app.get(), "CREATE TABLE ledger (entry TEXT, token INTEGER)");
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    sqlock::sqlite::assert_held(app.get(), "ledger", l->token());

    std::atomic<std::int64_t> taken{0};
    std::atomic<bool> done{false};
    std::thread taker([&] {
      sqlock::client other(db.url());
      auto t = other.acquire("ledger");  // waits for expiry AND for our write lock
      taken = t.token();
      done = true;
    });
    std::this_thread::sleep_for(600ms);  // well past the lease: only our transaction holds it off
    CHECK_FALSE(done.load());
    std::string write = "INSERT INTO ledger VALUES ('fenced', " + std::to_string(l->token()) + ")";
    sqlite_exec(app.get(), write.c_str());
    sqlite_exec(app.get(), "COMMIT");
    taker.join();
    CHECK(taken > l->token());
    sqlite_exec(app.get(), "BEGIN IMMEDIATE");
    CHECK(code_of([&] { sqlock::sqlite::assert_held(app.get(), "ledger", l->token()); }) ==
          sqlock::errc::lease_lost);
    sqlite_exec(app.get(), "ROLLBACK");
  }
}
