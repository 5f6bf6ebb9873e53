// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Observability: what a client reports to its event listeners (see docs/guide.md for the
/// Prometheus metric each maps to).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <sqlock/export.hpp>

namespace sqlock {

enum class event_kind {
  attempt,       ///< one grant attempt sent to the database
  acquired,      ///< granted; `elapsed` = time from the call to the grant (the wait);
                 ///< `reason` = "handed over" when a release handed the lock to this waiter
  not_acquired,  ///< the call returned without a lease; `reason` = "held", "timed out", "cancelled"
  renewed,       ///< a renewal succeeded; `elapsed` = its round trip
  renew_failed,  ///< a renewal failed transiently (the lease is at risk); `reason` = the error
  lost,          ///< the lease was lost; `reason` as in lost_event
  released,      ///< released by its holder; `elapsed` = how long it was held
  /// A call that waits was refused and goes on waiting (`reason` = "started"), or that wait
  /// ended, however it ended (`reason` = "ended", `elapsed` = the time spent waiting after
  /// the first refusal; it follows the call's `acquired` or `not_acquired`, and is also sent
  /// when the call throws). Every "started" has exactly one "ended": started - ended is the
  /// number of this client's calls waiting now.
  waiting,
  /// Someone asked the holder to let go (client::request_release), heard by a renewal;
  /// `elapsed` = the grace left, by the database clock. Follows no other event; once per lease.
  revoke_requested,
};

SQLOCK_EXPORT const char* to_string(event_kind kind) noexcept;

/// One event. Thread safety: a value; listeners may keep copies.
struct lock_event {
  event_kind kind = event_kind::attempt;
  std::string name;
  std::int64_t token = 0;  ///< 0 when no lease is involved
  std::chrono::milliseconds elapsed{0};
  std::string reason;
};

/// Called synchronously on the thread where the event happens (a user thread, the keepalive or
/// the timer); must be quick and must not block. Exceptions are caught and logged.
using event_listener = std::function<void(const lock_event&)>;

}  // namespace sqlock
