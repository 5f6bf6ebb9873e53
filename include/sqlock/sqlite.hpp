// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Optional helpers for applications that hold their own `sqlite3*` on the lock database:
/// same-database fencing. Unlike the core headers, this one includes <sqlite3.h>.

#include <sqlite3.h>

#include <cstdint>
#include <string_view>

#include <sqlock/export.hpp>

namespace sqlock::sqlite {

/// Effects: checks, inside the caller's own open transaction on `db`, that `token` is the live
/// lease of `name` by SQLite's clock. Call it in a `BEGIN IMMEDIATE` transaction before the
/// protected writes: while that transaction holds the write lock no takeover can commit, so the
/// check and the writes are one atomic fact. (In a deferred transaction in WAL mode the check
/// is still safe: a takeover that commits after it makes the caller's first write fail with
/// SQLITE_BUSY_SNAPSHOT.) Keep such transactions short: they block every sqlock writer on the
/// file, including the holder's own renewals.
/// Throws: `errc::lease_lost` when the lease is not live; `errc::usage` outside a transaction;
/// `errc::unavailable` / `errc::schema_mismatch` on database errors.
SQLOCK_EXPORT void assert_held(sqlite3* db, std::string_view name, std::int64_t token);

/// As `assert_held`, for a semaphore: `token` must be a live holder of the semaphore `name`.
SQLOCK_EXPORT void assert_semaphore_held(sqlite3* db, std::string_view name, std::int64_t token);

/// Registers the SQL functions `sqlock_assert_held(name, token)` and
/// `sqlock_semaphore_assert_held(name, token)` on `db`, with the semantics of `assert_held` and
/// `assert_semaphore_held`: they return 1, or fail the statement with "sqlock: lease lost ...".
/// And the lock protocol, as on PostgreSQL (docs/sql.md) with the ttl in milliseconds, to be
/// called inside a write transaction (BEGIN IMMEDIATE) so that it commits or rolls back with the
/// caller's work: `sqlock_try_acquire(name, ttl_ms [, owner [, metadata [, nonce]]])` (the
/// fencing token, or NULL when held), `sqlock_renew(name, token, ttl_ms)` and
/// `sqlock_release(name, token)` (1 when the lease was live, else 0); and the semaphore
/// protocol likewise: `sqlock_semaphore_try_acquire(name, limit, count, ttl_ms [, owner
/// [, metadata [, nonce]]])`, `sqlock_semaphore_renew(name, token, ttl_ms)` and
/// `sqlock_semaphore_release(name, token)` (which hands the room to queued fair waiters, as the
/// C++ release does). Bad input fails the statement with the C++ client's message. A release
/// wakes other clients' waiters only at their next attempt (there is no notification channel
/// in SQLite).
/// Returns the SQLite result code.
SQLOCK_EXPORT int register_functions(sqlite3* db);

}  // namespace sqlock::sqlite
