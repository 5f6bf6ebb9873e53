// SPDX-License-Identifier: Apache-2.0
// Decoding result rows of the PostgreSQL backend: a lock row into lock_record, the flat rows of
// a semaphore query into semaphore_record with its holders and waiters.

#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

lock_record read_record(const result& r, int row) {
  lock_record out;
  out.name = r.text(row, 0);
  out.owner = r.text(row, 1);
  out.metadata = r.text(row, 2);
  out.token = r.integer(row, 3);
  out.acquired_at = from_epoch_us(r.integer(row, 4));
  out.expires_at = from_epoch_us(r.integer(row, 5));
  std::int64_t left = r.integer(row, 6);
  out.expires_in = us_to_ms(left);
  out.held = left > 0;
  if (out.held && out.expires_in <= milliseconds::zero()) out.expires_in = milliseconds{1};
  return out;
}

std::vector<semaphore_record> read_semaphores(const result& r) {
  std::vector<semaphore_record> out;
  for (int row = 0; row < r.rows(); ++row) {
    const auto part = r.integer(row, 0);
    if (part == 0) {
      semaphore_record s;
      s.name = r.text(row, 1);
      s.limit = r.integer(row, 2);
      s.used = r.integer(row, 3);
      out.push_back(std::move(s));
      continue;
    }
    if (out.empty() || out.back().name != r.text(row, 1))
      throw error(errc::internal, "postgresql: semaphore rows out of order", kind_name);
    auto left = us_to_ms(r.integer(row, 9));
    if (left <= milliseconds::zero()) left = milliseconds{1};  // live: by the same snapshot
    if (part == 1) {
      semaphore_holder h;
      h.count = r.integer(row, 3);
      h.owner = r.text(row, 4);
      h.metadata = r.text(row, 5);
      h.token = r.integer(row, 6);
      h.acquired_at = from_epoch_us(r.integer(row, 7));
      h.expires_at = from_epoch_us(r.integer(row, 8));
      h.expires_in = left;
      out.back().holders.push_back(std::move(h));
    } else {
      semaphore_waiter w;
      w.count = r.integer(row, 3);
      w.owner = r.text(row, 4);
      w.ticket = r.integer(row, 6);
      w.expires_in = left;
      out.back().waiters.push_back(std::move(w));
    }
  }
  return out;
}

}  // namespace sqlock::detail::pg
