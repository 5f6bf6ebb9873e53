// SPDX-License-Identifier: Apache-2.0
// The conformance suite, the backend contract: the sqlock::backend interface called directly
// (below sqlock::client), on every backend fixture. Where the backends legitimately differ, each
// keeps its own assertions: PostgreSQL locks rows, so a row held by an open (fenced) transaction
// is skipped or refused at once; SQLite has one writer at a time, so the same open transaction
// (BEGIN IMMEDIATE) makes every writer wait until its call's deadline, which then fails with
// `unavailable` (F::single_writer tells them apart).

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"
#include "support/sqlite.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

namespace {

/// A raw connection to a fixture's database beside sqlock (the application's own connection),
/// with the names and the clock of its dialect.
template <class F>
struct raw_db;

template <>
struct raw_db<sqlock_test::sqlite_fixture> {
  explicit raw_db(const sqlock_test::sqlite_fixture& db)
      : conn(sqlock_test::sqlite_open(db.file())) {}
  void exec(const std::string& sql) { sqlock_test::sqlite_exec(conn.get(), sql); }
  std::string value(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(conn.get(), sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  std::string locks() const { return "sqlock_locks"; }
  /// The database clock as the schema stores it (epoch ms).
  std::string now() const {
    return "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)";
  }
  sqlock_test::sqlite_handle conn;
};

#if SQLOCK_HAVE_POSTGRESQL
struct raw_postgresql {
  explicit raw_postgresql(const sqlock_test::postgresql_schema& db)
      : session(db.direct_url()), schema(session.ident(db.schema())) {}
  void exec(const std::string& sql) { session.query(sql); }
  std::string value(const std::string& sql) { return session.value(sql); }
  std::string locks() const { return schema + ".sqlock_locks"; }
  std::string now() const { return "now()"; }
  /// What a fenced transaction does to a lock row (sqlock_assert_held): a share lock.
  std::string share_lock() const { return " FOR SHARE"; }
  sqlock_test::pg_session session;
  std::string schema;
};
template <>
struct raw_db<sqlock_test::postgresql_fixture> : raw_postgresql {
  using raw_postgresql::raw_postgresql;
};
template <>
struct raw_db<sqlock_test::pgbouncer_fixture> : raw_postgresql {
  using raw_postgresql::raw_postgresql;
};
#endif

#if SQLOCK_HAVE_MARIADB
template <>
struct raw_db<sqlock_test::mariadb_fixture> : sqlock_test::raw_mariadb {
  using raw_mariadb::raw_mariadb;
};
#endif

}  // namespace

TEST_CASE_TEMPLATE("exactly one of many concurrent acquirers wins a fresh name and an expired name",
                   F, SQLOCK_TEST_FIXTURES) {
  F db;
  constexpr int n = 8;
  std::vector<std::shared_ptr<sqlock::backend>> backends;
  for (int i = 0; i < n; ++i) {
    backends.push_back(sqlock::open_backend(db.url(), db.options().backend));
    backends.back()->schema_version(soon());  // connected before the race
  }
  for (int round = 0; round < 4; ++round) {
    const std::string name = "race-" + std::to_string(round);
    std::int64_t previous = 0;
    for (int phase = 0; phase < 2; ++phase) {  // 0: fresh name, 1: expired row
      std::atomic<int> ready{0}, winners{0};
      std::atomic<std::int64_t> token{0};
      std::vector<std::thread> ts;
      for (int i = 0; i < n; ++i)
        ts.emplace_back([&, i] {
          ++ready;
          while (ready < n) std::this_thread::yield();
          // A long ttl: the winner's lease must not expire while slower threads (TSan, 2
          // cores) are still attempting, or a later grant would be legitimate, not a race.
          auto r = backends[static_cast<std::size_t>(i)]->try_acquire(
              request(name, "n" + std::to_string(phase) + "-" + std::to_string(i), 30s), soon());
          if (r.granted) {
            ++winners;
            token = r.granted->token;
          }
        });
      for (auto& t : ts) t.join();
      CHECK(winners == 1);
      CHECK(token > previous);
      previous = token;
      // End the lease for the next phase: the row is then no longer live (expires_at <= now()),
      // exactly what the acquire path sees for an expired row, without waiting out a ttl.
      CHECK(backends[0]->force_release(name, soon()));
      CHECK_FALSE(backends[0]->inspect(name, soon())->held);
    }
  }
}

TEST_CASE_TEMPLATE("abandon ends a semaphore holder by nonce and drops its queue ticket", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  auto held = b->try_acquire_semaphore(sem_request("q", "holder", 1), soon());
  REQUIRE(held.granted);
  auto waiting =
      b->try_acquire_semaphore(sem_request("q", "waiter", 1, 1, 30s, true, true), soon());
  CHECK_FALSE(waiting.granted);
  auto rec = b->inspect_semaphore("q", soon());
  REQUIRE(rec);
  REQUIRE(rec->waiters.size() == 1);
  CHECK(rec->waiters[0].ticket > held.granted->token);
  CHECK(rec->waiters[0].expires_in > 1s);
  CHECK_FALSE(b->abandon(holder_key("q", "waiter", 0), soon()));  // no lease, only a ticket
  CHECK(b->inspect_semaphore("q", soon())->waiters.empty());
  CHECK(b->abandon(holder_key("q", "holder", 0), soon()));  // whatever the token
  CHECK(b->inspect_semaphore("q", soon())->used == 0);
  CHECK_FALSE(b->abandon(holder_key("q", "holder", 0), soon()));
  // A lock and a semaphore of one name are unrelated.
  auto lock = b->try_acquire(request("q", "holder"), soon());
  REQUIRE(lock.granted);
  CHECK_FALSE(b->abandon(holder_key("q", "holder", 0), soon()));
  CHECK(b->inspect("q", soon())->held);
}

TEST_CASE_TEMPLATE("renew classifies every outcome and skips rows locked by an open transaction", F,
                   SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::raw_sql) {
    // The memory backend: no SQL to stage an expired row with, no transaction to hold a row
    // (renewals are never busy there). Its renew outcomes are checked in
    // tests/unit/testing_test.cpp.
    return;
  } else {
    F db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    raw_db<F> raw(db);
    const auto locks = raw.locks();
    auto live = b->try_acquire(request("live", "n1"), soon()).granted;
    auto locked = b->try_acquire(request("locked", "n2"), soon()).granted;
    auto forced = b->try_acquire(request("forced", "n3"), soon()).granted;
    auto taken = b->try_acquire(request("taken", "n4", 100ms), soon()).granted;
    auto expired = b->try_acquire(request("expired", "n5", 100ms), soon()).granted;
    auto purged = b->try_acquire(request("purged", "n6", 100ms), soon()).granted;
    REQUIRE((live && locked && forced && taken && expired && purged));
    CHECK(eventually([&] { return !b->inspect("purged", soon())->held; }));
    REQUIRE(b->try_acquire(request("taken", "someone-else"), soon()).granted);
    CHECK(b->purge(0ms, soon()) == 2);  // "expired" and "purged" are free
    CHECK(b->force_release("forced", soon()));
    auto e2 = b->try_acquire(request("expired", "n5b", 100ms), soon()).granted;  // re-created...
    REQUIRE(e2);
    raw.exec("UPDATE " + locks + " SET nonce = 'n5', token = " + std::to_string(expired->token) +
             ", expires_at = " + raw.now() +
             " WHERE name = 'expired'");  // ...as our own, expired row
    const std::vector<sqlock::renew_request> all = {
        {{"live", "n1", live->token}, 30s},       {{"locked", "n2", locked->token}, 30s},
        {{"forced", "n3", forced->token}, 30s},   {{"taken", "n4", taken->token}, 30s},
        {{"expired", "n5", expired->token}, 30s}, {{"purged", "n6", purged->token}, 30s}};
    std::vector<sqlock::renew_result> rs;
    if constexpr (F::single_writer) {
      // SQLite: the application's fenced transaction holds the only write lock, so the renewal
      // waits for it until the call's deadline and fails; after the commit it renews them all.
      raw.exec("BEGIN IMMEDIATE");
      sqlock::sqlite::assert_held(raw.conn.get(), "locked", locked->token);
      auto start = steady::now();
      CHECK(code_of([&] { (void)b->renew(all, steady::now() + 1s); }) == errc::unavailable);
      CHECK(steady::now() - start >= 900ms);  // it waited, until its deadline
      raw.exec("COMMIT");
      rs = b->renew(all, soon());
      REQUIRE(rs.size() == 6);
      CHECK(rs[1].outcome == sqlock::renew_outcome::renewed);
    } else {
      // PostgreSQL and MariaDB: the fenced transaction share-locks one row; the renewal skips
      // it at once.
      raw.exec("BEGIN");
      raw.exec("SELECT 1 FROM " + locks + " WHERE name = 'locked'" + raw.share_lock());
      auto start = steady::now();
      rs = b->renew(all, soon());
      CHECK(steady::now() - start < 2s);  // skipped, not waited for
      REQUIRE(rs.size() == 6);
      CHECK(rs[1].outcome == sqlock::renew_outcome::busy);
      raw.exec("COMMIT");
    }
    CHECK(rs[0].outcome == sqlock::renew_outcome::renewed);
    CHECK(rs[2].outcome == sqlock::renew_outcome::force_released);
    CHECK(rs[3].outcome == sqlock::renew_outcome::taken_over);
    CHECK(rs[4].outcome == sqlock::renew_outcome::expired);
    CHECK(rs[5].outcome == sqlock::renew_outcome::missing);
    auto again = b->renew({{{"locked", "n2", locked->token}, 30s}}, soon());
    CHECK(again.at(0).outcome == sqlock::renew_outcome::renewed);
  }
}

TEST_CASE_TEMPLATE(
    "an attempt on a lock row held by an open transaction draws no token, and the "
    "grant after it has a larger one",
    F, SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::raw_sql) {
    // The memory backend has no transactions: no row or database is ever held by one.
    return;
  } else {
    F db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    raw_db<F> raw(db);
    const auto locks = raw.locks();
    auto first = b->try_acquire(request("x", "n0", 100ms), soon());
    REQUIRE(first.granted);
    CHECK(eventually([&] { return !b->inspect("x", soon())->held; }));
    std::int64_t ta = 0;
    if constexpr (F::single_writer) {
      // SQLite: another connection's write transaction holds the database (as a fenced
      // transaction does): a try waits for it until its own deadline and fails `unavailable`.
      // Meanwhile that session grants the same name and commits; the try after it draws a
      // larger token.
      const std::string counter = "SELECT value FROM sqlock_counters WHERE name = 'token'";
      raw.exec("BEGIN IMMEDIATE");
      const auto before = raw.value(counter);
      auto start = steady::now();
      CHECK(code_of([&] { (void)b->try_acquire(request("x", "waiter"), steady::now() + 1s); }) ==
            errc::unavailable);
      CHECK(steady::now() - start >= 900ms);  // it waited, until its deadline
      CHECK(raw.value(counter) == before);
      raw.exec("UPDATE sqlock_counters SET value = value + 1 WHERE name = 'token'");
      raw.exec("UPDATE " + locks + " SET token = (" + counter +
               "), nonce = 'A', expires_at = " + raw.now() + " WHERE name = 'x'");
      ta = std::stoll(raw.value("SELECT token FROM " + locks + " WHERE name = 'x'"));
      raw.exec("COMMIT");
#if SQLOCK_HAVE_MARIADB
    } else if constexpr (std::is_same_v<F, sqlock_test::mariadb_fixture>) {
      // MariaDB: another session holds the row lock (as a fenced transaction's share lock
      // would): the acquirer, which holds the token counter's row, locks the lock row with
      // NOWAIT and is refused at once with no known expiry, drawing nothing. Then that session
      // grants the name itself (the counter first, as sqlock's writers do) and commits; the
      // grant after it draws a larger token.
      const std::string counter =
          "SELECT value FROM " + raw.database + ".sqlock_counters WHERE name = 'token'";
      raw.exec("BEGIN");
      raw.exec("SELECT 1 FROM " + locks + " WHERE name = 'x' FOR UPDATE");
      const auto before = raw.value(counter);
      auto start = steady::now();
      auto refused = b->try_acquire(request("x", "waiter"), steady::now() + 20s);
      CHECK(steady::now() - start < 3s);
      CHECK_FALSE(refused.granted);
      CHECK(refused.holder_expires_in == 0ms);
      CHECK(raw.value(counter) == before);
      raw.exec("UPDATE " + raw.database +
               ".sqlock_counters SET value = value + 1 WHERE name = 'token'");
      raw.exec("UPDATE " + locks + " SET token = (" + counter +
               "), nonce = 'A', expires_at = " + raw.now() + " WHERE name = 'x'");
      ta = std::stoll(raw.value("SELECT token FROM " + locks + " WHERE name = 'x'"));
      raw.exec("COMMIT");
#endif
    } else {
#if SQLOCK_HAVE_POSTGRESQL
      // PostgreSQL: another session holds the row lock (as a fenced transaction's share lock
      // would): the acquirer sees a free row but never waits for the lock: it is refused at once
      // with no known expiry and draws nothing. Once the lock is gone, a grant draws its token
      // under the row lock, after the grant that session made.
      sqlock_test::pg_session watcher(db.direct_url());
      const auto seq = raw.schema + ".sqlock_token_seq";
      auto blocked_acquirers = [&] {
        return std::stoi(
            watcher.value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                          "AND datname = current_database() AND pid <> pg_backend_pid()"));
      };
      raw.exec("BEGIN");
      raw.exec("SELECT 1 FROM " + locks + " WHERE name = 'x' FOR UPDATE");
      auto last = [&] { return watcher.value("SELECT last_value FROM " + seq); };
      const auto before = last();
      auto start = steady::now();
      auto refused = b->try_acquire(request("x", "waiter"), steady::now() + 20s);
      CHECK(steady::now() - start < 3s);
      CHECK_FALSE(refused.granted);
      CHECK(refused.holder_expires_in == 0ms);
      CHECK(last() == before);
      CHECK(blocked_acquirers() == 0);
      // Meanwhile a grant of the same name happens and ends in that session.
      ta = std::stoll(raw.value("UPDATE " + locks + " SET token = nextval('" + seq +
                                "'), nonce = 'A', expires_at = now() WHERE name = 'x' "
                                "RETURNING token"));
      raw.exec("COMMIT");
#endif
    }
    auto got = b->try_acquire(request("x", "waiter"), soon());
    REQUIRE(got.granted);
    CHECK(got.granted->token > ta);
    CHECK(ta > first.granted->token);
  }
}
