// SPDX-License-Identifier: Apache-2.0
#include "util/validate.hpp"

#include <cstring>
#include <string>

#include <sqlock/error.hpp>
#include <sqlock/validate.hpp>

#include "util/util.hpp"

namespace sqlock::detail {

namespace {
[[noreturn]] void fail(const std::string& what) { throw error(errc::invalid_argument, what); }

void check_text(std::string_view what, std::string_view value, std::size_t max_bytes,
                bool allow_empty) {
  if (!allow_empty && value.empty()) fail(std::string(what) + " is empty");
  if (value.size() > max_bytes)
    fail(std::string(what) + " is " + std::to_string(value.size()) + " bytes; at most " +
         std::to_string(max_bytes) + " are allowed");
  if (value.find('\0') != std::string_view::npos)
    fail(std::string(what) + " " + quoted(value) + " contains a NUL byte");
  if (!valid_utf8(value)) fail(std::string(what) + " " + quoted(value) + " is not valid UTF-8");
}
}  // namespace

void validate_name(std::string_view name) { check_text("lock name", name, max_name_bytes, false); }

void validate_prefix(std::string_view prefix) {
  check_text("name prefix", prefix, max_name_bytes, true);
}

void validate_ttl(std::chrono::milliseconds ttl) {
  if (ttl < min_ttl || ttl > max_ttl)
    fail("ttl " + std::to_string(ttl.count()) + " ms is out of range: it must be from " +
         std::to_string(min_ttl.count()) + " ms to " + std::to_string(max_ttl.count()) +
         " ms (7 days)");
}

void validate_operation_timeout(std::chrono::milliseconds timeout) {
  if (timeout <= std::chrono::milliseconds::zero() || timeout > max_operation_timeout)
    fail("client_options::operation_timeout " + std::to_string(timeout.count()) +
         " ms is out of range: it must be from 1 ms to " +
         std::to_string(max_operation_timeout.count()) + " ms (24 hours)");
}

void validate_metadata(std::string_view metadata) {
  check_text("metadata", metadata, max_metadata_bytes, true);
}

void validate_owner(std::string_view owner) { check_text("owner", owner, max_owner_bytes, false); }

void validate(const lock_options& options) {
  validate_ttl(options.ttl);
  validate_metadata(options.metadata);
}

}  // namespace sqlock::detail

namespace sqlock::detail {

std::int64_t validate_units(const semaphore_options& options) {
  validate(static_cast<const lock_options&>(options));
  if (options.limit < 1 || options.limit > max_semaphore_limit)
    fail("semaphore limit " + std::to_string(options.limit) +
         " is out of range: it must be from 1 to " + std::to_string(max_semaphore_limit));
  if (options.exclusive) return options.limit;
  if (options.count < 1 || options.count > options.limit)
    fail("semaphore count " + std::to_string(options.count) +
         " is out of range: it must be from 1 to the limit " + std::to_string(options.limit));
  return options.count;
}

}  // namespace sqlock::detail

// The public checks (<sqlock/validate.hpp>).
namespace sqlock {

void validate_name(std::string_view name) { detail::validate_name(name); }
void validate_ttl(std::chrono::milliseconds ttl) { detail::validate_ttl(ttl); }
void validate_metadata(std::string_view metadata) { detail::validate_metadata(metadata); }
std::string printable(std::string_view text, std::size_t max_bytes) {
  return detail::printable(text, max_bytes);
}

}  // namespace sqlock
