// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only, hardening: an exhausted token sequence is schema_mismatch with a way out, and
// the largest operation_timeout still lets calls succeed.

#include <chrono>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/tokens.hpp"

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
    CHECK(sqlock_test::check_tokens_run_out(*c) == "2200H");
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
