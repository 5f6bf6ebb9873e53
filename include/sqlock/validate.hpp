// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// The checks sqlock applies to what callers pass in, and the escaping its messages apply to
/// names: for tools built on sqlock (the `sqlock` tool checks its arguments with them before it
/// connects, so a bad name is a usage error, not a database round trip).

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <sqlock/export.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// Each throws `errc::invalid_argument` naming the problem (the name shown via printable()).
/// A lock or semaphore name: 1..max_name_bytes bytes of valid UTF-8 without NUL.
SQLOCK_EXPORT void validate_name(std::string_view name);
/// A lease's ttl: from min_ttl to max_ttl.
SQLOCK_EXPORT void validate_ttl(std::chrono::milliseconds ttl);
/// Holder metadata: at most max_metadata_bytes of valid UTF-8 without NUL.
SQLOCK_EXPORT void validate_metadata(std::string_view metadata);

/// Text made safe for a terminal: control characters (C0, DEL, C1), bidirectional overrides
/// and bytes that are not valid UTF-8 are escaped (\n, \t, \r, \xNN, \u{NNNN}); the result is
/// always valid UTF-8. At most `max_bytes` input bytes are shown (then "..."), never cutting a
/// character.
SQLOCK_EXPORT std::string printable(std::string_view text,
                                    std::size_t max_bytes = std::string_view::npos);

}  // namespace sqlock
