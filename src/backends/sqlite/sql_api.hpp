// SPDX-License-Identifier: Apache-2.0
#pragma once
// The lease functions of sqlock::sqlite::register_functions (sql_api.cpp).
#include <sqlite3.h>

namespace sqlock::sqlite {

/// Registers sqlock_try_acquire, sqlock_renew and sqlock_release on `db`; an SQLite result code.
int register_lease_functions(sqlite3* db);

}  // namespace sqlock::sqlite
