// SPDX-License-Identifier: Apache-2.0
#pragma once
// A plain SQLite connection for test set-up and raw SQL (the application's own connection in
// the fencing tests).

#include <sqlite3.h>

#include <memory>
#include <string>

#include <doctest/doctest.h>

namespace sqlock_test {

struct sqlite_closer {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using sqlite_handle = std::unique_ptr<sqlite3, sqlite_closer>;

/// Opens `file` read-write (creating it) with a 5 s busy timeout; fails the test case otherwise.
inline sqlite_handle sqlite_open(const std::string& file) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  return sqlite_handle(db);
}

/// Runs `sql` (one or more statements); fails the test case with SQLite's message otherwise.
inline void sqlite_exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  REQUIRE_MESSAGE(rc == SQLITE_OK, msg);
}

}  // namespace sqlock_test
