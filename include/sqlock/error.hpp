// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// The one exception type of sqlock and the codes that say what the caller should do next.

#include <stdexcept>
#include <string>

#include <sqlock/export.hpp>

namespace sqlock {

/// Why an operation failed, chosen by what the caller does next (not by where it failed).
enum class errc {
  unavailable,       ///< database unreachable, timed out or connection dropped: retry later
  schema_mismatch,   ///< sqlock's tables missing, too old or too new: run `sqlock migrate up`
  lease_lost,        ///< an operation needs a held lease and it is gone: redo the work
  in_doubt,          ///< an outcome is unknown and could not be cleaned up: treat as not done
  invalid_argument,  ///< bad name, ttl, metadata, URL or option: fix the input
  usage,             ///< API misuse: fix the code
  cancelled,         ///< the client was shut down while the call waited: stop
  internal,          ///< a bug in sqlock: report it
};

/// The enumerator's name, e.g. "schema_mismatch".
SQLOCK_EXPORT const char* to_string(errc code) noexcept;

/// The exception every sqlock operation throws. "Held by someone else" is never an error.
///
/// what() names the operation, the lock and the backend, never a password:
/// `renew 'nightly-report' (token 42) on sqlite: database is locked`.
/// Thread safety: immutable after construction.
class SQLOCK_EXPORT error : public std::runtime_error {
 public:
  error(errc code, const std::string& message, std::string backend = {}, std::string sqlstate = {});

  errc code() const noexcept { return code_; }
  /// "sqlite", "postgresql", or empty when no backend was involved.
  const std::string& backend() const noexcept { return backend_; }
  /// PostgreSQL's SQLSTATE, or SQLite's error name (e.g. "SQLITE_BUSY"); empty when none.
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  errc code_;
  std::string backend_;
  std::string sqlstate_;
};

}  // namespace sqlock
