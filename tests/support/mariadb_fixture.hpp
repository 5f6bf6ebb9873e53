// SPDX-License-Identifier: Apache-2.0
#pragma once
// The MariaDB fixture for the conformance suite: each instance is a fresh database
// `sqlock_t_<16 hex digits>` (utf8mb4 with the server's default collation, so the migrations
// must make names byte-exact themselves) on the server that scripts/with-mariadb starts, created
// and dropped as the test user (mariadb_database, in mariadb.hpp); its URL is
// SQLOCK_TEST_MARIADB_URL with that database. A missing environment variable FAILS the test (never
// a skip): run the tests under scripts/with-mariadb.

#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "mariadb.hpp"

namespace sqlock_test {

/// MariaDB, connected over TCP as sqlock_test.
struct mariadb_fixture {
  static constexpr const char* backend_name = "mariadb";
  /// InnoDB locks rows: an open transaction holds only the rows it locked.
  static constexpr bool single_writer = false;
  /// The test can reach the database with SQL and hold rows in open transactions.
  static constexpr bool raw_sql = true;
  /// tests/support/worker processes can open the same database.
  static constexpr bool multi_process = true;

  explicit mariadb_fixture(bool migrate = true)
      : db_(required_env("SQLOCK_TEST_MARIADB_URL")),
        url_(mariadb_url_with_database(db_.base_url(), db_.name())) {
    // A failed migration still drops the database (db_ is a constructed member).
    if (migrate) sqlock::client(url_, options()).migrate();
  }
  const std::string& url() const { return url_; }
  /// The fixture's database (the URL's path).
  const std::string& database() const { return db_.name(); }
  sqlock::client_options options() const { return {}; }
  /// Arguments that point tests/support/worker at this database.
  std::vector<std::string> worker_args() const { return {"--url", url_}; }

 private:
  mariadb_database db_;
  std::string url_;
};

/// Raw SQL on a fixture's database beside sqlock (the application's own connection), with the
/// names and the clock of the dialect: what `raw_db<mariadb_fixture>` in the conformance suite
/// is made of.
struct raw_mariadb {
  explicit raw_mariadb(const mariadb_fixture& db)
      : session(db.url()), database(mariadb_session::ident(db.database())) {}
  void exec(const std::string& sql) { session.exec(sql); }
  std::string value(const std::string& sql) { return session.value(sql); }
  std::string locks() const { return database + ".sqlock_locks"; }
  /// The database clock as the schema stores it (epoch microseconds, UTC, whatever the
  /// session's time_zone).
  std::string now() const { return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"; }
  /// What a fenced transaction does to a lock row (sqlock_assert_held): a share lock.
  std::string share_lock() const { return " LOCK IN SHARE MODE"; }
  mariadb_session session;
  std::string database;  // quoted
};

}  // namespace sqlock_test

TYPE_TO_STRING_AS("mariadb", sqlock_test::mariadb_fixture);
