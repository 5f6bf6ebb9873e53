// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Optional helpers for applications that hold their own Connector/C connection (`MYSQL*`) to
/// the lock database: same-database fencing on MariaDB and MySQL. Unlike the core headers, this
/// one includes <mysql.h> (libmariadb-dev).

#include <mysql.h>

#include <cstdint>
#include <string_view>

#include <sqlock/export.hpp>

namespace sqlock::mariadb {

/// Effects: checks, inside the caller's own open transaction on `db`, that `token` is the live
/// lease of lock `name` by the server's clock (`SELECT sqlock_assert_held(name, token)`), and
/// share-locks the lock row until that transaction ends, so no takeover can commit in between:
/// the check and the protected writes are one atomic fact. Keep such transactions well under
/// ttl/2: meanwhile the holder's own renewals skip the row. The connection's user needs EXECUTE
/// on the function (see migrations/mariadb/001_locks.up.sql).
/// Throws: `errc::lease_lost` when the lease is not live; `errc::usage` outside a transaction
/// (START TRANSACTION first, or autocommit off); `errc::unavailable` /
/// `errc::schema_mismatch` / `errc::invalid_argument` (no EXECUTE) on database errors.
SQLOCK_EXPORT void assert_held(MYSQL* db, std::string_view name, std::int64_t token);
/// As `assert_held`, for a semaphore: `token` must be a live holder of the semaphore `name`
/// (`sqlock_semaphore_assert_held`; only that holder's row is share-locked).
SQLOCK_EXPORT void assert_semaphore_held(MYSQL* db, std::string_view name, std::int64_t token);

}  // namespace sqlock::mariadb
