// SPDX-License-Identifier: Apache-2.0
#pragma once
// Decoding result rows into lock_record and semaphore_record (with its holders and waiters).

#include <cstdint>
#include <string>

#include <sqlock/backend.hpp>

#include "backends/sqlite/connection.hpp"

namespace sqlock::detail::sqlite {

/// A row of sql::lock_inspect or sql::lock_list.
lock_record read_record(const statement& s);

/// The semaphore `name` with `limit` as seen at `now` (epoch ms): its live holders and queued
/// waiters, read in the caller's transaction.
semaphore_record read_semaphore(connection& c, std::string name, std::int64_t limit,
                                std::int64_t now, const std::string& what);

}  // namespace sqlock::detail::sqlite
