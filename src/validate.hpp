#pragma once
// Input checks done before any I/O. Each throws errc::invalid_argument naming the problem.

#include <sqlock/types.hpp>

#include <chrono>
#include <string_view>

namespace sqlock::detail {

void validate_name(std::string_view name);
void validate_ttl(std::chrono::milliseconds ttl);
void validate_metadata(std::string_view metadata);
void validate_owner(std::string_view owner);
void validate(const lock_options& options);
void validate_prefix(std::string_view prefix);
/// Checks a semaphore acquisition; returns the units it takes (the limit when exclusive).
std::int64_t validate_units(const semaphore_options& options);

}  // namespace sqlock::detail
