// SPDX-License-Identifier: Apache-2.0
// Unit tests of the users' test kit (<sqlock/testing.hpp>): the memory backend's clock and its
// own details (the conformance suite runs the whole backend contract on it, as
// `conformance.memory`), the `memory:NAME` URL, and each fault of the fault injector doing what
// its documentation says, as seen through a client (its on_lost reasons, errors and states).

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>
#include <sqlock/testing.hpp>

#include "support/errors.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock::renew_outcome;
using sqlock::testing::fault_injector;
using sqlock::testing::memory_backend;
using sqlock_test::code_of;
using sqlock_test::eventually;
using steady = std::chrono::steady_clock;

namespace {

// What on_lost reported, for a test to wait on.
struct loss_log {
  std::mutex mu;
  std::vector<sqlock::lost_event> events;
  std::function<void(const sqlock::lost_event&)> hook() {
    return [this](const sqlock::lost_event& e) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(e);
    };
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return events.size();
  }
  std::string reason(std::size_t i = 0) {
    std::lock_guard<std::mutex> lock(mu);
    return i < events.size() ? events[i].reason : std::string();
  }
};

sqlock::lock_options kept(std::chrono::milliseconds ttl, loss_log* log = nullptr) {
  sqlock::lock_options o;
  o.ttl = ttl;
  if (log) o.on_lost = log->hook();
  return o;
}

// A memory database with a fault injector in front, and a client on it.
struct kit {
  std::shared_ptr<memory_backend> memory = std::make_shared<memory_backend>();
  std::shared_ptr<fault_injector> faults = std::make_shared<fault_injector>(memory);
  sqlock::client client{faults};
};

}  // namespace

// --- the clock -------------------------------------------------------------------------------

TEST_CASE("testing::clock follows the system clock, goes only forward, and can be frozen") {
  sqlock::testing::clock c;
  const auto before = std::chrono::system_clock::now();
  CHECK(c.now() >= before);
  CHECK(c.now() - before < 5s);
  c.advance(1h);
  CHECK(c.now() - before >= 1h);
  CHECK(c.offset() == 1h);
  CHECK(code_of([&] { c.advance(-1ms); }) == errc::invalid_argument);

  c.freeze();
  CHECK(c.frozen());
  const auto frozen = c.now();
  std::this_thread::sleep_for(20ms);  // a span of time to show it stands still, no sync
  CHECK(c.now() == frozen);
  c.advance(5s);
  CHECK(c.now() == frozen + 5s);
  c.resume();
  CHECK_FALSE(c.frozen());
  CHECK(c.now() >= frozen + 5s);  // never back
}

TEST_CASE("advancing the clock expires a lease and the keepalive reports on_lost: expired") {
  auto memory = std::make_shared<memory_backend>();
  sqlock::client c(memory);
  loss_log lost;
  auto lease = c.try_acquire("job", kept(300ms, &lost));
  REQUIRE(lease);
  const auto token = lease->token();
  memory->advance(1s);
  // The database says so at once; the holder learns at its next renewal (ttl/3 = 100 ms).
  CHECK_FALSE(c.inspect("job")->held);
  REQUIRE(eventually([&] { return lost.size() == 1; }, 5s));
  CHECK(lost.reason() == "expired");
  CHECK(lost.events[0].token == token);
  CHECK(lease->lost());
  CHECK(lease->state() == sqlock::lease_state::lost);
  auto next = c.try_acquire("job", kept(300ms));
  REQUIRE(next);
  CHECK(next->token() > token);
}

TEST_CASE("advancing the clock wakes a waiter whose holder it made expire") {
  auto memory = std::make_shared<memory_backend>();
  sqlock::client holder(memory), waiter(memory);
  auto held = holder.try_acquire("job", sqlock_test::ttl(1h, false));
  REQUIRE(held);
  std::optional<sqlock::lease> got;
  std::atomic<bool> done{false};
  std::thread t([&] {
    got = waiter.try_acquire_for("job", 30s, kept(1s));
    done = true;
  });
  REQUIRE(eventually([&] { return holder.inspect("job")->queued == 1; }, 10s));
  const auto start = steady::now();
  memory->advance(2h);
  CHECK(eventually([&] { return done.load(); }, 10s));
  t.join();
  CHECK(steady::now() - start < 5s);  // the holder's expiry was an hour away: it was woken
  REQUIRE(got);
  CHECK(got->token() > held->token());
}

TEST_CASE("a frozen clock never expires a lease by itself, however long the test sleeps") {
  sqlock::testing::memory_options o;
  o.clock = std::make_shared<sqlock::testing::clock>();
  o.clock->freeze();
  auto memory = std::make_shared<memory_backend>(o);
  auto until = steady::now() + 5s;
  auto g = memory->try_acquire(sqlock_test::request("x", "n1", 100ms), until);
  REQUIRE(g.granted);
  std::this_thread::sleep_for(200ms);  // twice the ttl of wall time, not a synchronisation
  auto rec = memory->inspect("x", until);
  REQUIRE(rec);
  CHECK(rec->held);
  CHECK(rec->expires_in == 100ms);  // exact: nothing moved the clock
  memory->advance(100ms);
  CHECK_FALSE(memory->inspect("x", until)->held);
}

// --- the memory backend ----------------------------------------------------------------------

TEST_CASE("memory backend: renew classifies every outcome and is never busy") {
  // The conformance case for this needs SQL (an expired row of our own, a fenced transaction);
  // here the clock and the backend's own calls make each outcome.
  memory_backend b;
  auto until = steady::now() + 5s;
  using sqlock_test::request;
  auto live = b.try_acquire(request("live", "n1"), until).granted;
  auto forced = b.try_acquire(request("forced", "n3"), until).granted;
  auto taken = b.try_acquire(request("taken", "n4", 100ms), until).granted;
  auto expired = b.try_acquire(request("expired", "n5", 200ms), until).granted;
  auto purged = b.try_acquire(request("purged", "n6", 100ms), until).granted;
  REQUIRE((live && forced && taken && expired && purged));
  b.advance(150ms);  // "taken" and "purged" lapse
  REQUIRE(b.try_acquire(request("taken", "someone-else"), until).granted);
  CHECK(b.purge(0ms, until) == 1);  // "purged"
  CHECK(b.force_release("forced", until));
  b.advance(100ms);  // "expired" lapses, nobody takes it
  auto rs = b.renew({{{"live", "n1", live->token}, 30s},
                     {{"forced", "n3", forced->token}, 30s},
                     {{"taken", "n4", taken->token}, 30s},
                     {{"expired", "n5", expired->token}, 30s},
                     {{"purged", "n6", purged->token}, 30s}},
                    until);
  REQUIRE(rs.size() == 5);
  CHECK(rs[0].outcome == renew_outcome::renewed);
  CHECK(rs[1].outcome == renew_outcome::force_released);
  CHECK(rs[2].outcome == renew_outcome::taken_over);
  CHECK(rs[3].outcome == renew_outcome::expired);
  CHECK(rs[4].outcome == renew_outcome::missing);
  // A shorter renewal never shortens the lease.
  auto shorter = b.renew({{{"live", "n1", live->token}, 1s}}, until);
  CHECK(shorter.at(0).outcome == renew_outcome::renewed);
  CHECK(shorter.at(0).expires_at == rs[0].expires_at);
}

TEST_CASE("memory:NAME opens one process-wide database that lives while a backend on it does") {
  CHECK(sqlock::parse_database_url("memory:jobs").backend == sqlock::parsed_url::kind::memory);
  CHECK(sqlock::parse_database_url("memory:jobs").location == "jobs");
  CHECK(code_of([] { (void)sqlock::open_backend("memory:"); }) == errc::invalid_argument);
  {
    sqlock::client a("memory:unit-shared"), b("memory:unit-shared");
    CHECK(a.get_backend()->kind() == "memory");
    auto held = a.try_acquire("job");
    REQUIRE(held);
    CHECK_FALSE(b.try_acquire("job"));  // the same database
    auto other = sqlock::open_backend("memory:unit-other");
    CHECK_FALSE(other->inspect("job", steady::now() + 5s));  // another one
  }
  // Every backend on it is gone, and so is the database: the name starts afresh.
  sqlock::client again("memory:unit-shared");
  CHECK_FALSE(again.inspect("job"));
}

TEST_CASE("an unmigrated memory database refuses operations until migrated") {
  sqlock::testing::memory_options o;
  o.migrated = false;
  auto memory = std::make_shared<memory_backend>(o);
  auto until = steady::now() + 5s;
  CHECK(memory->schema_version(until) == 0);
  CHECK(code_of([&] { (void)memory->inspect("x", until); }) == errc::schema_mismatch);
  CHECK(memory->migrate(memory->latest_schema_version(), until) == memory->latest_schema_version());
  CHECK(memory->latest_schema_version() == sqlock::latest_migration("sqlite"));
  CHECK_FALSE(memory->inspect("x", until));
}

// --- the fault injector ----------------------------------------------------------------------

TEST_CASE("fault_injector: failed renewals leave the lease at risk, and it recovers") {
  kit k;
  std::atomic<int> failures{0};
  sqlock::client_options co;
  co.listeners.push_back([&](const sqlock::lock_event& e) {
    if (e.kind == sqlock::event_kind::renew_failed) ++failures;
  });
  sqlock::client c(k.faults, co);
  loss_log lost;
  auto lease = c.try_acquire("job", kept(1500ms, &lost));
  REQUIRE(lease);
  k.faults->fail_renewals(2);
  REQUIRE(eventually([&] { return failures == 2; }, 5s));
  const int calls = k.faults->renew_calls();
  REQUIRE(eventually([&] { return k.faults->renew_calls() > calls; }, 5s));
  CHECK(eventually([&] { return lease->state() == sqlock::lease_state::held; }, 5s));
  CHECK(lost.size() == 0);
  CHECK(c.inspect("job")->held);
}

TEST_CASE("fault_injector: renewals that keep failing lose the lease at its safety deadline") {
  kit k;
  loss_log lost;
  auto lease = k.client.try_acquire("job", kept(300ms, &lost));
  REQUIRE(lease);
  k.faults->fail_renewals(1000);
  REQUIRE(eventually([&] { return lost.size() == 1; }, 5s));
  CHECK(lost.reason() == "safety deadline passed without a successful renewal");
  CHECK(lease->lost());
}

TEST_CASE("fault_injector: a stalled renewal cannot delay the loss past the safety deadline") {
  kit k;
  loss_log lost;
  auto lease = k.client.try_acquire("job", kept(300ms, &lost));
  REQUIRE(lease);
  const auto start = steady::now();
  k.faults->stall_renewals(3s);
  REQUIRE(eventually([&] { return lost.size() == 1; }, 5s));
  CHECK(steady::now() - start < 2s);  // at its safety deadline (< 300 ms), not after the stall
  CHECK(lost.reason() == "safety deadline passed without a successful renewal");
}

TEST_CASE("fault_injector: a stall shorter than the call's deadline only delays the renewal") {
  kit k;
  auto lease = k.client.try_acquire("job", sqlock_test::ttl(3s, false));  // renewed by hand only
  REQUIRE(lease);
  k.faults->stall_renewals(300ms);
  auto start = steady::now();
  CHECK(lease->renew());
  CHECK(steady::now() - start >= 300ms);
  start = steady::now();
  CHECK(lease->renew());  // one shot: the next one is not stalled
  CHECK(steady::now() - start < 300ms);
  CHECK(lease->state() == sqlock::lease_state::held);
}

TEST_CASE("fault_injector: lose_lease reports each kind of loss, and frees the name") {
  const std::vector<std::pair<renew_outcome, std::string>> cases = {
      {renew_outcome::taken_over, "taken over"},
      {renew_outcome::force_released, "force released"},
      {renew_outcome::expired, "expired"},
      {renew_outcome::missing, "lock row deleted"}};
  for (const auto& [outcome, reason] : cases) {
    CAPTURE(reason);
    kit k;
    loss_log lost;
    auto lease = k.client.try_acquire("job", kept(300ms, &lost));
    REQUIRE(lease);
    k.faults->lose_lease(outcome);
    REQUIRE(eventually([&] { return lost.size() == 1; }, 5s));
    CHECK(lost.reason() == reason);
    CHECK(lease->lost());
    // The database agrees: another client can take the lock now.
    sqlock::client other(k.memory);
    auto next = other.try_acquire("job");
    REQUIRE(next);
    CHECK(next->token() > lease->token());
  }
}

TEST_CASE("fault_injector: lose_lease by name loses only that lease, semaphores too") {
  kit k;
  loss_log lost_a, lost_b, lost_s;
  auto a = k.client.try_acquire("a", kept(300ms, &lost_a));
  auto b = k.client.try_acquire("b", kept(300ms, &lost_b));
  sqlock::semaphore_options so;
  static_cast<sqlock::lock_options&>(so) = kept(300ms, &lost_s);
  so.limit = 2;
  auto s = k.client.try_acquire_semaphore("pool", so);
  REQUIRE((a && b && s));
  k.faults->lose_lease(renew_outcome::force_released, "b");
  k.faults->lose_lease(renew_outcome::force_released, "pool");
  REQUIRE(eventually([&] { return lost_b.size() == 1 && lost_s.size() == 1; }, 5s));
  CHECK(lost_b.reason() == "force released");
  CHECK(lost_s.reason() == "force released");
  // "a" keeps renewing: several renewal rounds later it is still held.
  const int calls = k.faults->renew_calls();
  REQUIRE(eventually([&] { return k.faults->renew_calls() >= calls + 3; }, 5s));
  CHECK(lost_a.size() == 0);
  CHECK(a->state() == sqlock::lease_state::held);
  CHECK(code_of([&] { k.faults->lose_lease(renew_outcome::renewed); }) == errc::invalid_argument);
}

TEST_CASE("fault_injector: an acquire in doubt is cleaned up and reported unavailable") {
  kit k;
  k.faults->acquire_in_doubt();
  CHECK(code_of([&] { (void)k.client.try_acquire("job"); }) == errc::unavailable);
  auto rec = k.client.inspect("job");
  REQUIRE(rec);            // it was granted...
  CHECK_FALSE(rec->held);  // ...and abandoned
  // When the cleanup fails too, the outcome stays unknown.
  k.faults->acquire_in_doubt();
  k.faults->fail_abandons();
  CHECK(code_of([&] { (void)k.client.try_acquire("other"); }) == errc::in_doubt);
  CHECK(k.client.inspect("other")->held);  // left to expire by itself
  CHECK(k.client.try_acquire("job"));      // one shot each: the next calls go through
}

TEST_CASE("fault_injector: failed acquires send nothing; failed releases are retried") {
  kit k;
  k.faults->fail_acquires(1);
  CHECK(code_of([&] { (void)k.client.try_acquire("job"); }) == errc::unavailable);
  CHECK_FALSE(k.client.inspect("job"));  // nothing was sent
  CHECK(k.faults->acquire_calls() == 1);
  auto lease = k.client.try_acquire("job", kept(30s));
  REQUIRE(lease);
  k.faults->fail_releases(1);
  CHECK(code_of([&] { lease->release(); }) == errc::unavailable);
  CHECK(lease->state() == sqlock::lease_state::released);
  // The client retries the release in the background: the row is free long before 30 s.
  CHECK(eventually([&] { return !k.client.inspect("job")->held; }, 10s));
}

TEST_CASE("fault_injector: advance needs a memory backend underneath") {
  kit k;
  auto lease = k.client.try_acquire("job", sqlock_test::ttl(1s, false));
  REQUIRE(lease);
  k.faults->advance(2s);
  CHECK_FALSE(k.client.inspect("job")->held);
  fault_injector over_wrapper(std::make_shared<sqlock::backend_wrapper>(k.memory));
  CHECK(code_of([&] { over_wrapper.advance(1s); }) == errc::usage);
}

TEST_CASE("fault_injector: clear drops every pending fault") {
  kit k;
  k.faults->fail_acquires(5);
  k.faults->fail_renewals(5);
  k.faults->lose_lease();
  k.faults->clear();
  loss_log lost;
  auto lease = k.client.try_acquire("job", kept(300ms, &lost));
  REQUIRE(lease);
  const int calls = k.faults->renew_calls();
  REQUIRE(eventually([&] { return k.faults->renew_calls() >= calls + 3; }, 5s));
  CHECK(lost.size() == 0);
  CHECK(lease->state() == sqlock::lease_state::held);
}
