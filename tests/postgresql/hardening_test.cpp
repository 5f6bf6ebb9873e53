// PostgreSQL only, hardening: an exhausted token sequence is schema_mismatch with a way out, and
// the largest operation_timeout still lets calls succeed.

#include <doctest/doctest.h>
#include <sqlock/sqlock.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "support/fixtures.hpp"

using namespace std::chrono_literals;

TEST_SUITE("postgresql") {
TEST_CASE("an exhausted PostgreSQL token sequence is schema_mismatch with a way out") {
  sqlock_test::postgresql_fixture db;
  {
    sqlock_test::pg_session s(db.direct_url());
    s.query("ALTER SEQUENCE " + s.ident(db.schema()) +
            ".sqlock_token_seq RESTART WITH 9223372036854775807");
  }
  auto c = sqlock_test::make_client(db);
  auto last = c->try_acquire("a");
  REQUIRE(last.has_value());
  CHECK(last->token() == std::numeric_limits<std::int64_t>::max());
  try {
    (void)c->try_acquire("b");
    FAIL("granted past the last token");
  } catch (const sqlock::error& e) {
    CHECK(e.code() == sqlock::errc::schema_mismatch);
    CHECK(e.sqlstate() == "2200H");
    CHECK(std::string(e.what()).find("exhausted") != std::string::npos);
  }
}

TEST_CASE("the largest operation_timeout still lets PostgreSQL calls succeed") {
  sqlock_test::postgresql_fixture db;
  auto o = db.options();
  o.operation_timeout = 24h;
  sqlock::client c(db.url(), o);
  auto l = c.try_acquire("big-timeout");
  CHECK(l.has_value());
}
}
