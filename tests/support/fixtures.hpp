// SPDX-License-Identifier: Apache-2.0
#pragma once
// Backend fixtures for the conformance suite. Each instance is a fresh, isolated database
// (migrated unless asked not to), removed when the fixture dies. The suite is written once
// against `F` and instantiated for every fixture in SQLOCK_TEST_FIXTURES.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "errors.hpp"
#include "temp_dir.hpp"

namespace sqlock_test {

/// An embedded SQLite file in a temp directory (a FILE: the keepalive has its own connection).
struct sqlite_fixture {
  static constexpr const char* backend_name = "sqlite";
  /// SQLite has one writer at a time: an open write transaction (BEGIN IMMEDIATE, as a fenced
  /// transaction is) makes every other writer wait, where PostgreSQL locks rows.
  static constexpr bool single_writer = true;
  /// The test can reach the database with SQL and hold rows in open transactions.
  static constexpr bool raw_sql = true;
  /// tests/support/worker processes can open the same database.
  static constexpr bool multi_process = true;
  explicit sqlite_fixture(bool migrate = true) : url_("sqlite:" + dir_.path() + "/locks.db") {
    if (migrate) sqlock::client(url_, options()).migrate();
  }
  const std::string& url() const { return url_; }
  sqlock::client_options options() const { return {}; }
  std::string file() const { return dir_.path() + "/locks.db"; }
  /// Arguments that point tests/support/worker at this database.
  std::vector<std::string> worker_args() const { return {"--url", url_}; }

 private:
  temp_dir dir_;
  std::string url_;
};

}  // namespace sqlock_test

TYPE_TO_STRING_AS("sqlite", sqlock_test::sqlite_fixture);

namespace sqlock_test {

/// Lock options with lease `t`, kept alive unless `keepalive` is false.
inline sqlock::lock_options ttl(std::chrono::milliseconds t, bool keepalive = true) {
  sqlock::lock_options o;
  o.ttl = t;
  o.keepalive = keepalive;
  return o;
}

/// A client of fixture `db` (with `owner` when given).
template <class F>
std::unique_ptr<sqlock::client> make_client(const F& db, std::string owner = {}) {
  auto o = db.options();
  if (!owner.empty()) o.owner = std::move(owner);
  return std::make_unique<sqlock::client>(db.url(), o);
}

}  // namespace sqlock_test

#include "memory_fixture.hpp"
// SQLOCK_DATABASE_FIXTURES: the backends that keep their rows in a database file or server.
// The lease history (history_test.cpp) is a table those keep for postmortems; the memory
// backend of the test kit has none (its rows vanish with the process), so it is not among them.
// SQLOCK_MARIADB_FIXTURE: the MariaDB fixture with a leading comma when the backend is built,
// else nothing.
#if SQLOCK_HAVE_MARIADB
#include "mariadb_fixture.hpp"
#define SQLOCK_MARIADB_FIXTURE , sqlock_test::mariadb_fixture
#else
#define SQLOCK_MARIADB_FIXTURE
#endif
#if SQLOCK_HAVE_POSTGRESQL
#include "postgresql_fixture.hpp"
#define SQLOCK_DATABASE_FIXTURES                                \
  sqlock_test::sqlite_fixture, sqlock_test::postgresql_fixture, \
      sqlock_test::pgbouncer_fixture SQLOCK_MARIADB_FIXTURE
#else
#define SQLOCK_DATABASE_FIXTURES sqlock_test::sqlite_fixture SQLOCK_MARIADB_FIXTURE
#endif
#define SQLOCK_TEST_FIXTURES SQLOCK_DATABASE_FIXTURES, sqlock_test::memory_fixture
