// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Optional helpers for applications that use libpqxx on the lock database: same-database
/// fencing, and releasing a lease, inside their own transaction. Unlike the core headers, this
/// one includes pqxx.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <pqxx/pqxx>

#include <sqlock/client.hpp>
#include <sqlock/error.hpp>
#include <sqlock/lease.hpp>

namespace sqlock::postgresql {

/// The SQLSTATE `sqlock_assert_held` and `sqlock_semaphore_assert_held` raise when the lease is
/// not held.
inline constexpr const char* sqlstate_lease_lost = "SQ001";

/// Effects: inside the caller's transaction `tx`, fails unless `token` is the live lease of
/// `name` by the server clock, and holds a share lock on the lock row until `tx` ends, so no
/// takeover can commit before the caller's writes: call it first, then write. Keep `tx` short
/// (well under the lease's ttl/2): while it is open the holder's renewals skip the row.
/// A release of this lease while `tx` is open waits at most 100 ms, then completes in the
/// background when `tx` ends.
/// The role of `tx` needs EXECUTE on `sqlock_assert_held` (schema 3 revokes it from PUBLIC;
/// see the runtime-role grants in docs/postgresql.md), no rights on the tables. The message names
/// the lock and the caller's token, never the lock's current token. Throws: `errc::lease_lost` (the
/// transaction is then aborted: roll it back); pqxx exceptions for other database errors
/// (`pqxx::insufficient_privilege` without EXECUTE).
inline void assert_held(pqxx::transaction_base& tx, std::string_view name, std::int64_t token,
                        const std::string& schema = "public") {
  try {
    tx.exec_params("SELECT " + tx.quote_name(schema) + ".sqlock_assert_held($1, $2)",
                   std::string(name), token);
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == sqlstate_lease_lost)
      throw error(errc::lease_lost, e.what(), "postgresql", e.sqlstate());
    throw;
  }
}

/// Effects: as `assert_held`, for one acquisition of a semaphore: inside `tx`, fails unless
/// `token` (`lease::token()` of a semaphore lease) is a live holder of the semaphore `name` by
/// the server clock, and holds a share lock on that holder's row until `tx` ends, so no force
/// release or expiry-then-grant can count it out before the caller's writes. The same rules
/// for keeping `tx` short apply: while it is open the holder's renewals skip the row. Needs
/// EXECUTE on `sqlock_semaphore_assert_held`, as `assert_held` does on its function.
/// Throws: `errc::lease_lost` (the transaction is then aborted: roll it back);
/// pqxx exceptions for other database errors.
inline void assert_semaphore_held(pqxx::transaction_base& tx, std::string_view name,
                                  std::int64_t token, const std::string& schema = "public") {
  try {
    tx.exec_params("SELECT " + tx.quote_name(schema) + ".sqlock_semaphore_assert_held($1, $2)",
                   std::string(name), token);
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == sqlstate_lease_lost)
      throw error(errc::lease_lost, e.what(), "postgresql", e.sqlstate());
    throw;
  }
}

/// Effects: releases the lock lease `l` as part of the caller's transaction `tx` (schema 7's
/// `sqlock_release`, naming the lease by its token and nonce), so the work and the release
/// commit together or not at all: "mark the job done and release the lock" in one transaction.
/// From the moment it returns true, `l` is `released` (stop using it), and `tx` holds the lock
/// row until it ends: the lease's renewals wait, other clients see it held. If `tx` commits,
/// the lease stays released (event `released` at its next renewal, or at once by
/// `l.renew()`); if `tx` rolls back, or the commit never happened, the next renewal succeeds
/// and `l` is `held` again. So end `tx` well before the lease's deadline (`l.remaining()`
/// before the call): past it the lease ends, released. `lease::expect_release_in_transaction`
/// says how. The role of `tx` needs EXECUTE on `sqlock_release` (docs/postgresql.md).
/// Returns: false when the lease had already ended in the database (nothing to release; `tx` is
/// unaffected, and `l` learns at its next renewal). Throws: `errc::invalid_argument` for a
/// semaphore lease, before anything is sent; pqxx exceptions for database errors (roll `tx`
/// back: the lease stays held).
inline bool release(pqxx::transaction_base& tx, lease& l, const std::string& schema = "public") {
  if (l.kind() != lease_kind::lock)
    throw error(errc::invalid_argument,
                "release \"" + l.name() + "\" in a transaction: only a lock's lease can be",
                "postgresql");
  const bool ended =
      tx.exec_params1("SELECT " + tx.quote_name(schema) + ".sqlock_release($1, $2, $3)", l.name(),
                      l.token(), l.nonce())[0]
          .as<bool>();
  if (ended) l.expect_release_in_transaction();
  return ended;
}

/// Effects: takes the lock `name` inside the caller's transaction `tx` (schema 7's
/// `sqlock_try_acquire`, with `c`'s owner and a fresh nonce), so the grant commits or rolls back
/// with the caller's work. Never waits for a holder: empty when the lock is held. The grant is
/// real only once `tx` commits; then `c.adopt(*grant)` makes it a lease with keepalive, its
/// clock started before the grant was sent. While `tx` is open the new lease ages unrenewed:
/// commit well within `options.ttl`. For a name never granted before, other acquirers wait for
/// `tx` to end (the table's unique index); keep `tx` short. The role of `tx` needs EXECUTE on
/// `sqlock_try_acquire` (docs/postgresql.md).
/// Throws: `errc::invalid_argument` for a bad name, ttl or metadata (before any I/O); pqxx
/// exceptions for database errors.
inline std::optional<transaction_grant> try_acquire(pqxx::transaction_base& tx, client& c,
                                                    std::string_view name,
                                                    const lock_options& options = {},
                                                    const std::string& schema = "public") {
  transaction_grant grant = c.prepare_grant(name, options);
  const auto row = tx.exec_params1(
      "SELECT " + tx.quote_name(schema) +
          ".sqlock_try_acquire($1, $2::bigint * interval '1 millisecond', $3, $4, $5)",
      grant.name, static_cast<long long>(options.ttl.count()), c.owner(), options.metadata,
      grant.nonce);
  if (row[0].is_null()) return std::nullopt;
  grant.token = row[0].as<std::int64_t>();
  return grant;
}

}  // namespace sqlock::postgresql
