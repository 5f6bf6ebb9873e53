// SPDX-License-Identifier: Apache-2.0
// The conformance suite, cooperative revocation (schema 9): client::request_release asks a
// holder to let go within a grace. The holder hears it through on_revoke_requested at a
// renewal, is never renewed past the deadline, and loses the lease there if it does not
// release; the request never touches a later lease of the name. Run against every backend.

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

namespace {
// What a lease's callbacks saw, filled from sqlock's timer thread.
struct heard {
  std::mutex mu;
  std::optional<sqlock::revoke_event> revoke;
  std::optional<sqlock::lost_event> lost;
  int revokes = 0;
  void watch(sqlock::lock_options& o) {
    o.on_revoke_requested = [this](const sqlock::revoke_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      revoke = e;
      ++revokes;
    };
    o.on_lost = [this](const sqlock::lost_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      lost = e;
    };
  }
  bool has_revoke() {
    std::lock_guard<std::mutex> lock(mu);
    return revoke.has_value();
  }
  bool has_lost() {
    std::lock_guard<std::mutex> lock(mu);
    return lost.has_value();
  }
};
}  // namespace

TEST_CASE_TEMPLATE(
    "request_release: the holder hears its grace, is renewed up to it, then loses "
    "the lease, and another client gets the lock",
    F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto admin = make_client(db, "admin");
  heard h;
  auto o = ttl(600ms);
  h.watch(o);
  auto l = holder->try_acquire("deploy", o);
  REQUIRE(l);
  const auto asked = std::chrono::steady_clock::now();
  REQUIRE(admin->request_release("deploy", 2500ms));
  REQUIRE(eventually([&] { return h.has_revoke(); }, 3s));
  {
    std::lock_guard<std::mutex> lock(h.mu);
    CHECK(h.revoke->name == "deploy");
    CHECK(h.revoke->token == l->token());
    CHECK(h.revoke->grace > 1000ms);  // heard within ttl/3 or so, on a loaded machine
    CHECK(h.revoke->grace <= 2500ms);
  }
  // Longer than one ttl: the grace is honoured by renewals up to the deadline, not beyond.
  std::this_thread::sleep_for(900ms);
  CHECK(l->state() != sqlock::lease_state::lost);
  CHECK(l->remaining() <= 2500ms);
  CHECK_FALSE(admin->try_acquire("deploy"));
  // The holder did not let go: the lease ends at the deadline, by the database.
  REQUIRE(eventually([&] { return h.has_lost(); }, 5s));
  CHECK(std::chrono::steady_clock::now() - asked >= 2000ms);
  {
    std::lock_guard<std::mutex> lock(h.mu);
    CHECK(h.lost->reason.find("release requested") != std::string::npos);
    CHECK(h.revokes == 1);
  }
  std::optional<sqlock::lease> next;
  REQUIRE(eventually([&] { return bool(next = admin->try_acquire("deploy")); }, 2s));
  CHECK(next->token() > l->token());
}

TEST_CASE_TEMPLATE(
    "request_release: a holder that releases within the grace hands the lock on, "
    "and the request never touches the next lease",
    F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto admin = make_client(db, "admin");
  heard h;
  auto o = ttl(300ms);
  h.watch(o);
  auto l = holder->try_acquire("job", o);
  REQUIRE(l);
  REQUIRE(admin->request_release("job", 700ms));
  REQUIRE(eventually([&] { return h.has_revoke(); }, 3s));
  l->release();  // the polite answer
  heard next_heard;
  auto o2 = ttl(300ms);
  next_heard.watch(o2);
  auto next = admin->try_acquire("job", o2);
  REQUIRE(next);
  // Well past the old request's deadline: the new lease is renewed as any other.
  std::this_thread::sleep_for(1500ms);
  CHECK(next->state() == sqlock::lease_state::held);
  CHECK(next->remaining() > 100ms);
  CHECK_FALSE(next_heard.has_revoke());
  CHECK_FALSE(next_heard.has_lost());
  CHECK(next->renew());
}

TEST_CASE_TEMPLATE("request_release: a later request shortens the deadline, never extends it", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto admin = make_client(db, "admin");
  heard h;
  auto o = ttl(400ms);
  h.watch(o);
  auto l = holder->try_acquire("job", o);
  REQUIRE(l);
  REQUIRE(admin->request_release("job", 60s));
  REQUIRE(admin->request_release("job", 800ms));
  REQUIRE(admin->request_release("job", 60s));  // does not move it back
  REQUIRE(eventually([&] { return h.has_lost(); }, 5s));
  // The holder stops a safety margin before the database frees the row.
  CHECK(eventually(
      [&] {
        auto rec = admin->inspect("job");
        return rec && !rec->held;
      },
      2s));
}

TEST_CASE_TEMPLATE("request_release: a free lock or a bad input changes nothing", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  CHECK_FALSE(c->request_release("nobody-holds-this", 1s));
  CHECK_FALSE(c->inspect("nobody-holds-this"));  // no row written
  {
    auto l = c->try_acquire("done");
    REQUIRE(l);
  }  // released
  auto before = c->inspect("done");
  REQUIRE(before);
  CHECK_FALSE(c->request_release("done", 1s));
  auto after = c->inspect("done");
  REQUIRE(after);
  CHECK(after->token == before->token);
  CHECK(after->expires_at == before->expires_at);
  CHECK(code_of([&] { (void)c->request_release("", 1s); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->request_release("job", -1ms); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->request_release("job", sqlock::max_ttl + 1ms); }) ==
        errc::invalid_argument);
  CHECK(code_of([&] { (void)c->request_release_semaphore("job", 1s, -1); }) ==
        errc::invalid_argument);
}

TEST_CASE_TEMPLATE("request_release_semaphore: asks one holder by token, or every holder", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "holders");
  auto admin = make_client(db, "admin");
  heard ha, hb;
  sqlock::semaphore_options oa;
  oa.limit = 2;
  oa.ttl = 300ms;
  ha.watch(oa);
  auto ob = oa;
  hb.watch(ob);
  auto a = c->try_acquire_semaphore("pool", oa);
  auto b = c->try_acquire_semaphore("pool", ob);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(admin->request_release_semaphore("pool", 5s, b->token()) == 1);
  REQUIRE(eventually([&] { return hb.has_revoke(); }, 3s));
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(ha.has_revoke());
  CHECK(admin->request_release_semaphore("pool", 0ms) == 2);
  REQUIRE(eventually([&] { return ha.has_lost() && hb.has_lost(); }, 3s));
  auto rec = admin->inspect_semaphore("pool");
  CHECK((!rec || rec->used == 0));
}
