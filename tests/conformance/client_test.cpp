// SPDX-License-Identifier: Apache-2.0
// The conformance suite, the client around the locks: bad input, shutdown, leases that outlive
// their client, inspection and listing by the database clock, purge. The behaviours of
// docs/design.md sections 1-4 and 6, run against every backend fixture.

#include <atomic>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

TEST_CASE_TEMPLATE("bad input is a typed error and changes nothing", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  CHECK(code_of([&] { (void)c->try_acquire(""); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire(std::string(256, 'x')); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire(std::string("a\0b", 3)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire("\xff\xfe"); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire("\xc0\xaf"); }) == errc::invalid_argument);  // overlong
  CHECK(code_of([&] { (void)c->try_acquire("job", ttl(0ms)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire("job", ttl(-5s)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire("job", ttl(99ms)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire("job", ttl(std::chrono::hours{24 * 8})); }) ==
        errc::invalid_argument);
  sqlock::lock_options big;
  big.metadata = std::string(sqlock::max_metadata_bytes + 1, 'm');
  CHECK(code_of([&] { (void)c->try_acquire("job", big); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire_for("job", -1ms); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->purge(-1ms); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->inspect(""); }) == errc::invalid_argument);
  CHECK(c->list().empty());  // nothing was written

  // The limits themselves are accepted, and names are stored byte-exact.
  std::string longest(sqlock::max_name_bytes, 'n');
  sqlock::lock_options edge;
  edge.ttl = sqlock::min_ttl;
  edge.metadata = std::string(sqlock::max_metadata_bytes, 'm');
  edge.keepalive = false;
  auto l = c->try_acquire(longest, edge);
  REQUIRE(l);
  auto rec = c->inspect(longest);
  REQUIRE(rec);
  CHECK(rec->name == longest);
  CHECK(rec->metadata == edge.metadata);
  std::string unicode = "caf\xc3\xa9/\xe2\x9c\x93";
  auto u = c->try_acquire(unicode);
  REQUIRE(u);
  CHECK(c->inspect(unicode)->name == unicode);
  CHECK_FALSE(c->inspect("cafe\xcc\x81/\xe2\x9c\x93"));  // another normalisation: another name
  auto l2 = c->try_acquire("job", ttl(sqlock::max_ttl));
  CHECK(l2);
}

TEST_CASE_TEMPLATE("shutdown wakes a waiter with cancelled and releases the client's leases", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db);
  auto waiter = make_client(db);
  auto other = make_client(db);
  auto held = holder->try_acquire("job");
  REQUIRE(held);
  auto mine = waiter->try_acquire("mine");
  REQUIRE(mine);
  std::atomic<int> code{-1};
  std::thread t([&] {
    try {
      (void)waiter->acquire("job");
      code = 100;
    } catch (const sqlock::error& e) {
      code = static_cast<int>(e.code());
    }
  });
  // Wait until the waiter has actually been refused at least once (it then sleeps).
  std::this_thread::sleep_for(200ms);
  auto start = std::chrono::steady_clock::now();
  waiter->shutdown();
  t.join();
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(code == static_cast<int>(errc::cancelled));
  CHECK(mine->state() == sqlock::lease_state::released);
  CHECK_FALSE(other->inspect("mine")->held);  // released in the database too
  CHECK(code_of([&] { (void)waiter->try_acquire("x"); }) == errc::cancelled);
  waiter->shutdown();  // idempotent
}

TEST_CASE_TEMPLATE("a lease may outlive its client", F, SQLOCK_TEST_FIXTURES) {
  F db;
  std::optional<sqlock::lease> l;
  {
    auto c = make_client(db);
    l = c->try_acquire("job");
    REQUIRE(l);
  }
  CHECK(l->state() == sqlock::lease_state::released);
  CHECK_FALSE(l->renew());
  l->release();
  auto c = make_client(db);
  CHECK(c->try_acquire("job"));
}

TEST_CASE_TEMPLATE("inspect and list show rows by the database clock with filters", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "lister");
  sqlock::lock_options meta;
  meta.metadata = "nightly report";
  auto a = c->try_acquire("jobs/a", meta);
  auto b = c->try_acquire("jobs/b");
  auto x = c->try_acquire("jobsx");
  auto z = c->try_acquire("other");
  REQUIRE((a && b && x && z));
  b->release();
  CHECK_FALSE(c->inspect("nope"));
  auto rec = c->inspect("jobs/a");
  REQUIRE(rec);
  CHECK(rec->owner == "lister");
  CHECK(rec->metadata == "nightly report");
  CHECK(rec->held);
  CHECK(rec->expires_in > 25s);
  CHECK(rec->expires_in <= 30s);
  CHECK(rec->expires_at - rec->acquired_at == 30s);
  CHECK(rec->token == a->token());

  auto all = c->list();
  REQUIRE(all.size() == 4);
  CHECK(all[0].name == "jobs/a");
  CHECK(all[1].name == "jobs/b");
  CHECK(all[2].name == "jobsx");
  CHECK(all[3].name == "other");

  sqlock::list_filter f;
  f.prefix = "jobs/";
  auto jobs = c->list(f);
  REQUIRE(jobs.size() == 2);
  f.show = sqlock::list_filter::which::held;
  auto held = c->list(f);
  REQUIRE(held.size() == 1);
  CHECK(held[0].name == "jobs/a");
  f.show = sqlock::list_filter::which::free;
  auto free = c->list(f);
  REQUIRE(free.size() == 1);
  CHECK(free[0].name == "jobs/b");
  CHECK_FALSE(free[0].held);
  CHECK(free[0].expires_in <= 0ms);
  sqlock::list_filter lim;
  lim.limit = 3;
  CHECK(c->list(lim).size() == 3);
  sqlock::list_filter pct;
  pct.prefix = "job%";  // a byte prefix, not a pattern
  CHECK(c->list(pct).empty());
  sqlock::list_filter caps;
  caps.prefix = "JOBS";
  CHECK(c->list(caps).empty());
}

TEST_CASE_TEMPLATE("purge deletes only rows free for long enough", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  auto held = c->try_acquire("held");
  REQUIRE(held);
  for (int i = 0; i < 1200; ++i) {  // more than one purge batch
    auto l = c->try_acquire("free-" + std::to_string(i), ttl(100ms, false));
    REQUIRE(l);
    l->release();
  }
  CHECK(c->purge(std::chrono::hours{1}) == 0);  // not free for an hour yet
  CHECK(c->purge(0ms) == 1200);
  auto left = c->list();
  REQUIRE(left.size() == 1);
  CHECK(left[0].name == "held");
  CHECK(held->renew());
}
