// SPDX-License-Identifier: Apache-2.0
#pragma once
// Threads in tests: clean-up that runs when a REQUIRE throws, joining, elapsed time.

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

namespace sqlock_test {

using steady = std::chrono::steady_clock;

/// Runs `f` when the scope ends, also when a REQUIRE throws: releases what blocked threads wait
/// for and joins them, so a failing check never leaves a joinable std::thread behind.
struct scope_guard {
  std::function<void()> f;
  ~scope_guard() {
    try {
      f();
    } catch (...) {
    }
  }
};

inline void join_all(std::vector<std::thread>& ts) {
  for (auto& t : ts)
    if (t.joinable()) t.join();
}

inline long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

}  // namespace sqlock_test
