// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only: the statements sqlock sends. Each operation is one statement (counted with
// pg_stat_statements as the least-privilege runtime role), a refused attempt writes nothing and
// draws no token, and the renew-many JSON encoder quotes every string.

#include <string>

#include <doctest/doctest.h>

#include "backends/postgresql/json.hpp"
#include "support/fixtures.hpp"
#include "support/requests.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;

namespace {

// Without notifications: the listener's own LISTEN and self-test would show up in the counts.
sqlock::backend_options counting_options(const postgresql_fixture& db) {
  auto o = db.options().backend;
  o.notifications = false;
  return o;
}

// The warm-ups' releases are checked by their effect, not by their result: the first waiting
// release on a connection also prepares its statement, and on a loaded machine (TSan, 2 cores)
// that round trip can outlast the release's 100 ms window for a locked row. Its reply is then
// dropped with its connection, and the non-waiting retry finds the lease already ended: false.
void require_released(sqlock::backend& b, const std::string& name, bool semaphore = false) {
  if (semaphore) {
    auto s = b.inspect_semaphore(name, soon());
    REQUIRE(s);
    REQUIRE(s->holders.empty());
  } else {
    auto r = b.inspect(name, soon());
    REQUIRE(r);
    REQUIRE_FALSE(r->held);
  }
}

// pg_stat_statements of one role: statements executed and WAL records they wrote.
struct statement_counter {
  pg_session admin{admin_url()};
  std::string role;
  explicit statement_counter(std::string r) : role(std::move(r)) {}
  void reset() { admin.query("SELECT pg_stat_statements_reset($1::regrole::oid)", {role}); }
  long calls() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE userid = $1::regrole",
        {role}));
  }
  /// Statements sent by the client (pg_stat_statements.track = all also counts the statements
  /// a function runs: those are not round trips).
  long top_calls() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE userid = $1::regrole "
        "AND toplevel",
        {role}));
  }
  long wal_records() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(wal_records), 0) FROM pg_stat_statements WHERE userid = $1::regrole",
        {role}));
  }
  std::string dump() {
    std::string out;
    for (auto& r : admin.query("SELECT calls, query FROM pg_stat_statements WHERE userid = "
                               "$1::regrole",
                               {role}))
      out += r[0] + "x " + r[1].substr(0, 80) + "\n";
    return out;
  }
};

}  // namespace

TEST_SUITE("postgresql") {
  TEST_CASE(
      "acquire, renew, renew-many and release are one statement each; a refusal writes "
      "nothing") {
    postgresql_fixture db;
    grant_runtime(db.schema());
    auto b = sqlock::open_backend(required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL"),
                                  counting_options(db));
    // Warm up: connections, prepared statements, the dedicated renew connection.
    REQUIRE(b->schema_version(soon()) == b->latest_schema_version());
    auto w = b->try_acquire(request("warm", "w"), soon());
    REQUIRE(w.granted);
    b->renew({{{"warm", "w", w.granted->token}, 30s}}, soon());
    b->release({"warm", "w", w.granted->token}, soon());
    require_released(*b, "warm");

    statement_counter count("sqlock_runtime");
    pg_session raw(db.direct_url());
    auto seq_value = [&] {
      return raw.value("SELECT last_value FROM " + raw.ident(db.schema()) + ".sqlock_token_seq");
    };

    count.reset();
    auto a = b->try_acquire(request("a", "na"), soon());
    REQUIRE(a.granted);
    CHECK_MESSAGE(count.calls() == 1, count.dump());

    count.reset();
    auto r1 = b->renew({{{"a", "na", a.granted->token}, 30s}}, soon());
    CHECK(r1.at(0).outcome == sqlock::renew_outcome::renewed);
    CHECK_MESSAGE(count.calls() == 1, count.dump());

    auto c = b->try_acquire(request("c", "nc"), soon());
    REQUIRE(c.granted);
    count.reset();
    auto r2 = b->renew({{{"a", "na", a.granted->token}, 30s}, {{"c", "nc", c.granted->token}, 30s}},
                       soon());
    CHECK(r2.at(0).outcome == sqlock::renew_outcome::renewed);
    CHECK(r2.at(1).outcome == sqlock::renew_outcome::renewed);
    CHECK_MESSAGE(count.calls() == 1, count.dump());

    // A refused attempt: one statement, no WAL written, no token drawn.
    auto before = seq_value();
    count.reset();
    auto refused = b->try_acquire(request("a", "other"), soon());
    CHECK_FALSE(refused.granted);
    CHECK(refused.holder_expires_in > 25s);
    CHECK_MESSAGE(count.calls() == 1, count.dump());
    CHECK(count.wal_records() == 0);
    CHECK(seq_value() == before);

    count.reset();
    CHECK(b->release({"a", "na", a.granted->token}, soon()));
    CHECK_MESSAGE(count.calls() == 1, count.dump());

    // A grant of a released row is also one statement.
    count.reset();
    auto again = b->try_acquire(request("a", "na2"), soon());
    REQUIRE(again.granted);
    CHECK(again.granted->token > a.granted->token);
    CHECK_MESSAGE(count.calls() == 1, count.dump());
  }

  TEST_CASE(
      "a semaphore grant, a holder's renewal, a mixed renewal and a release are one "
      "statement each; a refused attempt writes nothing") {
    postgresql_fixture db;
    grant_runtime(db.schema());
    auto b = sqlock::open_backend(required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL"),
                                  counting_options(db));
    // Warm up: connections, prepared statements, the dedicated renew connection.
    REQUIRE(b->schema_version(soon()) == b->latest_schema_version());
    auto w = b->try_acquire_semaphore(sem_request("warm", "w", 2), soon());
    REQUIRE(w.granted);
    auto wl = b->try_acquire(request("warm-lock", "wl"), soon());
    REQUIRE(wl.granted);
    b->renew({{holder_key("warm", "w", w.granted->token), 30s},
              {{"warm-lock", "wl", wl.granted->token}, 30s}},
             soon());
    b->release(holder_key("warm", "w", w.granted->token), soon());
    require_released(*b, "warm", true);

    statement_counter count("sqlock_runtime");
    pg_session raw(db.direct_url());
    auto seq_value = [&] {
      return raw.value("SELECT last_value FROM " + raw.ident(db.schema()) + ".sqlock_token_seq");
    };

    count.reset();
    auto g1 = b->try_acquire_semaphore(sem_request("s", "n1", 2), soon());
    REQUIRE(g1.granted);
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());
    auto g2 = b->try_acquire_semaphore(sem_request("s", "n2", 2), soon());
    REQUIRE(g2.granted);
    CHECK(g2.granted->token > g1.granted->token);

    count.reset();
    auto r1 = b->renew({{holder_key("s", "n1", g1.granted->token), 30s}}, soon());
    CHECK(r1.at(0).outcome == sqlock::renew_outcome::renewed);
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());

    auto l = b->try_acquire(request("a-lock", "nl"), soon());
    REQUIRE(l.granted);
    count.reset();
    auto r2 = b->renew({{holder_key("s", "n1", g1.granted->token), 30s},
                        {{"a-lock", "nl", l.granted->token}, 30s},
                        {holder_key("s", "n2", g2.granted->token), 30s}},
                       soon());
    REQUIRE(r2.size() == 3);
    CHECK(r2[0].outcome == sqlock::renew_outcome::renewed);
    CHECK(r2[1].outcome == sqlock::renew_outcome::renewed);
    CHECK(r2[2].outcome == sqlock::renew_outcome::renewed);
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());

    // A refused attempt (the semaphore is full): one statement, no WAL, no token drawn.
    auto before = seq_value();
    count.reset();
    auto refused = b->try_acquire_semaphore(sem_request("s", "n3", 2), soon());
    CHECK_FALSE(refused.granted);
    CHECK(refused.holder_expires_in > 25s);
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());
    CHECK_MESSAGE(count.wal_records() == 0, count.dump());
    CHECK(seq_value() == before);

    count.reset();
    CHECK(b->release(holder_key("s", "n1", g1.granted->token), soon()));
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());
    // Inside the release function (schema 6), with no queue: one statement ends the holder,
    // looks for tickets and reads the wake-up mark.
    MESSAGE("a semaphore release without a queue: " << count.calls() - 1
                                                    << " statements inside the function");
    CHECK_MESSAGE(count.calls() <= 2, count.dump());

    // A grant that also deletes the ended holder row: still one statement, and (schema 6) 4
    // inside the function (one look, the row lock, one count, one grant), where schema 2's
    // function ran 11 (a semaphore cycle: 7 statements counted with pg_stat_statements.track =
    // all, against 13).
    count.reset();
    auto g3 = b->try_acquire_semaphore(sem_request("s", "n3", 2), soon());
    REQUIRE(g3.granted);
    CHECK(g3.granted->token > g2.granted->token);
    CHECK_MESSAGE(count.top_calls() == 1, count.dump());
    MESSAGE("a semaphore grant: " << count.calls() - 1 << " statements inside the function");
    CHECK_MESSAGE(count.calls() <= 5, count.dump());
    CHECK(raw.value("SELECT count(*) FROM " + raw.ident(db.schema()) +
                    ".sqlock_semaphore_holders WHERE name = 's'") == "2");
  }

  TEST_CASE("the renew-many JSON encoder quotes and escapes every string") {
    using sqlock::detail::pg::json_string;
    CHECK(json_string("plain") == "\"plain\"");
    CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_string("\n\t\x01\x1f\x7f") == "\"\\n\\t\\u0001\\u001f\\u007f\"");
    CHECK(json_string("") == "\"\"");
    // Round trip through the server's JSON parser.
    pg_session raw(required_env("SQLOCK_TEST_POSTGRESQL_URL"));
    for (std::string s : {std::string("caf\xc3\xa9 \xe2\x9c\x93"), std::string("\"},{\"n\":\"x"),
                          std::string("back\\slash\\"), std::string("ctl\x01\x02\x1b\x7f"),
                          std::string("\\u0041"), std::string(255, '"')}) {
      CHECK(raw.value("SELECT $1::json #>> '{}'", {json_string(s)}) == s);
    }
  }

}  // TEST_SUITE
