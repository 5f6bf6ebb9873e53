// SPDX-License-Identifier: Apache-2.0
// The conformance suite, several locks at once (client::try_acquire_all and
// backend::try_acquire_all): all or nothing, no row written by a refusal, no deadlock between
// callers asking in different orders, waiting for the blocking holder, tokens, validation before
// any I/O, in-doubt cleanup, and the backend interface's default implementation. Run against
// every backend fixture.

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/errors.hpp"
#include "support/faulty_backend.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

namespace {

/// Counts the calls that reach the database (a client's first call checks the schema).
class counting_backend : public sqlock::backend_wrapper {
 public:
  using sqlock::backend_wrapper::backend_wrapper;
  std::atomic<int> calls{0};
  int schema_version(sqlock::deadline d) override {
    ++calls;
    return wrapped().schema_version(d);
  }
  std::vector<sqlock::acquire_result> try_acquire_all(const std::vector<sqlock::acquire_request>& r,
                                                      sqlock::deadline d) override {
    ++calls;
    return wrapped().try_acquire_all(r, d);
  }
  std::shared_ptr<sqlock::release_watch> watch(std::string_view name) override {
    ++calls;
    return wrapped().watch(name);
  }
};

/// A backend without its own try_acquire_all: the interface's default (one name at a time).
class sequential_backend : public sqlock::backend_wrapper {
 public:
  using sqlock::backend_wrapper::backend_wrapper;
  std::vector<sqlock::acquire_result> try_acquire_all(const std::vector<sqlock::acquire_request>& r,
                                                      sqlock::deadline d) override {
    return sqlock::backend::try_acquire_all(r, d);
  }
};

template <class F>
std::shared_ptr<sqlock::backend> backend_of(const F& db) {
  return sqlock::open_backend(db.url(), db.options().backend);
}

std::vector<std::string> names_of(const std::vector<sqlock::lease>& ls) {
  std::vector<std::string> out;
  for (const auto& l : ls) out.push_back(l.name());
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE("try_acquire_all grants every lock as ordinary leases, in the caller's order", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "multi");
  auto other = make_client(db, "other");
  auto got = c->try_acquire_all({"m-b", "m-a", "m-c"}, 0ms, ttl(5s));
  REQUIRE(got);
  REQUIRE(got->size() == 3);
  CHECK(names_of(*got) == std::vector<std::string>{"m-b", "m-a", "m-c"});
  for (auto& l : *got) {
    CHECK(l);
    CHECK(l.token() > 0);
    auto r = other->inspect(l.name());
    REQUIRE(r);
    CHECK(r->held);
    CHECK(r->owner == "multi");
    CHECK(r->token == l.token());
    CHECK_FALSE(other->try_acquire(l.name()));
    CHECK(l.renew());
  }
  (*got)[1].release();
  CHECK(other->try_acquire("m-a"));
  CHECK_FALSE(other->try_acquire("m-b"));
}

TEST_CASE_TEMPLATE("try_acquire_all grants nothing and writes no row when one name is held", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "multi");
  auto other = make_client(db, "other");
  // "n-free": a row left by an earlier, released lease; "n-new": no row at all; "n-held": held.
  std::int64_t free_token = 0;
  {
    auto l = other->try_acquire("n-free");
    REQUIRE(l);
    free_token = l->token();
  }
  auto holder = other->try_acquire("n-held", ttl(30s));
  REQUIRE(holder);
  auto check_untouched = [&] {
    auto f = other->inspect("n-free");
    REQUIRE(f);
    CHECK_FALSE(f->held);
    CHECK(f->token == free_token);
    CHECK(f->owner == "other");
    CHECK_FALSE(other->inspect("n-new"));  // no row was written for the missing name
    auto h = other->inspect("n-held");
    REQUIRE(h);
    CHECK(h->held);
    CHECK(h->token == holder->token());
    CHECK(h->owner == "other");
  };
  SUBCASE("no wait") { CHECK_FALSE(c->try_acquire_all({"n-free", "n-new", "n-held"}, 0ms)); }
  SUBCASE("waiting in vain") {
    CHECK_FALSE(c->try_acquire_all({"n-held", "n-new", "n-free"}, 300ms));
  }
  check_untouched();
  // And the free names are still free for anyone.
  CHECK(other->try_acquire("n-new"));
}

TEST_CASE_TEMPLATE("backend try_acquire_all reports the blocking name and writes nothing", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto b = backend_of(db);
  sqlock::acquire_request held;
  held.name = "k-held";
  held.owner = "other";
  held.nonce = "n0";
  held.ttl = 30s;
  REQUIRE(b->try_acquire(held, steady::now() + 10s).granted);
  std::vector<sqlock::acquire_request> rs(2);
  rs[0].name = "k-free";
  rs[1].name = "k-held";
  for (auto& r : rs) {
    r.owner = "multi";
    r.nonce = "n-" + r.name;
    r.ttl = 5s;
  }
  auto out = b->try_acquire_all(rs, steady::now() + 10s);
  REQUIRE(out.size() == 2);
  CHECK_FALSE(out[0].granted);
  CHECK_FALSE(out[0].blocking);
  CHECK_FALSE(out[1].granted);
  CHECK(out[1].blocking);
  CHECK(out[1].holder_expires_in > 20s);
  CHECK_FALSE(b->inspect("k-free", steady::now() + 10s));
}

TEST_CASE_TEMPLATE("try_acquire_all from clients asking in opposite orders never deadlocks", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  constexpr int rounds = 15;
  std::vector<std::unique_ptr<sqlock::client>> cs;
  for (int i = 0; i < 3; ++i) cs.push_back(make_client(db, "c" + std::to_string(i)));
  const std::vector<std::vector<std::string>> sets = {
      {"o-a", "o-b"}, {"o-b", "o-a"}, {"o-b", "o-c", "o-a"}};
  std::atomic<int> inside{0}, overlaps{0}, done{0}, errors{0};
  auto start = steady::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&, i] {
      try {
        for (int r = 0; r < rounds; ++r) {
          auto got = cs[i]->try_acquire_all(sets[i], 30s, ttl(5s));
          if (!got) continue;
          if (inside.fetch_add(1) != 0) ++overlaps;
          std::this_thread::sleep_for(2ms);
          inside.fetch_sub(1);
          for (auto& l : *got) l.release();
          ++done;
        }
      } catch (const std::exception&) {
        ++errors;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
  CHECK(overlaps == 0);
  CHECK(done == 3 * rounds);
  CHECK(steady::now() - start < 60s);
}

TEST_CASE_TEMPLATE("try_acquire_all waits until the blocking holder releases", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "multi");
  auto other = make_client(db, "other");
  auto blocker = other->try_acquire("w-b", ttl(30s));
  REQUIRE(blocker);
  std::optional<std::vector<sqlock::lease>> got;
  std::atomic<bool> returned{false};
  std::atomic<bool> failed{false};
  std::thread waiter([&] {
    try {
      got = c->try_acquire_all({"w-a", "w-b"}, 20s, ttl(5s));
    } catch (const std::exception&) {
      failed = true;
    }
    returned = true;
  });
  // While it waits, it holds nothing: the free name stays free.
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(returned);
  auto a = other->inspect("w-a");
  CHECK((!a || !a->held));
  auto released_at = steady::now();
  blocker->release();
  CHECK(eventually([&] { return returned.load(); }, 15s));
  waiter.join();
  CHECK_FALSE(failed);
  REQUIRE(got);
  CHECK(got->size() == 2);
  // Woken by the release, not by the holder's 30 s expiry.
  CHECK(steady::now() - released_at < 10s);
}

TEST_CASE_TEMPLATE("try_acquire_all tokens are larger than every earlier grant of each name", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "multi");
  std::int64_t ta = 0, tb = 0;
  {
    auto a = c->try_acquire("t-a");
    auto b = c->try_acquire("t-b");
    REQUIRE(a);
    REQUIRE(b);
    ta = a->token();
    tb = b->token();
  }
  // One expired (not released) row too: taken over with a larger token.
  {
    auto b = c->try_acquire("t-b", ttl(150ms, false));
    REQUIRE(b);
    tb = b->token();
    CHECK(eventually([&] {
      auto r = c->inspect("t-b");
      return r && !r->held;
    }));
  }
  auto got = c->try_acquire_all({"t-b", "t-a", "t-new"}, 0ms);
  REQUIRE(got);
  CHECK((*got)[0].token() > tb);
  CHECK((*got)[1].token() > ta);
  CHECK((*got)[2].token() > 0);
  for (auto& l : *got) l.release();
  auto again = c->try_acquire_all({"t-a", "t-b"}, 0ms);
  REQUIRE(again);
  CHECK((*again)[0].token() > (*got)[1].token());
  CHECK((*again)[1].token() > (*got)[0].token());
}

TEST_CASE_TEMPLATE("try_acquire_all rejects bad input before any I/O", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto counted = std::make_shared<counting_backend>(backend_of(db));
  sqlock::client c(counted, db.options());
  CHECK(code_of([&] { (void)c.try_acquire_all({}, 0ms); }) == errc::invalid_argument);
  CHECK(code_of([&] {
          (void)c.try_acquire_all({"d-a", "d-b", "d-a"}, 1s);
        }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c.try_acquire_all({"d-a", ""}, 0ms); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c.try_acquire_all({"d-a", "d-b"}, -1ms); }) == errc::invalid_argument);
  sqlock::lock_options fair;
  fair.fair = true;
  CHECK(code_of([&] {
          (void)c.try_acquire_all({"d-a", "d-b"}, 1s, fair);
        }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c.try_acquire_all({"d-a"}, 0ms, ttl(1ms)); }) ==
        errc::invalid_argument);
  CHECK(counted->calls == 0);
  CHECK_FALSE(c.inspect("d-a"));  // nothing was written either
}

TEST_CASE_TEMPLATE("an in-doubt try_acquire_all is cleaned up for every name", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto fb = std::make_shared<faulty_backend>(backend_of(db));
  sqlock::client c(fb, db.options());
  auto other = make_client(db, "other");
  fb->acquire_in_doubt = true;
  SUBCASE("cleaned up: unavailable, nothing left held") {
    CHECK(code_of([&] {
            (void)c.try_acquire_all({"i-a", "i-b"}, 0ms, ttl(30s));
          }) == errc::unavailable);
    for (const char* n : {"i-a", "i-b"}) {
      auto r = other->inspect(n);
      REQUIRE(r);            // the grant did happen...
      CHECK_FALSE(r->held);  // ...and was ended for each name
    }
    CHECK(other->try_acquire_all({"i-a", "i-b"}, 0ms));
  }
  SUBCASE("the cleanup fails: in_doubt, the rows expire by themselves") {
    fb->abandon_fails = true;
    CHECK(code_of([&] {
            (void)c.try_acquire_all({"i-a", "i-b"}, 0ms, ttl(300ms));
          }) == errc::in_doubt);
    CHECK(other->try_acquire_all({"i-a", "i-b"}, 5s));
  }
}

TEST_CASE_TEMPLATE("the backend interface's default try_acquire_all is all or nothing", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  sqlock::client c(std::make_shared<sequential_backend>(backend_of(db)), db.options());
  auto other = make_client(db, "other");
  auto holder = other->try_acquire("s-c", ttl(30s));
  REQUIRE(holder);
  // "s-a" and "s-b" are granted first, then "s-c" refuses: both are given back.
  CHECK_FALSE(c.try_acquire_all({"s-b", "s-c", "s-a"}, 0ms));
  for (const char* n : {"s-a", "s-b"}) {
    auto r = other->inspect(n);
    CHECK((!r || !r->held));
  }
  holder->release();
  auto got = c.try_acquire_all({"s-b", "s-c", "s-a"}, 5s);
  REQUIRE(got);
  CHECK(names_of(*got) == std::vector<std::string>{"s-b", "s-c", "s-a"});
}

TEST_CASE_TEMPLATE("the leases of try_acquire_all are kept alive together", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "multi");
  auto other = make_client(db, "other");
  auto got = c->try_acquire_all({"k-a", "k-b", "k-c"}, 0ms, ttl(600ms));
  REQUIRE(got);
  std::this_thread::sleep_for(2s);  // several ttls: only renewals keep them
  for (auto& l : *got) {
    CHECK(l);
    auto r = other->inspect(l.name());
    REQUIRE(r);
    CHECK(r->held);
    CHECK(r->token == l.token());
  }
}
