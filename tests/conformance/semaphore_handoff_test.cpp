// SPDX-License-Identifier: Apache-2.0
// The conformance suite, semaphore handoff (schema 6): a holder's release hands the units it
// frees to the oldest queued fair waiters that fit, in the release's own transaction; a head that
// does not fit blocks those behind it; a waiter that gives up never leaves units handed to
// nobody. Run against every backend fixture.

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/semaphores.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;

namespace {

/// A client that remembers the reason of its last `acquired` event ("handed over": a release
/// handed it the units, it made no attempt of its own for them).
template <class F>
struct watched_client {
  std::mutex mu;
  std::vector<std::string> how;
  std::unique_ptr<sqlock::client> c;

  watched_client(const F& db, const std::string& owner) {
    auto o = db.options();
    o.owner = owner;
    o.listeners.push_back([this](const sqlock::lock_event& e) {
      if (e.kind != sqlock::event_kind::acquired) return;
      std::lock_guard<std::mutex> lock(mu);
      how.push_back(e.reason);
    });
    c = std::make_unique<sqlock::client>(db.url(), o);
  }
  std::string last() {
    std::lock_guard<std::mutex> lock(mu);
    return how.empty() ? std::string() : how.back();
  }
};

std::set<std::string> holder_owners(sqlock::client& c, const std::string& name) {
  std::set<std::string> out;
  if (auto r = c.inspect_semaphore(name))
    for (auto& h : r->holders) out.insert(h.owner);
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE("semaphore handoff: a release hands its units to the queued fair waiter", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  watched_client<F> b(db, "b");
  const auto o = fair_sem(1);
  // A round is inconclusive when the waiter's poll was in flight as the release ran (that
  // attempt then takes the units handed to it: correct, but another path).
  bool handed = false;
  for (int round = 0; round < 5 && !handed; ++round) {
    auto held = a->try_acquire_semaphore("sh", o);
    REQUIRE(held);
    std::optional<sqlock::lease> got;
    std::thread t([&] { got = b.c->try_acquire_semaphore_for("sh", 60s, o); });
    scope_guard join{[&] {
      if (t.joinable()) t.join();
    }};
    REQUIRE(eventually([&] { return waiter_count(*a, "sh") == 1; }, 20s));
    std::this_thread::sleep_for(300ms);  // past the waiter's first quick polls
    const auto first = held->token();
    held->release();
    // The release itself made b the holder: no attempt of b's is needed for that. (Waited for:
    // on PostgreSQL a release whose statement misses its 100 ms window, as happens on a loaded
    // machine under sanitizers, completes in the background; see release() in locks.cpp.)
    std::set<std::string> owners;
    eventually([&] { return (owners = holder_owners(*a, "sh")) == std::set<std::string>{"b"}; },
               10s);
    t.join();
    REQUIRE(got);
    CHECK(got->token() > first);
    handed = b.last() == "handed over";
    if (handed) CHECK(owners == std::set<std::string>{"b"});
    got->release();
    if (!handed) MESSAGE("round " << round << ": a poll took the handed units");
  }
  CHECK(handed);
  auto rec = a->inspect_semaphore("sh");
  REQUIRE(rec);
  CHECK(rec->used == 0);
  CHECK(rec->waiters.empty());
}

TEST_CASE_TEMPLATE("semaphore handoff: one release of 2 units serves the two next waiters", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto w1 = make_client(db, "w1");
  auto w2 = make_client(db, "w2");
  auto held = a->try_acquire_semaphore("sh2", fair_sem(2, 2));
  REQUIRE(held);
  std::optional<sqlock::lease> g1, g2;
  std::thread t1([&] { g1 = w1->try_acquire_semaphore_for("sh2", 60s, fair_sem(2)); });
  scope_guard j1{[&] {
    if (t1.joinable()) t1.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*a, "sh2") == 1; }, 20s));
  std::thread t2([&] { g2 = w2->try_acquire_semaphore_for("sh2", 60s, fair_sem(2)); });
  scope_guard j2{[&] {
    if (t2.joinable()) t2.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*a, "sh2") == 2; }, 20s));
  held->release();
  // Both were handed a unit by that release (a poll of theirs could only take what it was
  // handed: nothing else frees a unit here). Waited for, as the release may complete in the
  // background (see the first test).
  CHECK(eventually(
      [&] {
        return holder_owners(*a, "sh2") == std::set<std::string>{"w1", "w2"};
      },
      10s));
  t1.join();
  t2.join();
  REQUIRE(g1);
  REQUIRE(g2);
  CHECK(g1->token() < g2->token());  // handed in ticket order
  auto rec = a->inspect_semaphore("sh2");
  REQUIRE(rec);
  CHECK(rec->used == 2);
  CHECK(rec->waiters.empty());
}

TEST_CASE_TEMPLATE("semaphore handoff: a head that does not fit blocks the waiters behind it", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto h = make_client(db, "h");
  auto big = make_client(db, "big");
  auto small = make_client(db, "small");
  auto h1 = h->try_acquire_semaphore("sh3", fair_sem(2));
  auto h2 = h->try_acquire_semaphore("sh3", fair_sem(2));
  REQUIRE(h1);
  REQUIRE(h2);
  std::optional<sqlock::lease> gb, gs;
  std::thread tb([&] { gb = big->try_acquire_semaphore_for("sh3", 60s, fair_sem(2, 2)); });
  scope_guard jb{[&] {
    if (tb.joinable()) tb.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*h, "sh3") == 1; }, 20s));
  std::thread ts([&] { gs = small->try_acquire_semaphore_for("sh3", 60s, fair_sem(2)); });
  scope_guard js{[&] {
    if (ts.joinable()) ts.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*h, "sh3") == 2; }, 20s));
  h1->release();
  // One unit is free, and the head wants two: nobody is handed anything, and the small waiter
  // behind it is not granted past it, by the release or by its own polls.
  CHECK(holder_owners(*h, "sh3") == std::set<std::string>{"h"});
  std::this_thread::sleep_for(1500ms);
  CHECK(holder_owners(*h, "sh3") == std::set<std::string>{"h"});
  CHECK(waiter_count(*h, "sh3") == 2);
  h2->release();
  // (Waited for: the release may complete in the background, see the first test. Had the small
  // waiter passed the head, big could never fit, and this would time out.)
  CHECK(eventually([&] { return holder_owners(*h, "sh3") == std::set<std::string>{"big"}; }, 10s));
  tb.join();
  REQUIRE(gb);
  gb->release();
  ts.join();
  REQUIRE(gs);
  CHECK(gs->token() > gb->token());
}

TEST_CASE_TEMPLATE("semaphore handoff: a waiter that gives up never leaves units handed to nobody",
                   F, SQLOCK_TEST_FIXTURES) {
  // The waiter's deadline and the holder's release race: whichever wins, once both are done the
  // semaphore is either the waiter's (it got the lease) or free, never held by a departed nonce.
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  const auto o = fair_sem(1);
  int got_it = 0;
  for (int round = 0; round < 12; ++round) {
    auto held = a->try_acquire_semaphore("sh4", o);
    REQUIRE(held);
    std::optional<sqlock::lease> got;
    const auto wait = 150ms + 10ms * round;
    std::thread t([&] { got = b->try_acquire_semaphore_for("sh4", wait, o); });
    scope_guard join{[&] {
      if (t.joinable()) t.join();
    }};
    // From 20 ms before the waiter's deadline to 20 ms after it.
    std::this_thread::sleep_for(wait - 20ms + 10ms * (round % 5));
    held->release();
    t.join();
    if (got) {
      ++got_it;
      CHECK(holder_owners(*a, "sh4") == std::set<std::string>{"b"});
      got->release();
    }
    // Free within 10 s (the releases may complete in the background), well before the 30 s
    // ttl that would free units left to a departed nonce.
    CAPTURE(round);
    CHECK(eventually(
        [&] {
          auto rec = a->inspect_semaphore("sh4");
          return rec && rec->used == 0 && rec->waiters.empty();
        },
        10s));
  }
  MESSAGE("the waiter got the semaphore in " << got_it << " of 12 rounds");
}
