// SPDX-License-Identifier: Apache-2.0
// The conformance suite, a semaphore holder's life: force release and on_lost, keepalive and
// renewal, release and wake-up, shutdown, inspection and listing, purge. Run against every
// backend fixture.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/semaphores.hpp"
#include "support/threads.hpp"
#include "support/worker.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

TEST_CASE_TEMPLATE("semaphore: force_release_semaphore makes the holder lost, on_lost once", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto admin = make_client(db, "admin");
  std::atomic<int> calls{0};
  std::mutex mu;
  sqlock::lost_event seen;
  // 1.5 s leases, renewed every 500 ms: a renewal late by a few hundred ms on a loaded
  // sanitizer build must not lose the untouched holder (a fresh-clone CI run under ASan lost
  // it with 300 ms leases).
  auto o = sem(3, 1, 1500ms);
  o.on_lost = [&](const sqlock::lost_event& e) {
    std::lock_guard<std::mutex> g(mu);
    seen = e;
    ++calls;
  };
  auto l = holder->try_acquire_semaphore("s", o);
  REQUIRE(l);
  std::atomic<int> other_calls{0};
  auto o2 = sem(3, 2, 1500ms);
  o2.on_lost = [&](const sqlock::lost_event&) { ++other_calls; };
  auto l2 = admin->try_acquire_semaphore("s", o2);
  REQUIRE(l2);

  CHECK(admin->force_release_semaphore("s", l->token()) == 1);
  CHECK(admin->force_release_semaphore("s", l->token()) == 0);  // already ended
  CHECK(admin->force_release_semaphore("missing") == 0);
  CHECK(eventually([&] { return l->lost(); }, 5s));
  CHECK(eventually([&] { return calls >= 1; }, 5s));
  std::this_thread::sleep_for(500ms);  // more keepalive rounds must not call it again
  CHECK(calls == 1);
  {
    std::lock_guard<std::mutex> g(mu);
    CHECK(seen.name == "s");
    CHECK(seen.token == l->token());
    CHECK(seen.reason.find("force") != std::string::npos);
  }
  CHECK(l->state() == sqlock::lease_state::lost);
  CHECK_FALSE(l->renew());
  // The other holder is untouched.
  CHECK_FALSE(l2->lost());
  CHECK(other_calls == 0);
  auto rec = admin->inspect_semaphore("s");
  REQUIRE(rec);
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].token == l2->token());
  CHECK(rec->used == 2);

  // Token 0 ends every holder.
  auto l3 = holder->try_acquire_semaphore("s", sem(3, 1));
  REQUIRE(l3);
  CHECK(admin->force_release_semaphore("s") == 2);
  CHECK(eventually([&] { return l2->lost(); }, 5s));
  CHECK(eventually([&] { return other_calls == 1; }, 5s));
  CHECK(admin->inspect_semaphore("s")->used == 0);
  auto next = admin->try_acquire_semaphore("s", sem(3, 3));
  REQUIRE(next);
  CHECK(next->token() > l3->token());
}

TEST_CASE_TEMPLATE("semaphore: keepalive, renew and the safety deadline", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db);
  auto b = make_client(db);
  std::atomic<int> lost{0};
  // A 1.5 s ttl, renewed every 500 ms, watched for 3 s: six renewals, with room for an fsync
  // stall of several hundred ms (300 ms leases were lost to one in a CI run).
  auto o = sem(1, 1, 1500ms);
  o.on_lost = [&](const sqlock::lost_event&) { ++lost; };
  auto l = a->try_acquire_semaphore("s", o);
  REQUIRE(l);
  auto until = steady::now() + 3000ms;
  int checks = 0;
  while (steady::now() < until) {
    CHECK_FALSE(b->try_acquire_semaphore("s", sem(1)));
    CHECK(l->state() != sqlock::lease_state::lost);
    std::this_thread::sleep_for(50ms);  // pacing the observer, not synchronisation
    ++checks;
  }
  CHECK(checks > 10);
  CHECK(lost == 0);
  CHECK(bool(*l));
  auto rec = a->inspect_semaphore("s");
  REQUIRE(rec);
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].token == l->token());
  CHECK(rec->holders[0].expires_in > 0ms);
  CHECK(rec->holders[0].expires_in <= 1500ms + now_gap);
  l->release();
  CHECK(l->state() == sqlock::lease_state::released);

  // renew(ttl) by hand on a lease without keepalive.
  auto mo = sem(2, 1, 2s);
  mo.keepalive = false;
  auto m = a->try_acquire_semaphore("m", mo);
  REQUIRE(m);
  REQUIRE(m->renew(4s));
  CHECK(m->remaining() > 3s);
  CHECK(m->remaining() <= 4s);
  auto h = a->inspect_semaphore("m")->holders;
  REQUIRE(h.size() == 1);
  CHECK(h[0].expires_in > 3s);
  CHECK(h[0].expires_at == m->expires_at());
  REQUIRE(m->renew(1s));
  CHECK(m->remaining() <= 1s);
  // A renewal never shortens the row in the database: it keeps the 4 s, the holder believes
  // in 1 s.
  CHECK(a->inspect_semaphore("m")->holders.at(0).expires_in > 2s);
  CHECK(eventually([&] { return m->lost(); }, 5s));  // no keepalive: lost at its deadline
  CHECK_FALSE(m->renew());
  // The local deadline comes before the database's expiry; then its unit is free again.
  std::optional<sqlock::lease> after;
  CHECK(eventually([&] { return bool(after = b->try_acquire_semaphore("m", sem(2, 2))); }, 10s));
  REQUIRE(after);
  CHECK(after->token() > m->token());
}

TEST_CASE_TEMPLATE("semaphore: release frees units at once and wakes a waiter", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto h = a->try_acquire_semaphore("s", sem(1));
  REQUIRE(h);
  CHECK_FALSE(b->try_acquire_semaphore("s", sem(1)));
  h->release();
  auto again = b->try_acquire_semaphore("s", sem(1));  // no waiting, no retry
  REQUIRE(again);
  CHECK(again->token() > h->token());

  // A waiter (fair, so that its place in line is visible) gets the unit soon after a release.
  std::atomic<long long> granted_at_ms{-1};
  std::optional<sqlock::lease> got;
  auto start = steady::now();
  std::thread t([&] {
    try {
      got = a->try_acquire_semaphore_for("s", 30s, fair_sem(1));
      if (got) granted_at_ms = ms_since(start);
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    again->release();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*b, "s", "a"); }, 10s));
  auto released_ms = ms_since(start);
  again->release();
  t.join();
  REQUIRE(got);
  MESSAGE("the waiter was granted " << granted_at_ms - released_ms << " ms after the release");
  CHECK(granted_at_ms - released_ms < 2000);

  // And a non-fair waiter too.
  std::optional<sqlock::lease> got2;
  std::atomic<bool> started{false};
  std::thread t2([&] {
    started = true;
    try {
      got2 = b->try_acquire_semaphore_for("s", 30s, sem(1));
    } catch (const std::exception&) {
    }
  });
  REQUIRE(eventually([&] { return started.load(); }));
  std::this_thread::sleep_for(300ms);  // the waiter is blocked by now (nothing to poll)
  auto s2 = steady::now();
  got->release();
  t2.join();
  REQUIRE(got2);
  CHECK(ms_since(s2) < 3000);
}

TEST_CASE_TEMPLATE("semaphore: shutdown wakes a semaphore waiter and releases its units", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db);
  auto waiter = make_client(db, "waiter");
  auto admin = make_client(db);
  auto h = holder->try_acquire_semaphore("s", sem(2, 2));
  REQUIRE(h);
  auto mine = waiter->try_acquire_semaphore("t", sem(2, 1));
  REQUIRE(mine);
  std::atomic<int> code{-1};
  std::thread t([&] {
    try {
      (void)waiter->acquire_semaphore("s", fair_sem(2, 1));
      code = 100;
    } catch (const sqlock::error& e) {
      code = static_cast<int>(e.code());
    }
  });
  scope_guard cleanup{[&] {
    waiter->shutdown();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*admin, "s", "waiter"); }, 10s));
  auto start = steady::now();
  waiter->shutdown();
  t.join();
  CHECK(ms_since(start) < 3000);
  CHECK(code == static_cast<int>(errc::cancelled));
  CHECK(mine->state() == sqlock::lease_state::released);
  CHECK(admin->inspect_semaphore("t")->used == 0);
  CHECK(admin->inspect_semaphore("s")->waiters.empty());
  CHECK(code_of([&] { (void)waiter->try_acquire_semaphore("s", sem(2)); }) == errc::cancelled);
}

// --- inspection, listing, purge -------------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: inspect_semaphore and list_semaphores show holders and waiters", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "lister");
  auto o = make_client(db, "other");
  auto w = make_client(db, "queued");
  auto ma = sem(5, 2);
  ma.metadata = "m-a";
  auto a = c->try_acquire_semaphore("sem/a", ma);
  auto mb = sem(5, 1);
  mb.metadata = "m-b";
  auto a2 = o->try_acquire_semaphore("sem/a", mb);
  auto b = c->try_acquire_semaphore("sem/b", sem(2));
  auto x = c->try_acquire_semaphore("semx", sem(1));
  auto z = c->try_acquire_semaphore("other", sem(7, 3));
  REQUIRE((a && a2 && b && x && z));
  b->release();
  CHECK_FALSE(c->inspect_semaphore("nope"));
  CHECK_FALSE(c->inspect("sem/a"));  // not a lock

  // A queued waiter for 3 units (only 2 are free).
  std::thread t([&] {
    try {
      (void)w->try_acquire_semaphore_for("sem/a", 2500ms, fair_sem(5, 3));
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*c, "sem/a") == 1; }, 10s));
  auto rec = c->inspect_semaphore("sem/a");
  t.join();
  REQUIRE(rec);
  CHECK(rec->name == "sem/a");
  CHECK(rec->limit == 5);
  CHECK(rec->used == 3);
  REQUIRE(rec->holders.size() == 2);
  auto& h0 = rec->holders[0];
  auto& h1 = rec->holders[1];
  CHECK(h0.owner == "lister");
  CHECK(h0.token == a->token());
  CHECK(h0.count == 2);
  CHECK(h0.metadata == "m-a");
  CHECK(h0.expires_in > 25s);
  CHECK(h0.expires_in <= 30s);
  CHECK(h0.expires_at - h0.acquired_at == 30s);
  CHECK(h0.expires_at == a->expires_at());
  CHECK(h1.owner == "other");
  CHECK(h1.token == a2->token());
  CHECK(h1.count == 1);
  CHECK(h1.metadata == "m-b");
  REQUIRE(rec->waiters.size() == 1);
  CHECK(rec->waiters[0].owner == "queued");
  CHECK(rec->waiters[0].count == 3);
  CHECK(rec->waiters[0].ticket > a2->token());
  CHECK(rec->waiters[0].expires_in > 0ms);
  CHECK(rec->waiters[0].expires_in <= sqlock::fair_ticket_ttl + now_gap);
  CHECK(c->inspect_semaphore("sem/a")->waiters.empty());  // it gave up (timed out)

  auto free_b = c->inspect_semaphore("sem/b");
  REQUIRE(free_b);
  CHECK(free_b->used == 0);
  CHECK(free_b->limit == 2);
  CHECK(free_b->holders.empty());

  auto all = c->list_semaphores();
  REQUIRE(all.size() == 4);
  CHECK(all[0].name == "other");
  CHECK(all[1].name == "sem/a");
  CHECK(all[2].name == "sem/b");
  CHECK(all[3].name == "semx");
  CHECK(all[0].limit == 7);
  CHECK(all[0].used == 3);
  CHECK(all[1].used == 3);
  CHECK(all[1].holders.size() == 2);
  CHECK(c->list().empty());  // no lock rows

  sqlock::list_filter f;
  f.prefix = "sem/";
  auto sems = c->list_semaphores(f);
  REQUIRE(sems.size() == 2);
  CHECK(sems[0].name == "sem/a");
  CHECK(sems[1].name == "sem/b");
  f.show = sqlock::list_filter::which::held;
  auto held = c->list_semaphores(f);
  REQUIRE(held.size() == 1);
  CHECK(held[0].name == "sem/a");
  f.show = sqlock::list_filter::which::free;
  auto free = c->list_semaphores(f);
  REQUIRE(free.size() == 1);
  CHECK(free[0].name == "sem/b");
  CHECK(free[0].used == 0);
  sqlock::list_filter all_held;
  all_held.show = sqlock::list_filter::which::held;
  CHECK(c->list_semaphores(all_held).size() == 3);
  sqlock::list_filter lim;
  lim.limit = 3;
  auto first3 = c->list_semaphores(lim);
  REQUIRE(first3.size() == 3);
  CHECK(first3[2].name == "sem/b");
  sqlock::list_filter pct;
  pct.prefix = "sem%";  // a byte prefix, not a pattern
  CHECK(c->list_semaphores(pct).empty());
  sqlock::list_filter caps;
  caps.prefix = "SEM";
  CHECK(c->list_semaphores(caps).empty());
}

TEST_CASE_TEMPLATE("semaphore: purge removes idle semaphores and tokens stay monotonic", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  auto kept = c->try_acquire_semaphore("kept", sem(2));
  REQUIRE(kept);
  std::int64_t last = 0;
  for (int i = 0; i < 3; ++i) {
    auto l = c->try_acquire_semaphore("idle", sem(3, 1, 200ms));
    REQUIRE(l);
    last = l->token();
    l->release();
  }
  CHECK(c->purge(std::chrono::hours{1}) == 0);  // not idle for an hour yet
  CHECK(c->purge(0ms) == 1);
  CHECK_FALSE(c->inspect_semaphore("idle"));
  auto k = c->inspect_semaphore("kept");
  REQUIRE(k);
  CHECK(k->used == 1);
  CHECK(kept->renew());
  auto again = c->try_acquire_semaphore("idle", sem(1));  // a new limit is fine: a new semaphore
  REQUIRE(again);
  CHECK(again->token() > last);
  CHECK(again->token() > kept->token());
  CHECK(c->list_semaphores().size() == 2);
}

// --- election -------------------------------------------------------------------------------
