// SPDX-License-Identifier: Apache-2.0
#pragma once
// A semaphore's rows as one write transaction reads and changes them: what the backend's
// acquire and release (semaphores.cpp) and the SQL functions on the application's own
// connection (sql_api.cpp) share, so both grant, release and hand off alike.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sqlock/backend.hpp>

#include "backends/common/rows.hpp"
#include "backends/sqlite/connection.hpp"
#include "backends/sqlite/errors.hpp"
#include "backends/sqlite/statements.hpp"

namespace sqlock::detail::sqlite {

using detail::semaphore_state;

// The semaphore `name` as the attempt of `nonce` sees it at `now` (inside or outside the write
// transaction).
inline semaphore_state semaphore_view(connection& c, const std::string& name,
                                      const std::string& nonce, std::int64_t now,
                                      const std::string& what) {
  return read_semaphore_state(c, sql::semaphore_row, sql::semaphore_usage, sql::semaphore_queue,
                              name, nonce, now, what);
}

/// errc::invalid_argument when the semaphore's live holders use another limit than `r`'s.
inline void check_semaphore_limit(const semaphore_state& v, const semaphore_request& r,
                                  const std::string& what) {
  detail::check_semaphore_limit(v, r, what, kind_name);
}

/// Grants `r` (seen as `v`, grantable) in c's open write transaction at `now`: ended holders
/// and lapsed tickets (and this nonce's) go, a holder row with a new token comes. Its token.
std::int64_t add_holder(connection& c, const semaphore_request& r, const semaphore_state& v,
                        std::int64_t now, const std::string& what);

/// Ends the holder `key` (`abandon`: the nonce's ticket first, then whatever it holds) in c's
/// open write transaction at `now`, and hands the room to the oldest live tickets that fit.
struct holder_end {
  bool ended = false;           // a live holder ended
  bool ticket_dropped = false;  // abandon: the nonce's ticket went
  std::vector<handoff> handed;  // the waiters handed units, in ticket order
};
holder_end end_holder_rows(connection& c, const lease_key& key, bool abandon, std::int64_t now,
                           const std::string& what);

}  // namespace sqlock::detail::sqlite
