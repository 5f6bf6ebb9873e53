// SPDX-License-Identifier: Apache-2.0
#pragma once
// Tests that wait poll a condition with a deadline; never a bare sleep as synchronisation.
#include <chrono>
#include <functional>
#include <thread>

namespace sqlock_test {

/// Returns true as soon as `cond` holds, false if it does not within `limit`.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds{10}) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{2});
  }
}

}  // namespace sqlock_test
