#pragma once
// PostgreSQL fixtures for the conformance suite: each instance is a fresh schema (named with a
// capital letter, a space and a double quote, so every statement's quoting is exercised) in the
// test database that scripts/with-postgres starts; dropped when the fixture dies. A missing
// environment variable FAILS the test (never a skip): run the tests under scripts/with-postgres.
//
//   SQLOCK_TEST_POSTGRESQL_URL   direct server, as a role that may create schemas
//   SQLOCK_TEST_PGBOUNCER_URL    the same role through PgBouncer in transaction pooling mode

#include <libpq-fe.h>
#include <sqlock/sqlock.hpp>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace sqlock_test {

/// The value of an environment variable the PostgreSQL tests need; throws when missing.
inline std::string required_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string(name) +
                             " is not set: run the PostgreSQL tests under scripts/with-postgres "
                             "(they fail rather than skip without a server)");
  return v;
}

/// A plain libpq connection for test set-up and raw SQL; throws on any failure.
class pg_session {
 public:
  explicit pg_session(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string why = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw std::runtime_error("test: cannot connect to PostgreSQL: " + why);
    }
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  }
  ~pg_session() { PQfinish(conn_); }
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  /// Runs `sql` (parameters as text); returns the rows as strings ("" for NULL).
  std::vector<std::vector<std::string>> query(const std::string& sql,
                                              const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (auto& p : params) values.push_back(p.c_str());
    PGresult* r = params.empty()
                      ? PQexec(conn_, sql.c_str())
                      : PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                     values.data(), nullptr, nullptr, 0);
    auto st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string why = PQresultErrorMessage(r);
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      last_sqlstate_ = state ? state : "";
      PQclear(r);
      throw std::runtime_error("test SQL failed: " + why + " in: " + sql);
    }
    std::vector<std::vector<std::string>> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      rows.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) rows.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    return rows;
  }
  std::string value(const std::string& sql, const std::vector<std::string>& params = {}) {
    auto rows = query(sql, params);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }
  std::string ident(const std::string& s) const {
    char* p = PQescapeIdentifier(conn_, s.c_str(), s.size());
    std::string out(p);
    PQfreemem(p);
    return out;
  }
  const std::string& last_sqlstate() const { return last_sqlstate_; }
  PGconn* get() const { return conn_; }

 private:
  PGconn* conn_;
  std::string last_sqlstate_;
};

/// A fresh, unique schema name (at most 63 bytes) that needs quoting.
inline std::string unique_schema() {
  static std::atomic<int> counter{0};
  return "Sqlock T\"" + std::to_string(::getpid()) + "_" + std::to_string(++counter) + "_" +
         std::to_string(std::rand() % 100000);
}

/// Base of the two fixtures: a schema in the test database, reached through `url`.
class postgresql_schema {
 public:
  postgresql_schema(std::string url, std::string direct_url, bool pooled, bool migrate)
      : url_(std::move(url)), direct_(std::move(direct_url)), pooled_(pooled),
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
