// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only: wake-ups through LISTEN/NOTIFY. A watched inspection marks a held row, a
// release wakes a waiter in another client within milliseconds (locks and semaphores, with
// latencies printed), a waiter's mark and a release in flight never miss each other, the
// listener notices when it hears nothing (through PgBouncer) or is turned off, and a handoff
// notifies only the waiting client's channel.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "support/fixtures.hpp"
#include "support/log_capture.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// `rounds` handoffs of "handoff" from a lease of `try_acquire()` to a waiter in `acquire()`
// (another client's): each released once the waiter has marked the row of `table` (it is then
// asleep on its watch). Returns the milliseconds from each release to the waiter's grant.
template <typename TryAcquire, typename Acquire>
std::vector<double> handoff_ms(int rounds, TryAcquire try_acquire, Acquire acquire, pg_session& raw,
                               const std::string& table) {
  std::vector<double> ms;
  for (int i = 0; i < rounds; ++i) {
    auto held = try_acquire();
    REQUIRE(held);
    std::atomic<steady::time_point::rep> got_at{0};
    std::int64_t token = 0;
    std::thread t([&] {
      auto l = acquire();
      got_at = steady::now().time_since_epoch().count();
      token = l.token();
      l.release();
    });
    REQUIRE(eventually([&] {
      return raw.value("SELECT waiters_until > now() FROM " + table + " WHERE name = 'handoff'") ==
             "t";
    }));
    std::this_thread::sleep_for(5ms);  // let the waiter reach its sleep: not synchronisation
    auto released = steady::now();
    held->release();
    t.join();
    CHECK(token > held->token());
    ms.push_back(std::chrono::duration<double, std::milli>(
                     steady::time_point(steady::duration(got_at.load())) - released)
                     .count());
  }
  return ms;
}

// The notifications `raw` has received so far, as (channel, payload), after waiting up to
// `wait` for the first one when none is there yet.
std::vector<std::pair<std::string, std::string>> notifications(pg_session& raw,
                                                               std::chrono::milliseconds wait) {
  std::vector<std::pair<std::string, std::string>> out;
  auto until = steady::now() + wait;
  do {
    PQconsumeInput(raw.get());
    while (PGnotify* n = PQnotifies(raw.get())) {
      out.emplace_back(n->relname, n->extra);
      PQfreemem(n);
    }
    if (!out.empty()) break;
    std::this_thread::sleep_for(5ms);
  } while (steady::now() < until);
  return out;
}

}  // namespace

TEST_SUITE("postgresql") {
  TEST_CASE(
      "inspect_watched marks a held lock so that its release notifies, and writes nothing "
      "for a free one") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
    auto mark_of = [&](const std::string& name) {
      return raw.value("SELECT waiters_until > now() FROM " + locks + " WHERE name = $1", {name});
    };
    CHECK_FALSE(b->inspect_watched("none", 10s, soon()));
    auto held = b->try_acquire(request("held", "h"), soon());
    REQUIRE(held.granted);
    auto free_row = b->try_acquire(request("free", "f"), soon());
    REQUIRE(free_row.granted);
    REQUIRE(b->release({"free", "f", free_row.granted->token}, soon()));
    CHECK(mark_of("held") == "f");
    auto r = b->inspect_watched("held", 10s, soon());
    REQUIRE(r);
    CHECK(r->held);
    CHECK(r->token == held.granted->token);
    CHECK(mark_of("held") == "t");
    auto f = b->inspect_watched("free", 10s, soon());
    REQUIRE(f);
    CHECK_FALSE(f->held);
    CHECK(mark_of("free") == "f");
    // A second look within half the mark writes nothing.
    auto xmin = raw.value("SELECT xmin FROM " + locks + " WHERE name = 'held'");
    CHECK(b->inspect_watched("held", 10s, soon())->held);
    CHECK(raw.value("SELECT xmin FROM " + locks + " WHERE name = 'held'") == xmin);
    // The holder's release notifies an observer in another process.
    auto o = db.options().backend;
    auto observer = sqlock::open_backend(db.url(), o);
    auto watch = observer->watch("held");
    REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
    CHECK(observer->inspect_watched("held", 10s, soon())->held);
    REQUIRE(b->release({"held", "h", held.granted->token}, soon()));
    CHECK(watch->wait_until(steady::now() + 2s) == sqlock::release_watch::wake::notified);
  }

  TEST_CASE("a release wakes a waiter in another client through NOTIFY within milliseconds") {
    postgresql_fixture db;
    sqlock::client holder(db.url(), db.options());
    sqlock::client waiter(db.url(), db.options());
    pg_session raw(db.direct_url());
    const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
    // The waiter's listener is up and has verified itself.
    (void)waiter.get_backend()->watch("warm-up");
    REQUIRE(eventually([&] { return waiter.get_backend()->wakes_other_processes(); }, 5s));
    auto ms = handoff_ms(
        30, [&] { return holder.try_acquire("handoff"); },
        [&] { return waiter.acquire("handoff"); }, raw, locks);
    double p50 = percentile(ms, 0.5), p99 = percentile(ms, 0.99);
    std::printf("NOTIFY handoff on loopback, 30 rounds: p50 %.2f ms, p99 %.2f ms\n", p50, p99);
    CHECK(p50 < 50);  // generous: without a wake-up the waiter would sleep up to 2 s
  }

  TEST_CASE(
      "a semaphore release wakes a waiter in another client through NOTIFY within "
      "milliseconds") {
    postgresql_fixture db;
    sqlock::client holder(db.url(), db.options());
    sqlock::client waiter(db.url(), db.options());
    pg_session raw(db.direct_url());
    const auto semaphores = raw.ident(db.schema()) + ".sqlock_semaphores";
    (void)waiter.get_backend()->watch("warm-up");
    REQUIRE(eventually([&] { return waiter.get_backend()->wakes_other_processes(); }, 5s));
    sqlock::semaphore_options o;
    o.limit = 2;
    o.count = 2;
    for (bool fair : {false, true}) {
      o.fair = fair;
      auto ms = handoff_ms(
          15, [&] { return holder.try_acquire_semaphore("handoff", o); },
          [&] { return waiter.acquire_semaphore("handoff", o); }, raw, semaphores);
      double p50 = percentile(ms, 0.5), p99 = percentile(ms, 0.99);
      std::printf(
          "semaphore NOTIFY handoff (%s) on loopback, 15 rounds: p50 %.2f ms, p99 %.2f ms\n",
          fair ? "fair" : "not fair", p50, p99);
      CHECK(p50 < 50);  // without a wake-up the waiter would sleep up to 1-2 s
    }
  }

  TEST_CASE("a semaphore waiter's mark and a release in flight never miss each other") {
    postgresql_fixture db;
    auto b = sqlock::open_backend(db.url(), db.options().backend);
    pg_session raw(db.direct_url());
    const auto schema = raw.ident(db.schema());
    auto held = b->try_acquire_semaphore(sem_request("s", "holder", 1), soon());
    REQUIRE(held.granted);

    SUBCASE("the release goes first: the waiter's mark waits for it and then sees the room") {
      // What the release statement does, held open: end the holder, share-lock the semaphore.
      raw.query("BEGIN");
      raw.query("UPDATE " + schema +
                ".sqlock_semaphore_holders SET expires_at = now() "
                "WHERE name = 's' AND nonce = 'holder'");
      raw.query("SELECT waiters_until FROM " + schema +
                ".sqlock_semaphores WHERE name = 's' "
                "FOR SHARE");
      std::optional<sqlock::acquire_result> got;
      std::thread t([&] {
        got = b->try_acquire_semaphore(sem_request("s", "waiter", 1, 1, 30s, true), soon());
      });
      std::this_thread::sleep_for(200ms);  // the attempt looks (holder live), then marks: blocked
      CHECK_FALSE(got);
      raw.query("COMMIT");
      t.join();
      REQUIRE(got);
      CHECK_FALSE(got->granted);
      // Not "sleep until the holder's expiry" (30 s): no release will wake it, so at once.
      CHECK(got->holder_expires_in == 1ms);
      CHECK(b->try_acquire_semaphore(sem_request("s", "waiter", 1, 1, 30s, true), soon()).granted);
    }

    SUBCASE("nobody waits: the release does not notify") {
      auto observer = sqlock::open_backend(db.url(), db.options().backend);
      auto watch = observer->watch("s");
      REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
      CHECK(b->release(holder_key("s", "holder", held.granted->token), soon()));
      CHECK(watch->wait_until(steady::now() + 300ms) == sqlock::release_watch::wake::timeout);
    }

    SUBCASE("the mark goes first: the release finds the row locked and notifies at once") {
      auto observer = sqlock::open_backend(db.url(), db.options().backend);
      auto watch = observer->watch("s");
      REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
      raw.query("BEGIN");
      raw.query("UPDATE " + schema +
                ".sqlock_semaphores SET waiters_until = now() + "
                "interval '10 seconds' WHERE name = 's'");
      std::atomic<bool> done{false};
      bool ended = false;
      std::thread t([&] {
        ended = b->release(holder_key("s", "holder", held.granted->token), soon());
        done = true;
      });
      CHECK(eventually([&] { return done.load(); }, 2s));  // it does not wait for the marker
      t.join();
      CHECK(ended);
      raw.query("COMMIT");
      CHECK(watch->wait_until(steady::now() + 2s) == sqlock::release_watch::wake::notified);
    }
  }

  TEST_CASE("through PgBouncer without listen_url the listener notices it hears nothing") {
    sqlock_test::pgbouncer_fixture db;
    log_capture logs;
    auto o = db.options();
    o.backend.listen_url.clear();
    o.log = logs.hook();
    sqlock::client a(db.url(), o);
    sqlock::client b(db.url(), o);
    (void)b.get_backend()->watch("x");
    CHECK(eventually([&] { return logs.has(sqlock::log_level::warn, "LISTEN"); }, 5s));
    CHECK_FALSE(b.get_backend()->wakes_other_processes());
    // Waiting still works, by backoff.
    auto held = a.try_acquire("job");
    REQUIRE(held);
    std::thread t([&] {
      std::this_thread::sleep_for(200ms);
      held->release();
    });
    auto got = b.try_acquire_for("job", 10s);
    t.join();
    CHECK(got);
  }

  TEST_CASE("notifications can be turned off by option, with a warning") {
    postgresql_fixture db;
    log_capture logs;
    auto o = db.options();
    o.backend.notifications = false;
    o.log = logs.hook();
    sqlock::client c(db.url(), o);
    (void)c.get_backend()->watch("x");
    CHECK_FALSE(c.get_backend()->wakes_other_processes());
    CHECK(logs.has(sqlock::log_level::warn, "notifications"));
  }

  TEST_CASE(
      "a handoff notifies only the waiting client's own channel (schema 5), so no other client "
      "wakes") {
    postgresql_fixture db;
    sqlock::client holder(db.url(), db.options());
    sqlock::client w1(db.url(), db.options()), w2(db.url(), db.options());
    for (auto* c : {&w1, &w2}) {
      (void)c->get_backend()->watch("warm-up");
      REQUIRE(eventually([&] { return c->get_backend()->wakes_other_processes(); }, 5s));
    }
    pg_session raw(db.direct_url());
    const auto waiters = raw.ident(db.schema()) + ".sqlock_lock_waiters";
    auto h = holder.try_acquire("q");
    REQUIRE(h);
    std::optional<sqlock::lease> l1, l2;
    std::thread t1([&] { l1 = w1.acquire("q"); });
    REQUIRE(eventually([&] { return raw.query("SELECT 1 FROM " + waiters).size() == 1; }, 20s));
    std::thread t2([&] { l2 = w2.acquire("q"); });
    REQUIRE(eventually([&] { return raw.query("SELECT 1 FROM " + waiters).size() == 2; }, 20s));
    // Each ticket names its client's own channel.
    auto tickets = raw.query("SELECT nonce, channel FROM " + waiters + " ORDER BY ticket");
    REQUIRE(tickets.size() == 2);
    const std::string n1 = tickets[0][0], c1 = tickets[0][1], n2 = tickets[1][0],
                      c2 = tickets[1][1];
    CHECK(c1.rfind("sqlock_h_", 0) == 0);
    CHECK(c2.rfind("sqlock_h_", 0) == 0);
    CHECK(c1 != c2);
    raw.query("LISTEN " + raw.ident(c1) + "; LISTEN " + raw.ident(c2));
    // The release hands the lock to the older ticket: one notification, on its channel only.
    h->release();
    t1.join();
    REQUIRE(l1);
    auto heard = notifications(raw, 5s);
    std::this_thread::sleep_for(100ms);  // anything else sent with it has arrived by now
    auto more = notifications(raw, 0ms);
    heard.insert(heard.end(), more.begin(), more.end());
    REQUIRE(heard.size() == 1);
    CHECK(heard[0].first == c1);
    CHECK(heard[0].second.rfind(n1 + " " + std::to_string(l1->token()) + " ", 0) == 0);
    // And on to the next one, on its own channel.
    l1->release();
    t2.join();
    REQUIRE(l2);
    heard = notifications(raw, 5s);
    REQUIRE(heard.size() == 1);
    CHECK(heard[0].first == c2);
    CHECK(heard[0].second.rfind(n2 + " ", 0) == 0);
    l2->release();
  }

}  // TEST_SUITE
