// SPDX-License-Identifier: Apache-2.0
#pragma once
// PostgreSQL fixtures for the conformance suite: each instance is a fresh schema (named with a
// capital letter, a space and a double quote, so every statement's quoting is exercised) in the
// test database that scripts/with-postgres starts; dropped when the fixture dies. A missing
// environment variable FAILS the test (never a skip): run the tests under scripts/with-postgres.
//
//   SQLOCK_TEST_POSTGRESQL_URL   direct server, as a role that may create schemas
//   SQLOCK_TEST_PGBOUNCER_URL    the same role through PgBouncer in transaction pooling mode

#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "postgresql.hpp"

namespace sqlock_test {

/// Base of the two fixtures: a schema in the test database, reached through `url`.
class postgresql_schema {
 public:
  /// PostgreSQL locks rows: an open transaction holds only the rows it locked.
  static constexpr bool single_writer = false;
  /// The test can reach the database with SQL and hold rows in open transactions.
  static constexpr bool raw_sql = true;
  /// tests/support/worker processes can open the same database.
  static constexpr bool multi_process = true;
  postgresql_schema(std::string url, std::string direct_url, bool pooled, bool migrate)
      : url_(std::move(url)),
        direct_(std::move(direct_url)),
        pooled_(pooled),
        schema_(unique_schema()) {
    if (migrate) sqlock::client(url_, options()).migrate();
  }
  ~postgresql_schema() {
    try {
      pg_session s(direct_);
      s.query("DROP SCHEMA IF EXISTS " + s.ident(schema_) + " CASCADE");
    } catch (...) {
    }
  }
  postgresql_schema(const postgresql_schema&) = delete;
  postgresql_schema& operator=(const postgresql_schema&) = delete;

  const std::string& url() const { return url_; }
  const std::string& direct_url() const { return direct_; }
  const std::string& schema() const { return schema_; }
  sqlock::client_options options() const {
    sqlock::client_options o;
    o.backend.schema = schema_;
    if (pooled_) {
      // PgBouncer 1.18 in transaction mode: no named prepared statements, and LISTEN through
      // it hears nothing, so the listener connects to the server directly.
      o.backend.prepared_statements = false;
      o.backend.listen_url = direct_;
    }
    return o;
  }
  /// Arguments that point tests/support/worker at this database.
  std::vector<std::string> worker_args() const { return {"--url", url_, "--schema", schema_}; }

 private:
  std::string url_, direct_;
  bool pooled_;
  std::string schema_;
};

/// PostgreSQL, connected directly.
struct postgresql_fixture : postgresql_schema {
  static constexpr const char* backend_name = "postgresql";
  explicit postgresql_fixture(bool migrate = true)
      : postgresql_schema(required_env("SQLOCK_TEST_POSTGRESQL_URL"),
                          required_env("SQLOCK_TEST_POSTGRESQL_URL"), false, migrate) {}
};

/// PostgreSQL through PgBouncer in transaction pooling mode.
struct pgbouncer_fixture : postgresql_schema {
  static constexpr const char* backend_name = "pgbouncer";
  explicit pgbouncer_fixture(bool migrate = true)
      : postgresql_schema(required_env("SQLOCK_TEST_PGBOUNCER_URL"),
                          required_env("SQLOCK_TEST_POSTGRESQL_URL"), true, migrate) {}
};

}  // namespace sqlock_test

TYPE_TO_STRING_AS("postgresql", sqlock_test::postgresql_fixture);
TYPE_TO_STRING_AS("pgbouncer", sqlock_test::pgbouncer_fixture);
