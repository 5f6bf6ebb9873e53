// SPDX-License-Identifier: Apache-2.0
#pragma once
// PostgreSQL errors as sqlock errors: SQLSTATE -> errc, the SQLSTATEs retried inside the
// backend, and the messages built from libpq's.

#include <libpq-fe.h>

#include <string>
#include <string_view>

#include <sqlock/error.hpp>

namespace sqlock::detail::pg {

/// Builds the sqlock::error for a failed statement: the errc by what the caller does next,
/// the SQLSTATE, and a message naming the operation and the backend.
[[noreturn]] void throw_server_error(const std::string& what, const PGresult* r);
/// errc for a SQLSTATE.
errc classify(std::string_view sqlstate) noexcept;
/// 40001 serialization_failure, 40P01 deadlock_detected: retried inside the backend.
bool retryable(std::string_view sqlstate) noexcept;

/// A libpq message without its trailing newline (and spaces).
std::string trimmed(std::string s);

}  // namespace sqlock::detail::pg
