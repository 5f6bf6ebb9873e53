// SPDX-License-Identifier: Apache-2.0
#pragma once
// A log hook that keeps every line, for checks on what a client or backend reported.

#include <algorithm>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sqlock/sqlock.hpp>

namespace sqlock_test {

struct log_capture {
  std::mutex mu;
  std::vector<std::pair<sqlock::log_level, std::string>> lines;
  std::function<void(sqlock::log_level, std::string_view)> hook() {
    return [this](sqlock::log_level l, std::string_view m) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(l, std::string(m));
    };
  }
  bool has(sqlock::log_level l, const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    return std::any_of(lines.begin(), lines.end(), [&](auto& p) {
      return p.first == l && p.second.find(needle) != std::string::npos;
    });
  }
  bool contains(const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    return std::any_of(lines.begin(), lines.end(),
                       [&](auto& p) { return p.second.find(needle) != std::string::npos; });
  }
};

}  // namespace sqlock_test
