// SPDX-License-Identifier: Apache-2.0
// The conformance suite, sqlock::mutex with the standard lock adapters, and the event
// listeners: run against every backend fixture.

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/tsan.hpp"

using namespace std::chrono_literals;

TEST_CASE_TEMPLATE("sqlock::mutex works with unique_lock, lock_guard and scoped_lock", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  sqlock::client a(db.url(), db.options());
  sqlock::client b(db.url(), db.options());
  sqlock::mutex ma(a, "seat");
  sqlock::mutex mb(b, "seat");
  {
    std::unique_lock<sqlock::mutex> lock(ma);
    CHECK(lock.owns_lock());
    CHECK(ma.token() > 0);
    std::unique_lock<sqlock::mutex> other(mb, std::try_to_lock);
    CHECK_FALSE(other.owns_lock());
    std::unique_lock<sqlock::mutex> timed(mb, 200ms);
    CHECK_FALSE(timed.owns_lock());
    CHECK_FALSE(mb.try_lock_until(std::chrono::steady_clock::now() + 50ms));
    CHECK_FALSE(mb.try_lock_until(std::chrono::system_clock::now() + 50ms));
  }
  std::int64_t first = 0;
  {
    std::lock_guard<sqlock::mutex> guard(mb);
    first = mb.token();
    CHECK(mb.held() != nullptr);
  }
  CHECK(mb.held() == nullptr);
  sqlock::mutex other_name(a, "printer");
  {
    std::scoped_lock both(ma, other_name);  // std::lock's deadlock avoidance over two names
    CHECK(ma.token() > first);
    CHECK(other_name.token() > 0);
  }
  CHECK(a.inspect("seat")->held == false);
  CHECK(a.inspect("printer")->held == false);
}

TEST_CASE_TEMPLATE("a mutex locked twice by its owner is a usage error, token unlocked too", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  sqlock::client c(db.url(), db.options());
  sqlock::mutex m(c, "seat");
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const sqlock::error& e) {
      return e.code();
    }
    return sqlock::errc::internal;
  };
  CHECK(code_of([&] { (void)m.token(); }) == sqlock::errc::usage);
  m.lock();
  CHECK(code_of([&] { m.lock(); }) == sqlock::errc::usage);
  CHECK(code_of([&] { (void)m.try_lock(); }) == sqlock::errc::usage);
  m.unlock();
  m.unlock();  // never throws, idempotent
  CHECK(m.try_lock());
}

TEST_CASE_TEMPLATE("patient and impatient threads share one seat through mutexes", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  sqlock::client c(db.url(), db.options());
  std::atomic<int> inside{0}, overlaps{0}, played{0}, left{0};
  int seat_user = -1;  // protected only by the distributed lock
  std::vector<std::thread> children;
  for (int i = 0; i < 6; ++i) {
    children.emplace_back([&, i] {
      sqlock::mutex seat(c, "computer");
      bool patient = i % 2 == 0;
      std::unique_lock<sqlock::mutex> lock(seat, std::defer_lock);
      if (patient)
        lock.lock();
      else if (!lock.try_lock()) {
        ++left;
        return;
      }
      SQLOCK_TEST_HAPPENS_AFTER(&seat_user);
      if (++inside != 1) ++overlaps;
      seat_user = i;
      std::this_thread::sleep_for(20ms);
      if (seat_user != i) ++overlaps;
      ++played;
      --inside;
      SQLOCK_TEST_HAPPENS_BEFORE(&seat_user);
    });
  }
  for (auto& t : children) t.join();
  CHECK(overlaps == 0);
  CHECK(played >= 3);  // every patient child played
  CHECK(played + left == 6);
}

TEST_CASE_TEMPLATE("listeners hear attempts, grants, refusals, renewals, losses and releases", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  std::mutex mu;
  std::vector<sqlock::lock_event> seen;
  std::atomic<int> thrown{0};
  auto opts = db.options();
  opts.listeners.push_back([&](const sqlock::lock_event& e) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(e);
  });
  opts.listeners.push_back([&](const sqlock::lock_event&) {
    ++thrown;
    throw std::runtime_error("a broken listener must not break sqlock");
  });
  sqlock::client c(db.url(), opts);
  sqlock::client other(db.url(), db.options());
  auto count = [&](sqlock::event_kind k) {
    std::lock_guard<std::mutex> lock(mu);
    return std::count_if(seen.begin(), seen.end(), [&](auto& e) { return e.kind == k; });
  };
  auto last = [&](sqlock::event_kind k) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = seen.rbegin(); it != seen.rend(); ++it)
      if (it->kind == k) return *it;
    return sqlock::lock_event{};
  };

  sqlock::lock_options o;
  o.ttl = 900ms;  // renewed every 300 ms; room for a late renewal on a loaded machine
  auto l = c.try_acquire("job", o);
  REQUIRE(l);
  CHECK(count(sqlock::event_kind::attempt) == 1);
  CHECK(count(sqlock::event_kind::acquired) == 1);
  CHECK(last(sqlock::event_kind::acquired).token == l->token());
  CHECK(sqlock_test::eventually([&] { return count(sqlock::event_kind::renewed) >= 2; }));
  CHECK(last(sqlock::event_kind::renewed).name == "job");

  auto held = other.try_acquire("busy");
  REQUIRE(held);
  CHECK_FALSE(c.try_acquire("busy"));
  CHECK(last(sqlock::event_kind::not_acquired).reason == "held");
  CHECK(count(sqlock::event_kind::waiting) == 0);  // a plain try never waits
  CHECK_FALSE(c.try_acquire_for("busy", 100ms));
  CHECK(last(sqlock::event_kind::not_acquired).reason == "timed out");
  CHECK(last(sqlock::event_kind::not_acquired).elapsed >= 100ms);
  // A wait is a pair of `waiting` events, the second after the call's outcome.
  {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> tail;
    for (auto& e : seen)
      if (e.kind == sqlock::event_kind::waiting || e.kind == sqlock::event_kind::not_acquired)
        tail.push_back(sqlock::to_string(e.kind) + std::string(":") + e.reason);
    CHECK(tail == std::vector<std::string>{"not_acquired:held", "waiting:started",
                                           "not_acquired:timed out", "waiting:ended"});
  }
  CHECK(last(sqlock::event_kind::waiting).elapsed <=
        last(sqlock::event_kind::not_acquired).elapsed);

  std::this_thread::sleep_for(120ms);
  l->release();
  CHECK(count(sqlock::event_kind::released) == 1);
  CHECK(last(sqlock::event_kind::released).elapsed >= 100ms);

  auto doomed = c.try_acquire("doomed", o);
  REQUIRE(doomed);
  CHECK(other.force_release("doomed"));
  CHECK(sqlock_test::eventually([&] { return count(sqlock::event_kind::lost) == 1; }));
  CHECK(last(sqlock::event_kind::lost).reason == "force released");
  CHECK(last(sqlock::event_kind::lost).token == doomed->token());
  CHECK(thrown > 5);
}

TEST_CASE_TEMPLATE("a listener may call back into the lease it hears about", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  std::atomic<int> nested{0};
  std::optional<sqlock::lease> l;
  auto opts = db.options();
  opts.listeners.push_back([&](const sqlock::lock_event& e) {
    // Events are emitted holding no sqlock lock: renewing or releasing here must not deadlock.
    if (e.kind == sqlock::event_kind::renewed && nested++ == 0) CHECK(l->renew());
    if (e.kind == sqlock::event_kind::released) CHECK(l->state() == sqlock::lease_state::released);
  });
  sqlock::client c(db.url(), opts);
  sqlock::lock_options o;
  o.ttl = 2s;
  o.keepalive = false;
  l = c.try_acquire("job", o);
  REQUIRE(l);
  CHECK(l->renew());
  CHECK(nested == 2);  // the user's renewal, then the listener's own
  l->release();
  CHECK_FALSE(c.inspect("job")->held);
}
