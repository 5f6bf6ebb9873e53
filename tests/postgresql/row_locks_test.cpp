// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only: the SQL's concurrency semantics, shown with raw connections that hold row
// locks as a fenced transaction would: renewals skip share-locked semaphore holders, a grant
// never waits for a lapsed holder's open transaction, purge skips locked rows, and a token
// drawn in an upsert's VALUES would go backwards where sqlock's statement keeps it increasing.

#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

TEST_SUITE("postgresql") {
  TEST_CASE(
      "renew classifies a semaphore holder's outcomes and skips a holder row share-locked "
      "by sqlock_semaphore_assert_held") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    const auto schema = raw.ident(db.schema());
    auto grant = [&](const std::string& name, const std::string& nonce,
                     std::chrono::milliseconds ttl = 30s) {
      auto g = b->try_acquire_semaphore(sem_request(name, nonce, 10, 1, ttl), soon());
      REQUIRE(g.granted);
      return g.granted->token;
    };
    auto live = grant("s", "live");
    auto fenced = grant("s", "fenced");
    auto forced = grant("s", "forced");
    auto released = grant("s", "released");
    auto expired = grant("s", "expired", 100ms);
    auto gone = grant("g", "gone");
    auto lock = b->try_acquire(request("a-lock", "nl"), soon()).granted;
    REQUIRE(lock);
    CHECK(b->force_release_semaphore("s", forced, soon()) == 1);
    CHECK(b->release(holder_key("s", "released", released), soon()));
    CHECK(b->release(holder_key("g", "gone", gone), soon()));
    grant("g", "next");  // deletes the ended holder row of "gone"
    CHECK(raw.value("SELECT count(*) FROM " + schema +
                    ".sqlock_semaphore_holders WHERE nonce = 'gone'") == "0");
    CHECK(eventually([&] { return b->inspect_semaphore("s", soon())->used == 2; }));  // lapsed

    raw.query("BEGIN");
    raw.query("SELECT " + schema + ".sqlock_semaphore_assert_held('s', $1::bigint)",
              {std::to_string(fenced)});
    auto start = steady::now();
    auto rs = b->renew({{holder_key("s", "live", live), 30s},
                        {holder_key("s", "fenced", fenced), 30s},
                        {holder_key("s", "forced", forced), 30s},
                        {holder_key("s", "released", released), 30s},
                        {holder_key("s", "expired", expired), 30s},
                        {holder_key("g", "gone", gone), 30s},
                        {{"a-lock", "nl", lock->token}, 30s},
                        {holder_key("s", "live", live + 1000), 30s}},
                       soon());
    CHECK(steady::now() - start < 2s);  // skipped, not waited for
    REQUIRE(rs.size() == 8);
    CHECK(rs[0].outcome == sqlock::renew_outcome::renewed);
    CHECK(rs[1].outcome == sqlock::renew_outcome::busy);
    CHECK(rs[2].outcome == sqlock::renew_outcome::force_released);
    CHECK(rs[3].outcome == sqlock::renew_outcome::expired);
    CHECK(rs[4].outcome == sqlock::renew_outcome::expired);
    CHECK(rs[5].outcome == sqlock::renew_outcome::expired);  // the row is gone: it ended
    CHECK(rs[6].outcome == sqlock::renew_outcome::renewed);
    CHECK(rs[7].outcome == sqlock::renew_outcome::taken_over);  // not our token: never renewed
    // The fenced holder's release does not wait for the open transaction: row-locked.
    start = steady::now();
    try {
      b->release(holder_key("s", "fenced", fenced), soon());
      FAIL("expected the release to report the locked row");
    } catch (const sqlock::row_locked& e) {
      CHECK(e.code() == errc::unavailable);
      CHECK(e.sqlstate() == sqlock::sqlstate_row_locked);
    }
    CHECK(steady::now() - start < 1s);
    raw.query("COMMIT");
    auto again = b->renew({{holder_key("s", "fenced", fenced), 30s}}, soon());
    CHECK(again.at(0).outcome == sqlock::renew_outcome::renewed);
    CHECK(b->release(holder_key("s", "fenced", fenced), soon()));
    CHECK_FALSE(b->release(holder_key("s", "fenced", fenced), soon()));  // idempotent
  }

  TEST_CASE(
      "a semaphore grant does not count out a lapsed holder whose fenced transaction is "
      "open, and does not wait for it") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    const auto schema = raw.ident(db.schema());
    auto first = b->try_acquire_semaphore(sem_request("f", "first", 1, 1, 300ms), soon());
    REQUIRE(first.granted);
    raw.query("BEGIN");
    raw.query("SELECT " + schema + ".sqlock_semaphore_assert_held('f', $1::bigint)",
              {std::to_string(first.granted->token)});
    CHECK(eventually([&] { return b->inspect_semaphore("f", soon())->used == 0; }));  // lapsed
    auto start = steady::now();
    auto refused = b->try_acquire_semaphore(sem_request("f", "second", 1), soon());
    CHECK(steady::now() - start < 1s);
    CHECK_FALSE(refused.granted);
    CHECK(refused.holder_expires_in == 0ms);  // unknown: retry soon
    // A release of another semaphore's holder, or inspecting this one, is not held up either.
    CHECK(b->inspect_semaphore("f", soon())->holders.empty());
    raw.query("COMMIT");
    auto second = b->try_acquire_semaphore(sem_request("f", "second", 1), soon());
    REQUIRE(second.granted);
    CHECK(second.granted->token > first.granted->token);
  }

  TEST_CASE(
      "purge skips a semaphore that a grant holds locked and deletes lapsed rows without "
      "their semaphore") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    const auto schema = raw.ident(db.schema());
    for (std::string name : {"idle-a", "idle-b", "busy"}) {
      auto g = b->try_acquire_semaphore(sem_request(name, "n-" + name, 3), soon());
      REQUIRE(g.granted);
      CHECK(b->release(holder_key(name, "n-" + name, g.granted->token), soon()));
    }
    auto live = b->try_acquire_semaphore(sem_request("live", "n-live", 3), soon());
    REQUIRE(live.granted);
    // An orphan: a lapsed holder row whose semaphore row is gone.
    raw.query("INSERT INTO " + schema +
              ".sqlock_semaphore_holders (name, nonce, owner, token, "
              "units, acquired_at, expires_at) VALUES ('orphan', 'o', 'x', 1, 1, now(), now())");
    raw.query("BEGIN");
    raw.query("SELECT 1 FROM " + schema + ".sqlock_semaphores WHERE name = 'busy' FOR UPDATE");
    auto start = steady::now();
    CHECK(b->purge(0ms, soon()) == 2);
    CHECK(steady::now() - start < 2s);
    raw.query("COMMIT");
    CHECK_FALSE(b->inspect_semaphore("idle-a", soon()));
    CHECK_FALSE(b->inspect_semaphore("idle-b", soon()));
    CHECK(b->inspect_semaphore("busy", soon()));
    CHECK(b->inspect_semaphore("live", soon())->used == 1);
    CHECK(raw.value("SELECT count(*) FROM " + schema +
                    ".sqlock_semaphore_holders WHERE name "
                    "IN ('orphan', 'idle-a', 'idle-b')") == "0");
    CHECK(b->purge(0ms, soon()) == 1);  // "busy" now
    CHECK(b->purge(0ms, soon()) == 0);
    // Tokens stay monotonic across the purge.
    auto again = b->try_acquire_semaphore(sem_request("idle-a", "n2", 3), soon());
    REQUIRE(again.granted);
    CHECK(again.granted->token > live.granted->token);
  }

  TEST_CASE(
      "an upsert blocked behind a row lock that draws its token in VALUES lands with a smaller "
      "token (the negative of sqlock's statement)") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    pg_session watcher(db.direct_url());
    const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
    const auto seq = raw.ident(db.schema()) + ".sqlock_token_seq";
    auto first = b->try_acquire(request("x", "n0", 100ms), soon());
    REQUIRE(first.granted);
    CHECK(eventually([&] { return !b->inspect("x", soon())->held; }));

    auto blocked_acquirers = [&] {
      return std::stoi(
          watcher.value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND pid <> pg_backend_pid()"));
    };

    // The same interleaving with sqlock's own statement, on every backend, is the conformance
    // case "an attempt on a lock row held by an open transaction draws no token, and the grant
    // after it has a larger one" (tests/conformance/backend_contract_test.cpp).
    SUBCASE("negative: a token taken from VALUES would go backwards") {
      // The same interleaving with the token drawn in VALUES (excluded.token), as a naive upsert
      // does: VALUES are evaluated before the conflict check, so the blocked statement carries a
      // token drawn BEFORE the intervening grant, and lands with a smaller one.
      raw.query("BEGIN");
      raw.query("SELECT 1 FROM " + locks + " WHERE name = 'x' FOR UPDATE");
      std::string naive_token;
      std::thread t([&] {
        pg_session naive(db.direct_url());
        naive_token = naive.value(
            "INSERT INTO " + locks +
            " AS l (name, owner, nonce, token, acquired_at, expires_at) "
            "VALUES ('x', 'naive', 'naive', nextval('" +
            seq +
            "'), now(), now() + interval '1 "
            "minute') ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, token = "
            "excluded.token, expires_at = excluded.expires_at WHERE l.expires_at <= now() "
            "RETURNING token");
      });
      CHECK(eventually([&] { return blocked_acquirers() == 1; }));
      auto ta = std::stoll(raw.value("UPDATE " + locks + " SET token = nextval('" + seq +
                                     "'), nonce = 'A', expires_at = now() WHERE name = 'x' "
                                     "RETURNING token"));
      raw.query("COMMIT");
      t.join();
      REQUIRE_FALSE(naive_token.empty());
      CHECK(std::stoll(naive_token) < ta);  // the invariant sqlock's statement keeps is broken
    }
  }

}  // TEST_SUITE
