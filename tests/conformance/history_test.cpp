// SPDX-License-Identifier: Apache-2.0
// The conformance suite, the history of leases (schema 10): off by default; once enabled, each
// way a lease ends is recorded by the statement that ends it (released, taken over, expired,
// force-released, lost, and a release's handoff), for lock rows and semaphore holders alike;
// disabling stops it; `since` and purge_history; and under contention the history never
// disagrees with the grants (every token once, per name no two leases overlapping). Run
// against every backend fixture.

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/backend.hpp>
#include <sqlock/sqlock.hpp>

#include "support/errors.hpp"
#include "support/faulty_backend.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock::lease_end;
using namespace sqlock_test;

namespace {

sqlock::history_filter of(std::string name) {
  sqlock::history_filter f;
  f.name = std::move(name);
  return f;
}

// The record of `token` in `h`, or nothing.
std::optional<sqlock::history_record> find(const std::vector<sqlock::history_record>& h,
                                           std::int64_t token) {
  for (const auto& r : h)
    if (r.token == token) return r;
  return std::nullopt;
}

// A lock lease of `t` that is not renewed: it lapses by itself.
sqlock::lock_options lapsing(std::chrono::milliseconds t = 200ms) { return ttl(t, false); }

bool lapsed(sqlock::client& c, const std::string& name) {
  auto r = c.inspect(name);
  return r && !r->held;
}

}  // namespace

TEST_CASE_TEMPLATE("history: off by default, nothing is recorded", F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto c = make_client(db, "a");
  CHECK_FALSE(c->history_enabled());
  auto first = c->try_acquire("job");
  REQUIRE(first);
  const auto t1 = first->token();
  first->release();
  auto second = c->try_acquire("job");
  REQUIRE(second);
  const auto t2 = second->token();
  second->release();
  auto h = c->history(of("job"));
  // Only the current row's lease, read from the row (lapsed, not recorded: "expired").
  REQUIRE(h.size() == 1);
  CHECK(h[0].token == t2);
  CHECK(h[0].ended_how == lease_end::expired);
  CHECK_FALSE(find(h, t1));
}

TEST_CASE_TEMPLATE("history: a released lease is recorded as released, with who and when", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  CHECK_FALSE(a->enable_history());
  CHECK(b->history_enabled());  // one switch for the database, seen by every client
  auto o = ttl(30s);
  o.metadata = "batch 7";
  auto held = a->try_acquire("job", o);
  REQUIRE(held);
  const auto t1 = held->token();
  auto h = b->history(of("job"));
  REQUIRE(h.size() == 1);
  CHECK(h[0].ended_how == lease_end::live);  // live leases come from the row
  held->release();
  auto next = b->try_acquire("job");
  REQUIRE(next);
  h = b->history(of("job"));
  REQUIRE(h.size() == 2);
  CHECK(h[0].token == t1);
  CHECK(h[0].kind == sqlock::lease_kind::lock);
  CHECK(h[0].owner == "a");
  CHECK(h[0].metadata == "batch 7");
  CHECK(h[0].ended_how == lease_end::released);
  CHECK(h[0].granted_at <= h[0].ended_at);
  CHECK(h[0].ended_at <= h[1].granted_at);
  CHECK(h[1].token == next->token());
  CHECK(h[1].owner == "b");
  CHECK(h[1].ended_how == lease_end::live);
}

TEST_CASE_TEMPLATE("history: a lapsed lease taken over is recorded as taken over, at its expiry", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  a->enable_history();
  auto held = a->try_acquire("job", lapsing());
  REQUIRE(held);
  const auto t1 = held->token();
  const auto expiry = held->expires_at();
  REQUIRE(eventually([&] { return lapsed(*b, "job"); }));
  auto next = b->try_acquire("job");
  REQUIRE(next);
  auto h = b->history(of("job"));
  auto r = find(h, t1);
  REQUIRE(r);
  CHECK(r->ended_how == lease_end::taken_over);
  CHECK(r->ended_at == expiry);
  CHECK(r->ended_at <= find(h, next->token())->granted_at);
}

TEST_CASE_TEMPLATE("history: a lapsed lease whose row is purged is recorded as expired", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  a->enable_history();
  auto held = a->try_acquire("job", lapsing());
  REQUIRE(held);
  const auto t1 = held->token();
  REQUIRE(eventually([&] { return lapsed(*a, "job"); }));
  CHECK(a->purge(0ms) >= 1);
  CHECK_FALSE(a->inspect("job"));
  auto h = a->history(of("job"));
  REQUIRE(h.size() == 1);
  CHECK(h[0].token == t1);
  CHECK(h[0].ended_how == lease_end::expired);
  CHECK(h[0].ended_at == held->expires_at());
}

TEST_CASE_TEMPLATE("history: a force release is recorded as force-released, not as taken over", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto admin = make_client(db, "admin");
  admin->enable_history();
  auto held = a->try_acquire("job", ttl(30s, false));
  REQUIRE(held);
  const auto t1 = held->token();
  REQUIRE(admin->force_release("job"));
  auto next = admin->try_acquire("job");  // a later change of the row keeps the first record
  REQUIRE(next);
  auto r = find(admin->history(of("job")), t1);
  REQUIRE(r);
  CHECK(r->ended_how == lease_end::force_released);
  CHECK(r->owner == "a");
}

TEST_CASE_TEMPLATE("history: an in-doubt acquire cleaned up by the client is recorded as lost", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto fb = std::make_shared<faulty_backend>(sqlock::open_backend(db.url(), db.options().backend));
  sqlock::client c(fb, db.options());
  auto other = make_client(db, "other");
  other->enable_history();
  fb->acquire_in_doubt = true;
  CHECK(code_of([&] { (void)c.try_acquire("job"); }) == errc::unavailable);
  auto h = other->history(of("job"));
  REQUIRE(h.size() == 1);
  CHECK(h[0].ended_how == lease_end::lost);
  CHECK(h[0].owner == c.owner());
}

TEST_CASE_TEMPLATE(
    "history: a backend's abandon records lost, a release retried by abandon "
    "records released",
    F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto c = make_client(db);
  c->enable_history();
  auto be = c->get_backend();
  auto g1 = be->try_acquire(request("lk", "n1"), soon());
  REQUIRE(g1.granted);
  REQUIRE(be->abandon({"lk", "n1", 0, sqlock::lease_kind::lock}, soon()));
  auto g2 = be->try_acquire(request("lk", "n2"), soon());
  REQUIRE(g2.granted);
  REQUIRE(be->abandon({"lk", "n2", g2.granted->token, sqlock::lease_kind::lock}, soon()));
  auto s1 = be->try_acquire_semaphore(sem_request("sm", "m1", 2), soon());
  REQUIRE(s1.granted);
  REQUIRE(be->abandon(holder_key("sm", "m1", 0), soon()));
  auto h = c->history(of("lk"));
  REQUIRE(find(h, g1.granted->token));
  CHECK(find(h, g1.granted->token)->ended_how == lease_end::lost);
  REQUIRE(find(h, g2.granted->token));
  CHECK(find(h, g2.granted->token)->ended_how == lease_end::released);
  auto hs = c->history(of("sm"));
  REQUIRE(find(hs, s1.granted->token));
  CHECK(find(hs, s1.granted->token)->ended_how == lease_end::lost);
  CHECK(find(hs, s1.granted->token)->kind == sqlock::lease_kind::semaphore);
}

TEST_CASE_TEMPLATE(
    "history: a release that hands the lock to a queued waiter records the old "
    "lease as released",
    F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  a->enable_history();
  auto fair = ttl(30s);
  fair.fair = true;
  auto held = a->try_acquire("q", fair);
  REQUIRE(held);
  const auto t1 = held->token();
  std::optional<sqlock::lease> got;
  std::thread t([&] { got = b->try_acquire_for("q", 60s, fair); });
  REQUIRE(eventually(
      [&] {
        auto r = a->inspect("q");
        return r && r->queued == 1;
      },
      20s));
  held->release();
  t.join();
  REQUIRE(got);
  auto h = a->history(of("q"));
  REQUIRE(h.size() == 2);
  CHECK(h[0].token == t1);
  CHECK(h[0].ended_how == lease_end::released);
  CHECK(h[1].token == got->token());
  CHECK(h[1].owner == "b");
  CHECK(h[1].ended_how == lease_end::live);
  CHECK(h[0].ended_at <= h[1].granted_at);
}

TEST_CASE_TEMPLATE(
    "history: semaphore holders are recorded released, force-released and "
    "expired",
    F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto c = make_client(db, "a");
  c->enable_history();
  sqlock::semaphore_options o;
  o.limit = 3;
  o.ttl = 30s;
  o.keepalive = false;
  auto r1 = c->try_acquire_semaphore("pool", o);
  auto r2 = c->try_acquire_semaphore("pool", o);
  auto short_o = o;
  short_o.ttl = 200ms;
  short_o.count = 1;
  auto r3 = c->try_acquire_semaphore("pool", short_o);
  REQUIRE(r1);
  REQUIRE(r2);
  REQUIRE(r3);
  const auto t1 = r1->token(), t2 = r2->token(), t3 = r3->token();
  r1->release();
  REQUIRE(c->force_release_semaphore("pool", t2) == 1);
  REQUIRE(eventually([&] {
    auto s = c->inspect_semaphore("pool");
    return s && s->holders.empty();
  }));
  // Lapsed and not recorded yet: read from its row.
  auto r = find(c->history(of("pool")), t3);
  REQUIRE(r);
  CHECK(r->ended_how == lease_end::expired);
  auto again = c->try_acquire_semaphore("pool", o);  // deletes the ended holder rows
  REQUIRE(again);
  auto h = c->history(of("pool"));
  REQUIRE(h.size() == 4);
  CHECK(find(h, t1)->ended_how == lease_end::released);
  CHECK(find(h, t2)->ended_how == lease_end::force_released);
  CHECK(find(h, t3)->ended_how == lease_end::expired);
  CHECK(find(h, t3)->ended_at == r3->expires_at());
  CHECK(find(h, again->token())->ended_how == lease_end::live);
  for (const auto& x : h) CHECK(x.kind == sqlock::lease_kind::semaphore);
}

TEST_CASE_TEMPLATE("history: disabling stops recording and keeps what was recorded", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto c = make_client(db);
  c->enable_history();
  auto l1 = c->try_acquire("job");
  REQUIRE(l1);
  const auto t1 = l1->token();
  l1->release();
  CHECK(c->enable_history(false));
  CHECK_FALSE(c->history_enabled());
  auto l2 = c->try_acquire("job");
  REQUIRE(l2);
  const auto t2 = l2->token();
  l2->release();
  auto l3 = c->try_acquire("job");
  REQUIRE(l3);
  auto h = c->history(of("job"));
  REQUIRE(find(h, t1));
  CHECK(find(h, t1)->ended_how == lease_end::released);
  CHECK_FALSE(find(h, t2));  // ended while off, and its row has moved on
  CHECK(find(h, l3->token()));
  CHECK(h.size() == 2);
}

TEST_CASE_TEMPLATE(
    "history: since keeps the leases of the recent past; purge_history trims the "
    "old ones",
    F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto c = make_client(db);
  c->enable_history();
  auto old = c->try_acquire("a");
  REQUIRE(old);
  const auto t_old = old->token();
  old->release();
  std::this_thread::sleep_for(1500ms);  // lets database time pass (not synchronisation)
  auto recent = c->try_acquire("b");
  REQUIRE(recent);
  const auto t_recent = recent->token();
  recent->release();
  auto live = c->try_acquire("c");
  REQUIRE(live);
  sqlock::history_filter f;
  CHECK(c->history(f).size() == 3);
  f.since = 1s;
  auto h = c->history(f);
  CHECK_FALSE(find(h, t_old));
  CHECK(find(h, t_recent));
  CHECK(find(h, live->token()));
  f.since = 0ms;
  f.limit = 1;
  h = c->history(f);
  REQUIRE(h.size() == 1);
  CHECK(h[0].token == live->token());
  // The released leases are recorded; the trim drops the one that ended over 1 s ago.
  auto again = c->try_acquire("a");  // moves the row of "a" on: its old lease is only recorded
  REQUIRE(again);
  CHECK(c->purge_history(1s) == 1);
  h = c->history(of("a"));
  CHECK_FALSE(find(h, t_old));
  CHECK(find(c->history(of("b")), t_recent));
  CHECK(code_of([&] { (void)c->purge_history(-1ms); }) == errc::invalid_argument);
  f.since = -1ms;
  CHECK(code_of([&] { (void)c->history(f); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->history(of(std::string(300, 'x'))); }) == errc::invalid_argument);
}

TEST_CASE_TEMPLATE(
    "history: under contention every grant is recorded once and no two leases "
    "of a name overlap",
    F, SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto admin = make_client(db, "admin");
  admin->enable_history();
  const std::vector<std::string> names{"n0", "n1", "n2"};
  std::mutex mu;
  std::map<std::string, std::set<std::int64_t>> granted;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<sqlock::client>> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(make_client(db, "w" + std::to_string(i)));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      std::vector<sqlock::lease> kept;
      int round = 0;
      while (!stop) {
        const auto& name = names[static_cast<std::size_t>(round + i) % names.size()];
        ++round;
        try {
          // Some leases are released, some lapse (taken over or left), some are forced.
          auto l = clients[static_cast<std::size_t>(i)]->try_acquire(name, ttl(100ms, false));
          if (!l) {
            std::this_thread::sleep_for(5ms);
            continue;
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            granted[name].insert(l->token());
          }
          if (round % 3 == 0) l->release();
          if (round % 7 == 0) admin->force_release(name);
          // Every third lease is left to lapse (taken over, or still lapsed at the end).
          if (round % 3 == 1) kept.push_back(std::move(*l));
          if (kept.size() > 4) kept.erase(kept.begin());
        } catch (const sqlock::error&) {
          // busy database under load: retried by the next round
        }
      }
    });
  }
  std::this_thread::sleep_for(2s);
  stop = true;
  for (auto& t : threads) t.join();
  std::size_t total = 0;
  for (const auto& name : names) {
    auto h = admin->history(of(name));
    CAPTURE(name);
    std::set<std::int64_t> seen;
    for (const auto& r : h) {
      CHECK(seen.insert(r.token).second);  // each lease once
      CHECK(r.granted_at <= (r.ended_how == lease_end::live ? r.granted_at : r.ended_at));
    }
    CHECK(seen == granted[name]);
    for (std::size_t i = 1; i < h.size(); ++i) {
      CHECK(h[i - 1].token < h[i].token);  // oldest grant first, tokens in grant order
      REQUIRE(h[i - 1].ended_how != lease_end::live);
      CHECK(h[i - 1].ended_at <= h[i].granted_at);  // no overlap
    }
    total += h.size();
  }
  CHECK(total > 10);
}

TEST_CASE("history: a backend without history says so with a typed error") {
  struct bare : sqlock::backend_wrapper {
    using sqlock::backend_wrapper::backend_wrapper;
  };
  sqlock_test::sqlite_fixture db;
  bare b(sqlock::open_backend(db.url()));
  sqlock::backend& base = b;
  try {
    (void)base.sqlock::backend::history({}, soon());
    FAIL("expected unsupported_operation");
  } catch (const sqlock::unsupported_operation& e) {
    CHECK(e.code() == errc::usage);
  }
  CHECK(code_of([&] { (void)base.sqlock::backend::purge_history(1s, soon()); }) == errc::usage);
  CHECK(code_of([&] { (void)base.sqlock::backend::set_history_enabled(true, soon()); }) ==
        errc::usage);
  CHECK_FALSE(base.sqlock::backend::history_enabled(soon()));
}

TEST_CASE_TEMPLATE("history: a lease released after a release request is recorded as revoked", F,
                   SQLOCK_DATABASE_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto admin = make_client(db, "admin");
  a->enable_history();
  auto held = a->try_acquire("deploy", ttl(30s));
  REQUIRE(held);
  const auto token = held->token();
  REQUIRE(admin->request_release("deploy", 10s));
  held->release();                     // the polite answer
  auto other = a->try_acquire("job");  // an unrelated lease, released plainly
  REQUIRE(other);
  other->release();
  auto h = admin->history(of("deploy"));
  auto r = find(h, token);
  REQUIRE(r);
  CHECK(r->ended_how == lease_end::revoked);
  auto plain = admin->history(of("job"));
  REQUIRE(plain.size() == 1);
  CHECK(plain[0].ended_how == lease_end::released);
}
