// SPDX-License-Identifier: Apache-2.0
#pragma once
// Decoding the PostgreSQL backend's result rows: server times (integer epoch microseconds), lock
// rows into lock_record, the flat semaphore rows into semaphore_record.

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <sqlock/backend.hpp>

#include "backends/postgresql/connection.hpp"

namespace sqlock::detail::pg {

using std::chrono::milliseconds;

inline std::chrono::system_clock::time_point from_epoch_us(std::int64_t us) {
  return std::chrono::system_clock::time_point{
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds{us})};
}

inline milliseconds us_to_ms(std::int64_t us) {
  // Round toward zero; a positive remainder below 1 ms still means "held".
  return milliseconds{us / 1000};
}

/// The grant of an acquire statement's row: (granted, token, acquired_at_us, expires_at_us, ...).
inline grant read_grant(const result& r) {
  return grant{r.integer(0, 1), from_epoch_us(r.integer(0, 2)), from_epoch_us(r.integer(0, 3))};
}

/// The handoff a lock release row reports in columns 4-8 (nonce, token, attempt, acquired_us,
/// expires_us), or empty when it handed nothing over (or the statement has no such columns).
inline std::optional<handoff> read_handoff(const result& r, int row) {
  if (r.columns() < 9 || r.null(row, 4)) return std::nullopt;
  return handoff{
      r.text(row, 4),
      grant{r.integer(row, 5), from_epoch_us(r.integer(row, 7)), from_epoch_us(r.integer(row, 8))},
      r.integer(row, 6)};
}

/// What the rows of a release, abandon or force statement report (see statements::release):
/// a live lease ended, anything changed (a lease, or a semaphore waiter's ticket), the row is
/// locked by another open transaction, and the waiters handed a grant (one for a lock, any
/// number for a semaphore).
struct ended_rows {
  bool ended = false, changed = false, locked = false;
  std::vector<handoff> handed;
  /// The handed grants ran under the releasing connection's server epoch.
  void stamp(std::uint64_t epoch) {
    for (auto& h : handed) h.granted.server_epoch = epoch;
  }
};

inline ended_rows read_ended(const result& r) {
  ended_rows out;
  for (int row = 0; row < r.rows(); ++row) {
    if (r.boolean(row, 2)) {
      out.locked = true;
      continue;
    }
    out.changed = true;
    out.ended = out.ended || r.boolean(row, 0);
    if (auto h = read_handoff(r, row)) out.handed.push_back(std::move(*h));
  }
  return out;
}

/// A row of statements::inspect / list (and the first columns of inspect_watched).
lock_record read_record(const result& r, int row);

/// The flat rows of statements::sem_inspect / sem_list, grouped per semaphore.
std::vector<semaphore_record> read_semaphores(const result& r);

}  // namespace sqlock::detail::pg
