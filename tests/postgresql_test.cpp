// PostgreSQL-only tests: statement counts, the SQL's concurrency semantics, notifications,
// deadlines on a stalled connection, settings, privileges and redaction.
#include <doctest/doctest.h>

#include "support/fixtures.hpp"

TEST_SUITE("postgresql") {
TEST_CASE("placeholder") { CHECK(true); }
}
