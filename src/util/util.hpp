// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small helpers shared by the client and the backends.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqlock::detail {

/// `bytes` random bytes from the OS entropy source, hex-encoded.
std::string random_hex(std::size_t bytes);
/// "<host>:<pid>:<random>".
std::string default_owner();
/// A uniformly random duration in [lo, hi] (thread-local generator).
std::chrono::milliseconds jitter(std::chrono::milliseconds lo, std::chrono::milliseconds hi);

bool valid_utf8(std::string_view s) noexcept;

/// The smallest valid UTF-8 string greater than every string that starts with `prefix`, or
/// empty when there is none (all code points maximal). UTF-8 byte order is code point order,
/// so `prefix <= name < upper` selects exactly the names with that byte prefix, as a range
/// that a primary key index serves (LIKE is case-insensitive on SQLite and needs escaping).
std::string prefix_upper_bound(std::string_view prefix);

/// Text made safe for a terminal: control characters (C0, DEL, C1), bidirectional overrides
/// and bytes that are not valid UTF-8 are escaped (\n, \t, \r, \xNN, \u{NNNN}); valid UTF-8
/// otherwise passes through, so the result is always valid UTF-8. At most `max_bytes` input
/// bytes are shown (then "..."), never cutting a character.
std::string printable(std::string_view text, std::size_t max_bytes = std::string_view::npos);

/// Quotes a name for a message: 'name', printable(), at most 80 bytes.
std::string quoted(std::string_view name);

/// Epoch milliseconds (database clock) to a time point.
inline std::chrono::system_clock::time_point from_epoch_ms(std::int64_t ms) {
  return std::chrono::system_clock::time_point{
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::milliseconds{ms})};
}

}  // namespace sqlock::detail
