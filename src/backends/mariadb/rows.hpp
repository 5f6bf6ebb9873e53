// SPDX-License-Identifier: Apache-2.0
#pragma once
// Time units, the renewal rule, and decoding result rows into lock_record and semaphore_record.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <sqlock/backend.hpp>

#include "backends/common/rows.hpp"
#include "backends/mariadb/connection.hpp"
#include "backends/mariadb/statements.hpp"

namespace sqlock::detail::mariadb {

/// Epoch microseconds: the unit of this backend's times.
inline constexpr stored_time us_time{1000};
inline std::int64_t us(std::chrono::milliseconds d) { return us_time.of(d); }
inline std::chrono::system_clock::time_point from_epoch_us(std::int64_t v) { return us_time.at(v); }
/// A duration in µs as milliseconds, rounded down (a time left is never overstated).
inline std::chrono::milliseconds ms_floor(std::int64_t v) { return us_time.ms(v); }

/// A renewal's new expiry (and a handed lease's): later, never earlier, than `expires`; and for
/// a lease with a pending release request (`revoke_by` set: revoke_token is its token) never
/// past that request's deadline.
inline std::int64_t renewed_expiry(std::int64_t expires, std::int64_t now, std::int64_t ttl_us,
                                   std::optional<std::int64_t> revoke_by) {
  const std::int64_t want = now + ttl_us;
  return std::max(expires, revoke_by ? std::min(want, *revoke_by) : want);
}

/// The result of a renewal that wrote `expires` at `now`.
inline renew_result renewed(std::int64_t now, std::int64_t expires,
                            std::optional<std::int64_t> revoke_by) {
  renew_result r;
  r.outcome = renew_outcome::renewed;
  r.expires_at = from_epoch_us(expires);
  r.expires_in = std::max(std::chrono::milliseconds{1}, ms_floor(expires - now));
  if (revoke_by) r.revoke_in = std::max(std::chrono::milliseconds{0}, ms_floor(*revoke_by - now));
  return r;
}

/// A row of sql::lock_inspect or sql::lock_list.
inline lock_record read_record(const statement& s) { return read_lock_record(s, us_time); }

/// The semaphore `name` with `limit` as seen at `now` (epoch µs): its live holders and queued
/// waiters.
inline semaphore_record read_semaphore(connection& c, std::string name, std::int64_t limit,
                                       std::int64_t now, const std::string& what) {
  return read_semaphore_rows(c, sql::semaphore_holders, sql::semaphore_tickets, std::move(name),
                             limit, now, us_time, what);
}

}  // namespace sqlock::detail::mariadb
