// SPDX-License-Identifier: Apache-2.0
#pragma once
// Raw PostgreSQL access for tests (libpq only, no sqlock): a session for set-up and raw SQL,
// unique schema names, the server's URLs from the environment of scripts/with-postgres, and
// the runtime role's grants of docs/postgresql.md. Shared by sqlock_tests and the CLI tests.

#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "env.hpp"

namespace sqlock_test {

/// A plain libpq connection for test set-up and raw SQL; throws on any failure.
class pg_session {
 public:
  explicit pg_session(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string why = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw std::runtime_error("test: cannot connect to PostgreSQL: " + why);
    }
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
  }
  ~pg_session() { PQfinish(conn_); }
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  /// Runs `sql` (parameters as text); returns the rows as strings ("" for NULL).
  std::vector<std::vector<std::string>> query(const std::string& sql,
                                              const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (auto& p : params) values.push_back(p.c_str());
    PGresult* r = params.empty() ? PQexec(conn_, sql.c_str())
                                 : PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()),
                                                nullptr, values.data(), nullptr, nullptr, 0);
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

/// A fresh, unique schema name (at most 63 bytes) that needs quoting: `prefix`, a double quote,
/// the pid, a counter and a random part.
inline std::string unique_schema(const std::string& prefix = "Sqlock T") {
  static std::atomic<int> counter{0};
  return prefix + "\"" + std::to_string(::getpid()) + "_" + std::to_string(++counter) + "_" +
         std::to_string(std::rand() % 100000);
}

/// The superuser URL of the test server (for set-up that needs more than the fixtures' role).
inline std::string admin_url() { return required_env("SQLOCK_TEST_POSTGRESQL_ADMIN_URL"); }

/// Grants the least-privilege runtime role (sqlock_runtime) what sqlock needs at run time on
/// `schema`: exactly the grants docs/postgresql.md documents.
inline void grant_runtime(const std::string& schema) {
  pg_session admin(admin_url());
  auto s = admin.ident(schema);
  admin.query("GRANT USAGE ON SCHEMA " + s + " TO sqlock_runtime");
  admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".sqlock_locks, " + s +
              ".sqlock_lock_waiters TO sqlock_runtime");
  admin.query("GRANT SELECT ON " + s + ".sqlock_schema_version TO sqlock_runtime");
  admin.query("GRANT USAGE ON SEQUENCE " + s + ".sqlock_token_seq TO sqlock_runtime");
  // Schema 2: semaphores (sqlock_semaphore_acquire runs with the caller's rights).
  admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".sqlock_semaphores, " + s +
              ".sqlock_semaphore_holders, " + s + ".sqlock_semaphore_tickets TO sqlock_runtime");
  // Schema 3: EXECUTE on sqlock's functions is no longer PUBLIC's.
  admin.query("GRANT EXECUTE ON FUNCTION " + s + ".sqlock_assert_held(text, bigint), " + s +
              ".sqlock_semaphore_assert_held(text, bigint), " + s +
              ".sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, "
              "boolean, boolean, bigint, text) TO sqlock_runtime");
  // Schema 6: the semaphore grant and release functions.
  admin.query("GRANT EXECUTE ON FUNCTION " + s +
              ".sqlock_semaphore_attempt(text, bigint, bigint, text, text, text, bigint, "
              "boolean, boolean, bigint, text, bigint, bigint, text), " +
              s +
              ".sqlock_semaphore_release(text, text, bigint, text, text, boolean) "
              "TO sqlock_runtime");
  // Schema 7: the SQL API.
  admin.query("GRANT EXECUTE ON FUNCTION " + s +
              ".sqlock_try_acquire(text, interval, text, text, text), " + s +
              ".sqlock_renew(text, bigint, interval, text), " + s +
              ".sqlock_release(text, bigint, text) TO sqlock_runtime");
}

}  // namespace sqlock_test
