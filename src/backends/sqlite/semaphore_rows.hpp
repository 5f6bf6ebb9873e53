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

#include "backends/sqlite/connection.hpp"

namespace sqlock::detail::sqlite {

// A semaphore as one attempt sees it (inside or outside the write transaction).
struct semaphore_state {
  bool exists = false;
  std::int64_t limit = 0, token = 0, used = 0;
  std::optional<std::int64_t> head, mine;  // oldest other live ticket; this nonce's ticket
  bool others_queued = false;
  std::int64_t soonest = 0;  // first lapse of a holder or another ticket (epoch ms); 0: none

  bool grantable(const semaphore_request& r) const {
    if (used > 0 && limit != r.limit) return true;  // let the write transaction report it
    if (used + r.count > r.limit) return false;
    return !head || (mine && *mine < *head);  // no older live ticket
  }
  std::chrono::milliseconds retry_in(std::int64_t now) const;
};

semaphore_state semaphore_view(connection& c, const std::string& name, const std::string& nonce,
                               std::int64_t now, const std::string& what);

/// errc::invalid_argument when the semaphore's live holders use another limit than `r`'s.
void check_semaphore_limit(const semaphore_state& v, const semaphore_request& r,
                           const std::string& what);

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
