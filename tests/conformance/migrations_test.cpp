// SPDX-License-Identifier: Apache-2.0
// The conformance suite, migrations: an unmigrated database is refused, migrations go down and
// up, concurrent migrators serialise, and a down migration never drops live lock leases or
// semaphore holders (which would let the next grant after `migrate up` reuse small tokens while
// the old holders still work). Run against every backend fixture.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

namespace {

// A backend of fixture `db` opened on its own, whose warnings are kept.
struct logged_backend {
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<std::vector<std::string>> warnings = std::make_shared<std::vector<std::string>>();
  std::shared_ptr<sqlock::backend> db;

  template <class F>
  explicit logged_backend(const F& fixture) {
    auto o = fixture.options().backend;
    auto m = mu;
    auto w = warnings;
    o.log = [m, w](sqlock::log_level level, std::string_view text) {
      if (level != sqlock::log_level::warn) return;
      std::lock_guard<std::mutex> lock(*m);
      w->emplace_back(text);
    };
    db = sqlock::open_backend(fixture.url(), o);
  }
  std::vector<std::string> seen() const {
    std::lock_guard<std::mutex> lock(*mu);
    return *warnings;
  }
};

// The message of the sqlock::error `fn` throws with `code`; fails the case otherwise.
std::string refusal(const std::function<void()>& fn, errc code) {
  try {
    fn();
  } catch (const sqlock::error& e) {
    CHECK(e.code() == code);
    return e.what();
  }
  FAIL("expected a sqlock::error");
  return {};
}

sqlock::lock_options short_ttl(bool keepalive) {
  sqlock::lock_options o;
  o.ttl = 600ms;  // renewed every 200 ms: a refused down step must leave renewals working
  o.keepalive = keepalive;
  return o;
}

sqlock::semaphore_options sem(bool keepalive) {
  sqlock::semaphore_options o;
  static_cast<sqlock::lock_options&>(o) = short_ttl(keepalive);
  o.limit = 3;
  o.count = 1;
  return o;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE_TEMPLATE("an unmigrated database is refused with schema_mismatch", F,
                   SQLOCK_TEST_FIXTURES) {
  F db(false);
  auto c = make_client(db);
  CHECK(c->schema_version() == 0);
  CHECK(code_of([&] { (void)c->try_acquire("job"); }) == errc::schema_mismatch);
  CHECK(code_of([&] { (void)c->list(); }) == errc::schema_mismatch);
  CHECK(code_of([&] { (void)c->inspect("job"); }) == errc::schema_mismatch);
  int v = c->migrate();
  CHECK(v == c->get_backend()->latest_schema_version());
  CHECK(c->migrate() == v);  // repeatable
  CHECK(c->schema_version() == v);
  CHECK(c->try_acquire("job"));
}

TEST_CASE_TEMPLATE("migrations go down and up again", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto backend = sqlock::open_backend(db.url(), db.options().backend);
  auto until = std::chrono::steady_clock::now() + 30s;
  int latest = backend->latest_schema_version();
  CHECK(backend->schema_version(until) == latest);
  CHECK(backend->migrate(0, until) == 0);
  CHECK(backend->schema_version(until) == 0);
  CHECK(backend->migrate(latest, until) == latest);
  sqlock::client c(backend, db.options());
  CHECK(c.try_acquire("job"));
}

TEST_CASE_TEMPLATE("concurrent migrators serialise", F, SQLOCK_TEST_FIXTURES) {
  F db(false);
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      sqlock::client c(db.url(), db.options());
      if (c.migrate() == c.get_backend()->latest_schema_version()) ++ok;
    });
  for (auto& t : ts) t.join();
  CHECK(ok == 4);
}

TEST_CASE_TEMPLATE("migrate down is refused while a lock lease is live, and changes nothing", F,
                   SQLOCK_TEST_FIXTURES) {
  F fixture;
  logged_backend b(fixture);
  const int latest = b.db->latest_schema_version();
  auto a = make_client(fixture, "holder-a");
  auto held = a->try_acquire("job", short_ttl(true));
  REQUIRE(held);
  const auto token = held->token();

  auto message = refusal([&] { b.db->migrate(0, soon(30s)); }, errc::invalid_argument);
  CHECK(contains(message, "1 live lease"));
  CHECK(contains(message, "'job'"));
  CHECK(contains(message, "token " + std::to_string(token)));
  CHECK(contains(message, "--force"));
  // migrate() and migrate_with() without force refuse alike.
  CHECK(refusal([&] { b.db->migrate_with(0, {}, soon(30s)); }, errc::invalid_argument) == message);

  // Nothing was dropped: same version, same row, and the lease keeps renewing.
  CHECK(b.db->schema_version(soon(30s)) == latest);
  auto rec = a->inspect("job");
  REQUIRE(rec);
  CHECK(rec->held);
  CHECK(rec->token == token);
  CHECK(held->renew());
  auto before = held->expires_at();
  CHECK(eventually([&] { return held->expires_at() > before; }));  // the keepalive too
  CHECK(held->state() == sqlock::lease_state::held);

  // Down to 1 drops only the semaphore tables (and later columns): a live lock is no obstacle,
  // its row stays. (Renewals need the library's schema, as every operation does: schema 9's
  // renewal reads the release-request columns.)
  CHECK(b.db->migrate(1, soon(30s)) == 1);
  CHECK(b.db->migrate(latest, soon(30s)) == latest);
  auto kept = b.db->inspect("job", soon(30s));
  REQUIRE(kept);
  CHECK(kept->token == token);
  CHECK(held->renew());

  // Once it is released, the schema may go.
  held->release();
  CHECK(b.db->migrate(0, soon(30s)) == 0);
  CHECK(b.db->migrate(latest, soon(30s)) == latest);
  CHECK(b.seen().empty());
}

TEST_CASE_TEMPLATE("migrate down is refused while a semaphore holder is live, allowed after expiry",
                   F, SQLOCK_TEST_FIXTURES) {
  F fixture;
  logged_backend b(fixture);
  const int latest = b.db->latest_schema_version();
  auto a = make_client(fixture, "holder-s");
  auto held = a->try_acquire_semaphore("pool", sem(true));
  REQUIRE(held);

  auto message = refusal([&] { b.db->migrate(1, soon(30s)); }, errc::invalid_argument);
  CHECK(contains(message, "1 live lease or semaphore holder"));
  CHECK(contains(message, "semaphore 'pool'"));
  CHECK(contains(message, "--force"));
  CHECK(refusal([&] { b.db->migrate(0, soon(30s)); }, errc::invalid_argument) == message);
  CHECK(b.db->schema_version(soon(30s)) == latest);
  auto rec = a->inspect_semaphore("pool");
  REQUIRE(rec);
  CHECK(rec->holders.size() == 1);
  CHECK(held->renew());

  held->release();
  // A holder whose lease lapsed (no keepalive) is no obstacle either.
  auto lapsing = a->try_acquire_semaphore("pool", sem(false));
  REQUIRE(lapsing);
  CHECK(refusal([&] { b.db->migrate(1, soon(30s)); }, errc::invalid_argument) != "");
  // lost() comes at the local safety deadline, before the database's expiry: wait for the latter.
  CHECK(eventually([&] {
    auto r = a->inspect_semaphore("pool");
    return !r || r->holders.empty();
  }));
  CHECK(b.db->migrate(1, soon(30s)) == 1);
  CHECK(b.db->migrate(latest, soon(30s)) == latest);
  CHECK(b.seen().empty());
}

TEST_CASE_TEMPLATE("migrate down with force drops live leases and warns", F, SQLOCK_TEST_FIXTURES) {
  F fixture;
  logged_backend b(fixture);
  auto a = make_client(fixture, "holder-f");
  auto held = a->try_acquire("job", short_ttl(false));
  auto unit = a->try_acquire_semaphore("pool", sem(false));
  REQUIRE(held);
  REQUIRE(unit);
  sqlock::migrate_options force;
  force.force = true;
  CHECK(b.db->migrate_with(0, force, soon(30s)) == 0);
  CHECK(b.db->schema_version(soon(30s)) == 0);
  auto warnings = b.seen();
  // One per step down: the first names everything the steps to 0 drop.
  REQUIRE(warnings.size() == static_cast<std::size_t>(b.db->latest_schema_version()));
  CHECK(contains(warnings.front(), "semaphore 'pool'"));
  CHECK(contains(warnings.front(), "lock 'job'"));
  CHECK(contains(warnings.back(), "lock 'job'"));
  for (const auto& w : warnings) CHECK(contains(w, "(force)"));
}
