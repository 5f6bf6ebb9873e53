// SPDX-License-Identifier: Apache-2.0
#include "util/fault_points.hpp"

#ifdef SQLOCK_FAULT_INJECTION
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace sqlock::detail {

namespace {
struct fault_spec {
  std::string point, action;
  long pause_ms = 0;
  long nth = 1;
};

const fault_spec& spec() {
  static const fault_spec s = [] {
    fault_spec f;
    const char* env = std::getenv("SQLOCK_FAULT");
    if (!env) return f;
    std::string v = env;
    if (auto at = v.find('@'); at != std::string::npos) {
      f.nth = std::atol(v.c_str() + at + 1);
      v.resize(at);
    }
    auto c1 = v.find(':');
    if (c1 == std::string::npos) return f;
    f.point = v.substr(0, c1);
    f.action = v.substr(c1 + 1);
    if (f.action.rfind("pause:", 0) == 0) {
      f.pause_ms = std::atol(f.action.c_str() + 6);
      f.action = "pause";
    }
    return f;
  }();
  return s;
}
}  // namespace

void fault_point(const char* point) noexcept {
  const auto& s = spec();
  if (s.point.empty() || s.point != point) return;
  static std::atomic<long> hits{0};
  if (++hits != s.nth) return;
  if (s.action == "crash") raise(SIGKILL);
  if (s.action == "stop") raise(SIGSTOP);
  if (s.action == "pause") std::this_thread::sleep_for(std::chrono::milliseconds{s.pause_ms});
}

}  // namespace sqlock::detail
#endif
