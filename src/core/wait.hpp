// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: a waiter sleeps until the earliest of (the holder's expiry as the database computed
// it, a release wake-up, this backoff, the caller's deadline), then tries again. The backoff is
// capped and jittered so that waiters never poll in lockstep; its cap is short when releases by
// other processes cannot wake us (SQLite, or PostgreSQL without working notifications) and
// long when they can (the backoff is then only a safety net for a lost notification).

#include <chrono>

namespace sqlock::detail {

class backoff {
 public:
  static constexpr std::chrono::milliseconds initial{2};
  static constexpr std::chrono::milliseconds cap_unsignalled{250};
  static constexpr std::chrono::milliseconds cap_signalled{2000};

  explicit backoff(bool signalled) noexcept : cap_(signalled ? cap_signalled : cap_unsignalled) {}
  /// The next sleep: uniform in [d/2, d], d doubling from `initial` up to the cap.
  std::chrono::milliseconds next();

 private:
  std::chrono::milliseconds current_{initial};
  std::chrono::milliseconds cap_;
};

}  // namespace sqlock::detail
