// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: a memory database is the SQLite schema as C++ containers, one struct per table row,
// behind one mutex: every backend call takes the mutex once and runs as one write transaction
// would (BEGIN IMMEDIATE on SQLite), so each call sees and leaves a consistent state and the
// token counter is drawn in the same step as the grant. The clock is read once per call, as
// SQLite binds one `now` per transaction. Releases wake waiters (the watch registry) after the
// mutex is let go, as SQLite does after its commit. The operations mirror the SQLite backend's
// files: memory_locks.cpp beside src/backends/sqlite/locks.cpp, memory_semaphores.cpp beside
// semaphores.cpp, memory_backend.cpp beside admin.cpp and backend.cpp.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <sqlock/testing.hpp>

#include "backends/common/backend_common.hpp"
#include "backends/common/watch_registry.hpp"
#include "util/util.hpp"

namespace sqlock::testing::detail {

using std::chrono::milliseconds;

inline constexpr const char* kind_name = "memory";

// sqlock_locks: one row per lock name, never deleted but by purge (or a migration down).
struct lock_row {
  std::string owner, nonce, metadata;  // nonce "" after a force release
  std::int64_t token = 0;
  std::int64_t acquired_at = 0, expires_at = 0;  // epoch ms; live while now < expires_at
  std::int64_t revoke_token = 0, revoke_by = 0;  // schema 9: a release request on `token`
};

// sqlock_lock_waiters: a queued waiter of a lock (schema 4).
struct lock_ticket {
  std::string owner, metadata;
  std::int64_t ttl_ms = 0;  // the first term of a lock handed to it
  bool fair = false;
  std::int64_t ticket = 0, attempt = 0;
  std::int64_t since = 0, expires_at = 0;
};

// sqlock_semaphore_holders: one live or ended acquisition.
struct holder_row {
  std::string owner, metadata;
  std::int64_t token = 0, units = 0;
  std::int64_t acquired_at = 0, expires_at = 0;
  bool forced = false;                           // ended by an admin
  std::int64_t revoke_token = 0, revoke_by = 0;  // schema 9: a release request on `token`
};

// A renewal's new expiry (lock or holder row): never earlier than it was, and never past a
// pending release request's deadline (the SQLite backend's SQLOCK_RENEWED_EXPIRY).
template <class Row>
std::int64_t renewed_expiry(const Row& row, std::int64_t now, milliseconds ttl) {
  std::int64_t want = now + ttl.count();
  if (row.revoke_token == row.token) want = std::min(want, row.revoke_by);
  return std::max(row.expires_at, want);
}

// Renews `row` (live, ours) at `now` and says how (the time left, a pending request).
template <class Row>
renew_result renew_row(Row& row, std::int64_t now, milliseconds ttl) {
  row.expires_at = renewed_expiry(row, now, ttl);
  renew_result out;
  out.outcome = renew_outcome::renewed;
  out.expires_at = sqlock::detail::from_epoch_ms(row.expires_at);
  out.expires_in = milliseconds{std::max<std::int64_t>(1, row.expires_at - now)};
  if (row.revoke_token == row.token)
    out.revoke_in = milliseconds{std::max<std::int64_t>(0, row.revoke_by - now)};
  return out;
}

// Marks a live row with a release request whose deadline is `by` (never later than an earlier
// request's on the same lease) and caps its expiry there.
template <class Row>
void request_row_release(Row& row, std::int64_t by) {
  if (row.revoke_token == row.token) by = std::min(by, row.revoke_by);
  row.revoke_token = row.token;
  row.revoke_by = by;
  row.expires_at = std::min(row.expires_at, by);
}

// sqlock_semaphore_tickets: a queued fair waiter (schema 2, handoff fields schema 6).
struct semaphore_ticket {
  std::string owner, metadata;
  std::int64_t ticket = 0, units = 0, expires_at = 0;
  std::int64_t ttl_ms = 0, attempt = 0;
};

// sqlock_semaphores, with its holders and tickets by nonce.
struct semaphore_row {
  std::int64_t limit = 0;
  std::int64_t token = 0;       // the last token granted on it
  std::int64_t changed_at = 0;  // holders and tickets deleted had ended by then (for purge)
  std::map<std::string, holder_row> holders;
  std::map<std::string, semaphore_ticket> tickets;
};

struct memory_database {
  memory_database(std::string name, std::shared_ptr<testing::clock> clock, int version);
  memory_database(const memory_database&) = delete;
  memory_database& operator=(const memory_database&) = delete;

  const std::string name;
  const std::shared_ptr<testing::clock> clock;
  sqlock::detail::watch_registry registry;

  std::mutex mu;  // guards everything below
  int version = 0;
  std::int64_t counter = 0;  // sqlock_counters 'token': the last token or ticket drawn
  std::map<std::string, lock_row> locks;
  std::map<std::string, std::map<std::string, lock_ticket>> lock_queues;  // name, nonce
  std::map<std::string, semaphore_row> semaphores;

  // Set after construction (it captures a weak pointer to the database).
  std::shared_ptr<const testing::clock::advance_hook> advance_hook;

  // The database clock in epoch ms, read once per call.
  std::int64_t now_ms() const;
  // The next token (or ticket), at least `floor`; mu held.
  std::int64_t next_token(std::int64_t floor, const std::string& what);
  // schema_mismatch unless the schema is at least `needed` (the tables exist); mu held.
  void require(int needed, const std::string& what) const;
  // "memory database 'NAME'".
  std::string describe() const;
};

// Schema versions that create the tables an operation needs (migrations/sqlite/).
inline constexpr int schema_locks = 1;
inline constexpr int schema_semaphores = 2;
inline constexpr int schema_lock_queue = 4;
inline constexpr int schema_semaphore_handoff = 6;

}  // namespace sqlock::testing::detail
