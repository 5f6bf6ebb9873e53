// SPDX-License-Identifier: Apache-2.0
#pragma once
// Tokens for the checks on fencing and on the end of the token range, the same on every backend.

#include <cstdint>
#include <limits>
#include <string>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

namespace sqlock_test {

/// The token of a lease of `name` granted and released at once: a token that no live holder
/// has, for the checks that nothing accepts it.
inline std::int64_t stale_token(sqlock::client& c, const std::string& name,
                                const sqlock::lock_options& o) {
  auto old = c.try_acquire(name, o);
  REQUIRE(old);
  const auto stale = old->token();
  old->release();
  return stale;
}

/// With the token counter one short of its end: "a" is granted the last token, and "b" is
/// refused as schema_mismatch ("exhausted") rather than granted a repeated one. Returns the
/// refusal's SQLSTATE, which only PostgreSQL has.
inline std::string check_tokens_run_out(sqlock::client& c) {
  auto last = c.try_acquire("a");
  REQUIRE(last.has_value());
  CHECK(last->token() == std::numeric_limits<std::int64_t>::max());
  try {
    (void)c.try_acquire("b");
    FAIL("granted past the last token");
  } catch (const sqlock::error& e) {
    CHECK(e.code() == sqlock::errc::schema_mismatch);
    CHECK(std::string(e.what()).find("exhausted") != std::string::npos);
    return e.sqlstate();
  }
  return {};
}

}  // namespace sqlock_test
