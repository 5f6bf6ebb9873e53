// SPDX-License-Identifier: Apache-2.0
// The conformance suite, faults injected at the backend seam (tests/support/faulty_backend.hpp;
// the fault suite of tests/fault/ injects them on the wire instead), on every backend: in-doubt
// acquires are cleaned up by nonce, a stuck renewal cannot delay the loss past the safety deadline,
// transient failures make a lease at risk and it recovers.

#include "support/faulty_backend.hpp"

#include <atomic>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock_test::code_of;

namespace {
template <class F>
std::shared_ptr<sqlock_test::faulty_backend> faulty(const F& db) {
  return std::make_shared<sqlock_test::faulty_backend>(
      sqlock::open_backend(db.url(), db.options().backend));
}

// A client whose backend reports every acquire in doubt (after the grant happened), and a plain
// client of the same database to look at what it left.
template <class F>
struct in_doubt_clients {
  explicit in_doubt_clients(const F& db)
      : fb(faulty(db)), c(fb, db.options()), other(db.url(), db.options()) {
    fb->acquire_in_doubt = true;
  }
  std::shared_ptr<sqlock_test::faulty_backend> fb;
  sqlock::client c;
  sqlock::client other;
};
}  // namespace

TEST_CASE_TEMPLATE("an in-doubt acquire is cleaned up by its nonce and reported unavailable", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  in_doubt_clients<F> t(db);
  CHECK(code_of([&] { (void)t.c.try_acquire("job"); }) == errc::unavailable);
  auto rec = t.other.inspect("job");
  REQUIRE(rec);            // the grant did happen...
  CHECK_FALSE(rec->held);  // ...and was ended, so nobody waits for a lease nobody holds
  CHECK(t.other.try_acquire("job"));
}

TEST_CASE_TEMPLATE("an in-doubt acquire whose cleanup fails is reported in_doubt", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  in_doubt_clients<F> t(db);
  t.fb->abandon_fails = true;
  sqlock::lock_options o;
  o.ttl = 300ms;
  CHECK(code_of([&] { (void)t.c.try_acquire("job", o); }) == errc::in_doubt);
  // The orphaned row simply expires: another client gets the lock within the ttl.
  auto got = t.other.try_acquire_for("job", 3s);
  CHECK(got);
}

TEST_CASE_TEMPLATE("a stuck renewal cannot delay the loss past the safety deadline", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto fb = faulty(db);
  sqlock::client c(fb, db.options());
  std::atomic<long long> lost_at_ns{0};
  sqlock::lock_options o;
  o.ttl = 600ms;  // safety deadline = sent + 540 ms
  o.on_lost = [&](const sqlock::lost_event&) {
    lost_at_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  };
  auto l = c.try_acquire("job", o);
  REQUIRE(l);
  // Let at least one renewal succeed, then stall every later one.
  int before = fb->renew_calls;
  CHECK(sqlock_test::eventually([&] { return fb->renew_calls > before; }));
  auto stalled_from = std::chrono::steady_clock::now();
  fb->renew_stalls = true;
  CHECK(sqlock_test::eventually([&] { return lost_at_ns.load() != 0; }, 5s));
  auto lost_at = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(lost_at_ns.load()));
  // The last successful renewal was sent before the stall began, so its safety deadline is at
  // most 540 ms after `stalled_from`; the timer must fire by then plus a generous bound.
  CHECK(lost_at - stalled_from <= 540ms + 400ms);
  CHECK(l->lost());
  CHECK(l->remaining() == 0ms);
  fb->renew_stalls = false;
}

TEST_CASE_TEMPLATE("a transient renewal failure makes the lease at risk until it recovers", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto fb = faulty(db);
  sqlock::client c(fb, db.options());
  sqlock::lock_options o;
  o.ttl = 3s;  // plenty of time between failing and the safety deadline
  auto l = c.try_acquire("job", o);
  REQUIRE(l);
  fb->renew_fails = true;
  CHECK(code_of([&] { (void)l->renew(); }) == errc::unavailable);
  CHECK(l->state() == sqlock::lease_state::at_risk);
  CHECK(bool(*l));  // at risk is still held
  fb->renew_fails = false;
  CHECK(sqlock_test::eventually([&] { return l->state() == sqlock::lease_state::held; }, 5s));
  CHECK(l->renew());
  CHECK_FALSE(l->lost());
}

// A wait that meets a database in crash recovery: every database call of a wait (the schema
// check included, which once ran before the wait loop and so failed the wait at once) is
// retried until the caller's deadline.
TEST_CASE_TEMPLATE("a wait rides out a database that is starting up, until its own deadline", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto fb = faulty(db);
  sqlock::client c(fb, db.options());
  fb->starting_up = 4;  // the schema check fails first, then attempts
  auto l = c.try_acquire_for("job", 30s);
  CHECK(l);
  CHECK(fb->starting_up.load() == 0);

  // A try does not wait: it reports the outage at once.
  fb->starting_up = 1;
  CHECK(code_of([&] { (void)c.try_acquire("other"); }) == errc::unavailable);

  // A database still down at the deadline is reported as such, not as "timed out".
  fb->starting_up = 1 << 30;
  auto start = std::chrono::steady_clock::now();
  CHECK(code_of([&] { (void)c.try_acquire_for("other", 300ms); }) == errc::unavailable);
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);
  fb->starting_up = 0;
}

TEST_CASE_TEMPLATE(
    "after a failover (a new server epoch) a held lease is at risk until a renewal on the new "
    "server confirms it",
    F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto fb = faulty(db);
  fb->epoch = 1;
  sqlock::client c(fb, db.options());
  sqlock::lock_options o;
  o.ttl = 30000ms;
  auto lease = c.try_acquire("job", o);
  REQUIRE(lease);
  CHECK(lease->state() == sqlock::lease_state::held);

  // The failover: connections reach another server. The holder is told at once.
  fb->renew_epoch = 1;  // renewals still run on a connection to the old server
  fb->epoch = 2;
  CHECK(lease->state() == sqlock::lease_state::at_risk);
  CHECK(*lease);  // at risk is not lost: the safety deadline still holds
  // A renewal through the old server confirms nothing on the new one, and extends nothing:
  // the safety deadline stays where the last confirmed renewal put it.
  const auto left = lease->remaining();
  std::this_thread::sleep_for(50ms);
  CHECK(code_of([&] { (void)lease->renew(); }) == errc::unavailable);
  CHECK(lease->state() == sqlock::lease_state::at_risk);
  CHECK(lease->remaining() < left);
  // One on the new server does.
  fb->renew_epoch = 2;
  const auto before = lease->remaining();  // 50 ms less than at the grant, at least
  CHECK(lease->renew());
  CHECK(lease->state() == sqlock::lease_state::held);
  CHECK(lease->remaining() > before);
  // A later renewal that still reaches the old server does not make it held again either.
  fb->renew_epoch = 1;
  CHECK(code_of([&] { (void)lease->renew(); }) == errc::unavailable);
  fb->renew_epoch = 2;

  // The keepalive notices a new epoch by itself (it looks every second) and renews at once,
  // long before the lease's own renewal time (ttl/3 = 10 s after the last).
  const int calls = fb->renew_calls;
  fb->renew_epoch = 3;
  fb->epoch = 3;
  CHECK(lease->state() == sqlock::lease_state::at_risk);
  CHECK(
      sqlock_test::eventually([&] { return lease->state() == sqlock::lease_state::held; }, 5000ms));
  CHECK(fb->renew_calls > calls);
}
