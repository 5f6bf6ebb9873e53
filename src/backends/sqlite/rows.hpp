// SPDX-License-Identifier: Apache-2.0
#pragma once
// Decoding result rows into lock_record and semaphore_record (with its holders and waiters).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include <sqlock/backend.hpp>

#include "backends/common/rows.hpp"
#include "backends/sqlite/connection.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::sqlite {

/// Epoch milliseconds: the unit of this backend's times.
inline constexpr stored_time ms_time{1};

/// A row of sql::lock_inspect or sql::lock_list.
inline lock_record read_record(const statement& s) { return read_lock_record(s, ms_time); }

/// The semaphore `name` with `limit` as seen at `now` (epoch ms): its live holders and queued
/// waiters, read in the caller's transaction.
inline semaphore_record read_semaphore(connection& c, std::string name, std::int64_t limit,
                                       std::int64_t now, const std::string& what) {
  return read_semaphore_rows(c, sql::semaphore_holders, sql::semaphore_tickets, std::move(name),
                             limit, now, ms_time, what);
}

/// A renewal's row (sql::lock_renew, sql::holder_renew: the new expiry, then a pending release
/// request's deadline or NULL), read at `now` (epoch ms, the transaction's clock).
inline renew_result renewed(std::int64_t now, const statement& s) {
  renew_result r;
  r.outcome = renew_outcome::renewed;
  r.expires_at = from_epoch_ms(s.integer(0));
  r.expires_in = std::chrono::milliseconds{std::max<std::int64_t>(1, s.integer(0) - now)};
  if (!s.is_null(1))
    r.revoke_in = std::chrono::milliseconds{std::max<std::int64_t>(0, s.integer(1) - now)};
  return r;
}

}  // namespace sqlock::detail::sqlite
