// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the SQL backends that decide in C++ (SQLite, MariaDB) read from their rows, decoded the
// same way: lock and semaphore records, history records, a semaphore's state as a grant sees
// it, and the live leases a down migration would drop. Templates over the backend's
// connection and statement types, which share one shape (prepare(sql, what) -> statement with
// bind, step, integer, is_null, text); the backends differ in the statements' text and in the
// stored unit of time (`stored_time`).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <sqlock/backend.hpp>

#include "backends/common/backend_common.hpp"
#include "backends/common/history.hpp"

namespace sqlock::detail {

/// How a backend stores instants: epoch milliseconds (SQLite) or microseconds (MariaDB).
struct stored_time {
  std::int64_t per_ms = 1;
  std::chrono::system_clock::time_point at(std::int64_t v) const {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::microseconds{v * (1000 / per_ms)}));
  }
  /// A stored duration in milliseconds, rounded down (a time left is never overstated).
  std::chrono::milliseconds ms(std::int64_t d) const {
    return std::chrono::milliseconds{d >= 0 ? d / per_ms : -((-d + per_ms - 1) / per_ms)};
  }
  /// A time left that is known to be positive: at least 1 ms.
  std::chrono::milliseconds left(std::int64_t d) const {
    return std::max(std::chrono::milliseconds{1}, ms(d));
  }
  std::int64_t of(std::chrono::milliseconds d) const { return d.count() * per_ms; }
};

/// A row (name, owner, metadata, token, acquired_at, expires_at, expires_at - now).
template <class Statement>
lock_record read_lock_record(const Statement& s, stored_time t) {
  lock_record r;
  r.name = s.text(0);
  r.owner = s.text(1);
  r.metadata = s.text(2);
  r.token = s.integer(3);
  r.acquired_at = t.at(s.integer(4));
  r.expires_at = t.at(s.integer(5));
  r.held = s.integer(6) > 0;
  r.expires_in = r.held ? t.left(s.integer(6)) : t.ms(s.integer(6));
  return r;
}

/// The semaphore `name` with `limit` as seen at `now`: its live holders (`holders_sql`: owner,
/// metadata, token, units, acquired_at, expires_at) and queued waiters (`tickets_sql`: owner,
/// ticket, units, expires_at), both taking ?1 name, ?2 now.
template <class Connection>
semaphore_record read_semaphore_rows(Connection& c, const char* holders_sql,
                                     const char* tickets_sql, std::string name, std::int64_t limit,
                                     std::int64_t now, stored_time t, const std::string& what) {
  semaphore_record rec;
  rec.name = std::move(name);
  rec.limit = limit;
  auto h = c.prepare(holders_sql, what);
  h.bind(1, rec.name).bind(2, now);
  while (h.step()) {
    semaphore_holder x;
    x.owner = h.text(0);
    x.metadata = h.text(1);
    x.token = h.integer(2);
    x.count = h.integer(3);
    x.acquired_at = t.at(h.integer(4));
    x.expires_at = t.at(h.integer(5));
    x.expires_in = t.left(h.integer(5) - now);
    rec.used += x.count;
    rec.holders.push_back(std::move(x));
  }
  auto k = c.prepare(tickets_sql, what);
  k.bind(1, rec.name).bind(2, now);
  while (k.step())
    rec.waiters.push_back({k.text(0), k.integer(1), k.integer(2), t.left(k.integer(3) - now)});
  return rec;
}

/// A history row (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how).
template <class Statement>
history_record read_history_row(const Statement& s, stored_time t, std::string_view backend) {
  history_record h;
  h.kind = s.text(0) == "semaphore" ? lease_kind::semaphore : lease_kind::lock;
  h.name = s.text(1);
  h.token = s.integer(2);
  h.owner = s.text(3);
  h.metadata = s.text(4);
  h.count = s.integer(5);
  h.granted_at = t.at(s.integer(6));
  h.ended_how = parse_lease_end(s.text(8), backend);
  if (h.ended_how != lease_end::live) h.ended_at = t.at(s.integer(7));
  return h;
}

/// A semaphore as one attempt sees it (inside or outside the write transaction).
struct semaphore_state {
  bool exists = false;
  std::int64_t limit = 0, token = 0, used = 0;
  std::optional<std::int64_t> head, mine;  // oldest other live ticket; this nonce's ticket
  bool others_queued = false;
  std::int64_t soonest = 0;  // first lapse of a holder or another ticket (stored time); 0: none
  bool grantable(const semaphore_request& r) const {
    if (used > 0 && limit != r.limit) return true;  // let the write transaction report it
    if (used + r.count > r.limit) return false;
    return !head || (mine && *mine < *head);  // no older live ticket
  }
  std::chrono::milliseconds retry_in(std::int64_t now, stored_time t) const {
    return soonest == 0 ? std::chrono::milliseconds::zero() : t.left(soonest - now);
  }
};

/// The semaphore `name` at `now` for the attempt of `nonce`: its row (`row_sql`: limit, token;
/// ?1 name), usage (`usage_sql`: sum of live units, first lapse; ?1 name, ?2 now) and queue
/// (`queue_sql`: oldest other ticket, this nonce's, first lapse of another; ?3 nonce).
template <class Connection>
semaphore_state read_semaphore_state(Connection& c, const char* row_sql, const char* usage_sql,
                                     const char* queue_sql, const std::string& name,
                                     const std::string& nonce, std::int64_t now,
                                     const std::string& what) {
  semaphore_state v;
  auto sem = c.prepare(row_sql, what);
  sem.bind(1, name);
  if (!sem.step()) return v;
  v.exists = true;
  v.limit = sem.integer(0);
  v.token = sem.integer(1);
  auto h = c.prepare(usage_sql, what);
  h.bind(1, name).bind(2, now);
  h.step();
  v.used = h.integer(0);
  if (!h.is_null(1)) v.soonest = h.integer(1);
  auto q = c.prepare(queue_sql, what);
  q.bind(1, name).bind(2, now).bind(3, nonce);
  q.step();
  if (!q.is_null(0)) v.head = q.integer(0);
  if (!q.is_null(1)) v.mine = q.integer(1);
  v.others_queued = v.head.has_value();
  if (!q.is_null(2)) v.soonest = v.soonest == 0 ? q.integer(2) : std::min(v.soonest, q.integer(2));
  return v;
}

/// errc::invalid_argument when the semaphore's live holders use another limit than `r`'s.
inline void check_semaphore_limit(const semaphore_state& v, const semaphore_request& r,
                                  const std::string& what, std::string_view backend) {
  if (v.exists && v.used > 0 && v.limit != r.limit)
    throw error(errc::invalid_argument,
                what + ": the semaphore has limit " + std::to_string(v.limit) +
                    " (its live holders use it); this acquisition asks for limit " +
                    std::to_string(r.limit),
                std::string(backend));
}

/// Adds to `live` the live leases a table's `count_sql` lists (count(*) OVER (), name, token,
/// owner; ?1 now), under `label`.
template <class Connection>
void count_live_leases(Connection& c, const char* count_sql, std::int64_t now, const char* label,
                       live_leases& live, const std::string& what) {
  auto s = c.prepare(count_sql, what);
  s.bind(1, now);
  std::int64_t total = 0;
  while (s.step()) {
    total = s.integer(0);
    live.add(label, s.text(1), s.integer(2), s.text(3));
  }
  live.total(total);
}

}  // namespace sqlock::detail
