// SPDX-License-Identifier: Apache-2.0
// Decoding result rows into lock_record and semaphore_record.

#include "backends/mariadb/rows.hpp"

#include <utility>

#include "backends/mariadb/statements.hpp"

namespace sqlock::detail::mariadb {

lock_record read_record(const statement& s) {
  lock_record r;
  r.name = s.text(0);
  r.owner = s.text(1);
  r.metadata = s.text(2);
  r.token = s.integer(3);
  r.acquired_at = from_epoch_us(s.integer(4));
  r.expires_at = from_epoch_us(s.integer(5));
  const std::int64_t left = s.integer(6);
  r.held = left > 0;
  // Held leases show at least 1 ms left, so `held` and `expires_in > 0` agree.
  r.expires_in = r.held ? std::max(milliseconds{1}, ms_floor(left)) : ms_floor(left);
  return r;
}

semaphore_record read_semaphore(connection& c, std::string name, std::int64_t limit,
                                std::int64_t now, const std::string& what) {
  semaphore_record rec;
  rec.name = std::move(name);
  rec.limit = limit;
  auto h = c.prepare(sql::semaphore_holders, what);
  h.bind(1, rec.name).bind(2, now);
  while (h.step()) {
    semaphore_holder x;
    x.owner = h.text(0);
    x.metadata = h.text(1);
    x.token = h.integer(2);
    x.count = h.integer(3);
    x.acquired_at = from_epoch_us(h.integer(4));
    x.expires_at = from_epoch_us(h.integer(5));
    x.expires_in = std::max(milliseconds{1}, ms_floor(h.integer(5) - now));
    rec.used += x.count;
    rec.holders.push_back(std::move(x));
  }
  auto t = c.prepare(sql::semaphore_tickets, what);
  t.bind(1, rec.name).bind(2, now);
  while (t.step())
    rec.waiters.push_back({t.text(0), t.integer(1), t.integer(2),
                           std::max(milliseconds{1}, ms_floor(t.integer(3) - now))});
  return rec;
}

}  // namespace sqlock::detail::mariadb
