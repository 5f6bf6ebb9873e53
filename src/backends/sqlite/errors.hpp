// SPDX-License-Identifier: Apache-2.0
#pragma once
// SQLite result codes -> sqlock::errc, and the message of every error a failed SQLite call
// throws.

#include <sqlite3.h>

#include <string>

namespace sqlock::detail::sqlite {

inline constexpr const char* kind_name = "sqlite";

/// Throws sqlock::error for the SQLite result code `rc` of `what` (e.g. "acquire 'x'"), with
/// `detail_msg` (SQLite's message; its generic text for `rc` when null).
[[noreturn]] void fail(int rc, const std::string& what, const char* detail_msg,
                       sqlite3* db = nullptr);

}  // namespace sqlock::detail::sqlite
