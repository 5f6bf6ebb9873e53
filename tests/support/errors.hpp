// SPDX-License-Identifier: Apache-2.0
#pragma once
// The error a call throws, for checks on its code and message.

#include <functional>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

namespace sqlock_test {

/// The sqlock::error that `fn` throws; fails the test case when it throws none.
inline sqlock::error error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const sqlock::error& e) {
    return e;
  }
  FAIL("expected a sqlock::error");
  return sqlock::error(sqlock::errc::internal, "");
}

/// The errc of the sqlock::error that `fn` throws; fails the test case when it throws none.
inline sqlock::errc code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const sqlock::error& e) {
    return e.code();
  }
  FAIL("expected a sqlock::error");
  return sqlock::errc::internal;
}

}  // namespace sqlock_test
