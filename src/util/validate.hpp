// SPDX-License-Identifier: Apache-2.0
#pragma once
// Input checks done before any I/O. Each throws errc::invalid_argument naming the problem.

#include <chrono>
#include <string_view>

#include <sqlock/types.hpp>

namespace sqlock::detail {

/// The largest client_options::operation_timeout: one day. Deadlines are steady_clock time
/// points in nanoseconds, so milliseconds::max() would overflow `now() + timeout` (and every
/// call would then time out at once); no single database call should need longer.
inline constexpr std::chrono::milliseconds max_operation_timeout{std::chrono::hours{24}};

void validate_name(std::string_view name);
/// Positive and at most max_operation_timeout.
void validate_operation_timeout(std::chrono::milliseconds timeout);
void validate_ttl(std::chrono::milliseconds ttl);
void validate_metadata(std::string_view metadata);
void validate_owner(std::string_view owner);
void validate(const lock_options& options);
void validate_prefix(std::string_view prefix);
/// Checks a semaphore acquisition; returns the units it takes (the limit when exclusive).
std::int64_t validate_units(const semaphore_options& options);

}  // namespace sqlock::detail
