// SPDX-License-Identifier: Apache-2.0
// MariaDB only: fencing inside the application's transaction (sqlock_assert_held and
// <sqlock/mariadb.hpp>), what the backend does to a row such a transaction holds (renewals skip
// it, releases do not wait for it, admin calls wait for it until their deadline), and who may
// call the functions. TEST_SUITE("mariadb"): run under scripts/with-mariadb.

#include <chrono>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/mariadb.hpp>
#include <sqlock/sqlock.hpp>

#include "support/errors.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using sqlock_test::code_of;
using steady = std::chrono::steady_clock;

using sqlock_test::soon;

TEST_SUITE("mariadb") {
  TEST_CASE(
      "mariadb: a fenced transaction holds the lock row: renewals skip it, a release "
      "does not wait for it, force_release waits for it until its deadline") {
    sqlock_test::mariadb_fixture db;
    auto b = sqlock::open_backend(db.url(), {});
    auto g = b->try_acquire(sqlock_test::request("job", "n1", 30s), soon()).granted;
    REQUIRE(g);
    sqlock_test::mariadb_session app(db.url());
    app.exec("START TRANSACTION");
    sqlock::mariadb::assert_held(app.get(), "job", g->token);
    auto start = steady::now();
    auto r = b->renew({{{"job", "n1", g->token}, 30s}}, soon());
    CHECK(r.at(0).outcome == sqlock::renew_outcome::busy);
    CHECK(code_of([&] {
            (void)b->release({"job", "n1", g->token}, soon());
          }) == sqlock::errc::unavailable);  // row_locked: the client retries in the background
    CHECK(steady::now() - start < 2s);       // neither waited
    // An admin's force release waits for the fenced transaction (here: it commits after 1 s).
    std::thread committer([&] {
      std::this_thread::sleep_for(1s);
      app.exec("COMMIT");
    });
    start = steady::now();
    CHECK(b->force_release("job", steady::now() + 8s));
    CHECK(steady::now() - start >= 900ms);
    committer.join();
    CHECK_FALSE(b->inspect("job", soon())->held);
    // Without the transaction's end, it gives up at its deadline, changing nothing.
    auto g2 = b->try_acquire(sqlock_test::request("job", "n2", 30s), soon()).granted;
    REQUIRE(g2);
    app.exec("START TRANSACTION");
    sqlock::mariadb::assert_held(app.get(), "job", g2->token);
    start = steady::now();
    CHECK(code_of([&] { (void)b->force_release("job", steady::now() + 1s); }) ==
          sqlock::errc::unavailable);
    CHECK(steady::now() - start < 3s);
    app.exec("ROLLBACK");
    CHECK(b->inspect("job", soon())->held);
  }

  TEST_CASE(
      "mariadb: assert_held is lease_lost for a stale, expired or missing lease and then "
      "locks nothing; usage outside a transaction") {
    sqlock_test::mariadb_fixture db;
    auto b = sqlock::open_backend(db.url(), {});
    auto g = b->try_acquire(sqlock_test::request("job", "n1", 30s), soon()).granted;
    REQUIRE(g);
    sqlock_test::mariadb_session app(db.url());
    CHECK(code_of([&] { sqlock::mariadb::assert_held(app.get(), "job", g->token); }) ==
          sqlock::errc::usage);
    app.exec("START TRANSACTION");
    CHECK(code_of([&] { sqlock::mariadb::assert_held(app.get(), "job", g->token + 1); }) ==
          sqlock::errc::lease_lost);
    CHECK(code_of([&] { sqlock::mariadb::assert_held(app.get(), "nothing", 1); }) ==
          sqlock::errc::lease_lost);
    // The failed checks locked nothing: the holder renews and releases at once.
    CHECK(b->renew({{{"job", "n1", g->token}, 30s}}, soon()).at(0).outcome ==
          sqlock::renew_outcome::renewed);
    CHECK(b->release({"job", "n1", g->token}, soon()));
    CHECK(code_of([&] { sqlock::mariadb::assert_held(app.get(), "job", g->token); }) ==
          sqlock::errc::lease_lost);  // released: expired
    app.exec("ROLLBACK");
    // A semaphore holder likewise.
    auto s = b->try_acquire_semaphore(sqlock_test::sem_request("pool", "h1", 2), soon()).granted;
    REQUIRE(s);
    auto s2 = b->try_acquire_semaphore(sqlock_test::sem_request("pool", "h2", 2), soon()).granted;
    REQUIRE(s2);
    app.exec("START TRANSACTION");
    sqlock::mariadb::assert_semaphore_held(app.get(), "pool", s->token);
    CHECK(code_of([&] {
            sqlock::mariadb::assert_semaphore_held(app.get(), "pool", s->token + 9);
          }) == sqlock::errc::lease_lost);
    // Only the asserted holder's row is locked: the other holder renews; the fenced one is busy.
    auto r = b->renew({{{"pool", "h2", s2->token, sqlock::lease_kind::semaphore}, 30s},
                       {{"pool", "h1", s->token, sqlock::lease_kind::semaphore}, 30s}},
                      soon());
    CHECK(r.at(0).outcome == sqlock::renew_outcome::renewed);
    CHECK(r.at(1).outcome == sqlock::renew_outcome::busy);
    app.exec("COMMIT");
  }

  TEST_CASE(
      "mariadb: a lease that expires while a fenced transaction holds its row is not "
      "taken over until that transaction ends; the takeover draws a larger token") {
    sqlock_test::mariadb_fixture db;
    auto b = sqlock::open_backend(db.url(), {});
    auto g = b->try_acquire(sqlock_test::request("job", "n1", 300ms), soon()).granted;
    REQUIRE(g);
    sqlock_test::mariadb_session app(db.url());
    app.exec("START TRANSACTION");
    sqlock::mariadb::assert_held(app.get(), "job", g->token);
    std::this_thread::sleep_for(500ms);  // the lease lapses; the row stays share-locked
    auto refused = b->try_acquire(sqlock_test::request("job", "n2", 30s), soon());
    CHECK_FALSE(refused.granted);
    CHECK(refused.holder_expires_in == 0ms);  // held by a transaction: back off
    app.exec("COMMIT");
    auto taken = b->try_acquire(sqlock_test::request("job", "n3", 30s), soon()).granted;
    REQUIRE(taken);
    CHECK(taken->token > g->token);
  }

  TEST_CASE("mariadb: only a user granted EXECUTE may call sqlock_assert_held") {
    sqlock_test::mariadb_fixture db;
    auto b = sqlock::open_backend(db.url(), {});
    auto g = b->try_acquire(sqlock_test::request("job", "n1", 30s), soon()).granted;
    REQUIRE(g);
    sqlock_test::mariadb_session admin(sqlock_test::mariadb_admin_url());
    const std::string other = "sqlock_fence_" + std::to_string(g->token) + "_" +
                              std::to_string(steady::now().time_since_epoch().count() % 100000);
    const std::string user = "'" + other + "'@'%'";
    admin.exec("CREATE USER " + user + " IDENTIFIED BY 'Pw-" + other + "'");
    struct drop {
      sqlock_test::mariadb_session& s;
      std::string u;
      ~drop() {
        try {
          s.exec("DROP USER " + u);
        } catch (...) {
        }
      }
    } cleanup{admin, user};
    const std::string dbname = sqlock_test::mariadb_session::ident(db.database());
    admin.exec("GRANT SELECT ON " + dbname + ".sqlock_schema_version TO " + user);
    auto parts = sqlock_test::parse_mariadb_url(db.url());
    const std::string url = "mariadb://" + other + ":Pw-" + other + "@" + parts.host + ":" +
                            std::to_string(parts.port) + "/" + db.database();
    sqlock_test::mariadb_session app(url);
    app.exec("START TRANSACTION");
    CHECK(code_of([&] { sqlock::mariadb::assert_held(app.get(), "job", g->token); }) ==
          sqlock::errc::invalid_argument);  // no EXECUTE: denied, and no row locked
    app.exec("ROLLBACK");
    CHECK(b->renew({{{"job", "n1", g->token}, 30s}}, soon()).at(0).outcome ==
          sqlock::renew_outcome::renewed);
    admin.exec("GRANT EXECUTE ON FUNCTION " + dbname + ".sqlock_assert_held TO " + user);
    app.exec("START TRANSACTION");
    sqlock::mariadb::assert_held(app.get(), "job", g->token);  // SQL SECURITY DEFINER
    app.exec("COMMIT");
  }
}
