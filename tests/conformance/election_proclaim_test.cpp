// SPDX-License-Identifier: Apache-2.0
// The conformance suite, election::proclaim and the backend's update_metadata beneath it: the
// new value reaches leader() and observers within the same term; a candidate that is not (or no
// longer) leader is refused and writes nothing; an ended lease's row is never changed. Run
// against every backend fixture.

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

TEST_CASE_TEMPLATE("proclaim changes the leader's value for leader() and observers", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "leader");
  auto watcher = make_client(db, "watcher");
  // Long enough that neither the leader's expiry nor the poll wakes the observer during the
  // test: it must be woken by the proclaim itself. Through PgBouncer no notification arrives
  // (sqlock falls back to polling), so it polls there.
  const bool notified = std::string(F::backend_name) != "pgbouncer";
  sqlock::election e(*c, "p-office", ttl(60s));
  sqlock::election seen(*watcher, "p-office");
  std::mutex mu;
  std::vector<std::pair<std::int64_t, std::string>> changes;
  auto obs = seen.observe(
      [&](const std::optional<sqlock::leader_info>& l) {
        std::lock_guard<std::mutex> lock(mu);
        if (l) changes.emplace_back(l->term, l->value);
      },
      notified ? std::chrono::milliseconds{60000} : std::chrono::milliseconds{300});
  auto observed = [&](const std::string& value) {
    return eventually(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return !changes.empty() && changes.back().second == value;
        },
        10s);
  };
  // PostgreSQL: a notification reaches the observer once its client's listener is up (until
  // then releases do not wake it either). SQLite and MariaDB wake it within the process.
  if (notified && std::string(F::backend_name) == "postgresql")
    REQUIRE(eventually([&] { return watcher->get_backend()->wakes_other_processes(); }));
  auto term = e.campaign("v1");
  // (Seen while the observer backs off from a vacant office: a campaign wakes nobody.)
  REQUIRE(observed("v1"));
  e.proclaim("v2");
  auto l = seen.leader();
  REQUIRE(l);
  CHECK(l->value == "v2");
  CHECK(l->term == term);
  CHECK(e.term() == term);
  CHECK(e.is_leader());
  auto r = watcher->inspect("p-office");
  REQUIRE(r);
  CHECK(r->metadata == "v2");
  CHECK(r->token == term);
  // Within 10 s, where the observer would otherwise sleep for 60 s (its poll and the lease).
  CHECK(observed("v2"));
  std::lock_guard<std::mutex> lock(mu);
  CHECK(changes.back().first == term);
}

TEST_CASE_TEMPLATE("proclaim is refused when not leader and after the leadership is lost", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "leader");
  auto admin = make_client(db, "admin");
  sqlock::election e(*c, "r-office", ttl(5s));
  CHECK(code_of([&] { e.proclaim("early"); }) == errc::usage);
  CHECK_FALSE(admin->inspect("r-office"));
  e.campaign("v1");
  CHECK(code_of([&] { e.proclaim(std::string(sqlock::max_metadata_bytes + 1, 'x')); }) ==
        errc::invalid_argument);
  // Ended behind the leader's back: it still believes it leads until its next renewal.
  REQUIRE(admin->force_release("r-office"));
  CHECK(code_of([&] { e.proclaim("late"); }) == errc::lease_lost);
  auto r = admin->inspect("r-office");
  REQUIRE(r);
  CHECK_FALSE(r->held);
  CHECK(r->metadata == "v1");
  e.resign();
  CHECK(code_of([&] { e.proclaim("after"); }) == errc::usage);
}

TEST_CASE_TEMPLATE("update_metadata changes only a live lease, never an ended one", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  auto until = [] { return steady::now() + 10s; };
  sqlock::acquire_request r;
  r.name = "u-lock";
  r.owner = "test";
  r.nonce = "nonce-1";
  r.metadata = "m1";
  r.ttl = 400ms;
  auto g = b->try_acquire(r, until()).granted;
  REQUIRE(g);
  sqlock::lease_key key{r.name, r.nonce, g->token, sqlock::lease_kind::lock};
  CHECK(b->update_metadata(key, "m2", until()));
  auto rec = b->inspect(r.name, until());
  REQUIRE(rec);
  CHECK(rec->metadata == "m2");
  CHECK(rec->token == g->token);
  CHECK(rec->expires_at == g->expires_at);  // the expiry stays
  // Another nonce, or the right nonce with another token: not this lease.
  CHECK_FALSE(
      b->update_metadata({r.name, "nonce-2", g->token, sqlock::lease_kind::lock}, "x", until()));
  CHECK_FALSE(
      b->update_metadata({r.name, r.nonce, g->token + 1, sqlock::lease_kind::lock}, "x", until()));
  // Expired: refused, unchanged, not revived.
  REQUIRE(eventually([&] {
    auto x = b->inspect(r.name, until());
    return x && !x->held;
  }));
  CHECK_FALSE(b->update_metadata(key, "m3", until()));
  rec = b->inspect(r.name, until());
  REQUIRE(rec);
  CHECK_FALSE(rec->held);
  CHECK(rec->metadata == "m2");
  CHECK(rec->expires_at == g->expires_at);
}
