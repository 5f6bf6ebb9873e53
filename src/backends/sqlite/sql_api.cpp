// SPDX-License-Identifier: Apache-2.0
// The lock protocol as SQL functions on the application's own SQLite connection
// (sqlock::sqlite::register_functions, include/sqlock/sqlite.hpp): PostgreSQL's schema-7
// functions, with a ttl in milliseconds (SQLite has no interval type). They run inside the
// caller's write transaction (BEGIN IMMEDIATE), on the same rows and token counter as the
// SQLite backend's statements, so they commit or roll back with the caller's work.
#include "backends/sqlite/sql_api.hpp"

#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include <sqlock/error.hpp>
#include <sqlock/sqlite.hpp>

#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock::sqlite {

namespace {

using stmt_ptr = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;

// Thrown out of a function body; becomes the SQL function's error.
struct sql_failure {
  std::string message;
};

stmt_ptr prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
  stmt_ptr stmt(raw, sqlite3_finalize);
  if (rc != SQLITE_OK) throw sql_failure{sqlite3_errmsg(db)};
  return stmt;
}

// Steps once: true for a row, false when done.
bool step(sqlite3* db, sqlite3_stmt* s) {
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw sql_failure{sqlite3_errmsg(db)};
}

void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

std::string_view text_arg(sqlite3_value* v) {
  auto* p = reinterpret_cast<const char*>(sqlite3_value_text(v));
  return {p ? p : "", static_cast<std::size_t>(sqlite3_value_bytes(v))};
}

// Arguments as the C++ client checks them: the same limits, the same messages.
std::string name_arg(const char* fn, sqlite3_value* v) {
  if (sqlite3_value_type(v) == SQLITE_NULL) throw sql_failure{std::string(fn) + ": name is NULL"};
  std::string name(text_arg(v));
  detail::validate_name(name);
  return name;
}

std::chrono::milliseconds ttl_arg(const char* fn, sqlite3_value* v) {
  if (sqlite3_value_type(v) != SQLITE_INTEGER)
    throw sql_failure{std::string(fn) + ": ttl must be an integer number of milliseconds"};
  std::chrono::milliseconds ttl{sqlite3_value_int64(v)};
  detail::validate_ttl(ttl);
  return ttl;
}

std::int64_t token_arg(const char* fn, sqlite3_value* v) {
  if (sqlite3_value_type(v) != SQLITE_INTEGER)
    throw sql_failure{std::string(fn) + ": token must be an integer"};
  return sqlite3_value_int64(v);
}

// The calls change lock rows: only inside a transaction that already writes, so that they
// commit with the caller's work (and a read transaction never has to upgrade, which WAL
// refuses with SQLITE_BUSY_SNAPSHOT once another writer has committed).
void require_write_transaction(sqlite3* db, const char* fn) {
  if (sqlite3_txn_state(db, "main") != SQLITE_TXN_WRITE)
    throw sql_failure{std::string(fn) +
                      ": call it inside a write transaction (BEGIN IMMEDIATE), so that it "
                      "commits or rolls back with your work"};
}

std::int64_t now_ms(sqlite3* db) {
  auto s = prepare(db, detail::sqlite::sql::now);
  step(db, s.get());
  return sqlite3_column_int64(s.get(), 0);
}

// sqlock_try_acquire(name, ttl_ms [, owner [, metadata [, nonce]]]) -> token or NULL.
std::optional<std::int64_t> try_acquire(sqlite3* db, int argc, sqlite3_value** argv) {
  const char* fn = "sqlock_try_acquire";
  const std::string name = name_arg(fn, argv[0]);
  const auto ttl = ttl_arg(fn, argv[1]);
  std::string owner = argc > 2 && sqlite3_value_type(argv[2]) != SQLITE_NULL
                          ? std::string(text_arg(argv[2]))
                          : "sql (pid " + std::to_string(::getpid()) + ")";
  detail::validate_owner(owner);
  std::string metadata = argc > 3 ? std::string(text_arg(argv[3])) : std::string();
  detail::validate_metadata(metadata);
  std::string nonce = argc > 4 && sqlite3_value_type(argv[4]) != SQLITE_NULL
                          ? std::string(text_arg(argv[4]))
                          : "sql:" + detail::random_hex(16);
  if (nonce.empty() || nonce.size() > max_owner_bytes)
    throw sql_failure{std::string(fn) + ": a nonce is 1 to 255 bytes"};
  require_write_transaction(db, fn);

  const std::int64_t now = now_ms(db);
  std::int64_t floor = 1;  // the next token exceeds the row's last one, as on PostgreSQL
  {
    auto cur = prepare(db, detail::sqlite::sql::lock_current);
    bind_text(cur.get(), 1, name);
    if (step(db, cur.get())) {
      if (sqlite3_column_int64(cur.get(), 1) > now) return std::nullopt;  // held
      floor = sqlite3_column_int64(cur.get(), 0) + 1;
    }
  }
  auto next = prepare(db, detail::sqlite::sql::next_token);
  sqlite3_bind_int64(next.get(), 1, floor);
  if (!step(db, next.get())) throw sql_failure{std::string(fn) + ": the token counter is missing"};
  // Past INT64_MAX, SQLite's arithmetic turns the counter into a REAL: refuse, as the backend.
  if (sqlite3_column_type(next.get(), 0) != SQLITE_INTEGER)
    throw sql_failure{std::string(fn) + ": the token counter is exhausted"};
  const std::int64_t token = sqlite3_column_int64(next.get(), 0);
  next.reset();
  auto grant = prepare(db, detail::sqlite::sql::lock_upsert);
  bind_text(grant.get(), 1, name);
  bind_text(grant.get(), 2, owner);
  bind_text(grant.get(), 3, nonce);
  sqlite3_bind_int64(grant.get(), 4, token);
  sqlite3_bind_int64(grant.get(), 5, now);
  sqlite3_bind_int64(grant.get(), 6, now + ttl.count());
  bind_text(grant.get(), 7, metadata);
  step(db, grant.get());
  return token;
}

// An optional nonce argument: NULL or absent for a lease these functions granted.
void bind_nonce(sqlite3_stmt* s, int i, int argc, sqlite3_value** argv, int at) {
  if (argc > at && sqlite3_value_type(argv[at]) != SQLITE_NULL)
    bind_text(s, i, text_arg(argv[at]));
  else
    sqlite3_bind_null(s, i);
}

// sqlock_renew(name, token, ttl_ms [, nonce]) and sqlock_release(name, token [, nonce]): 1 when
// the lease was live.
bool renew(sqlite3* db, int argc, sqlite3_value** argv) {
  const char* fn = "sqlock_renew";
  const std::string name = name_arg(fn, argv[0]);
  const std::int64_t token = token_arg(fn, argv[1]);
  const auto ttl = ttl_arg(fn, argv[2]);
  require_write_transaction(db, fn);
  auto s = prepare(db, detail::sqlite::sql::lock_renew_by_token);
  sqlite3_bind_int64(s.get(), 1, now_ms(db));
  sqlite3_bind_int64(s.get(), 2, ttl.count());
  bind_text(s.get(), 3, name);
  sqlite3_bind_int64(s.get(), 4, token);
  bind_nonce(s.get(), 5, argc, argv, 3);
  step(db, s.get());
  return sqlite3_changes(db) > 0;
}

bool release(sqlite3* db, int argc, sqlite3_value** argv) {
  const char* fn = "sqlock_release";
  const std::string name = name_arg(fn, argv[0]);
  const std::int64_t token = token_arg(fn, argv[1]);
  require_write_transaction(db, fn);
  auto s = prepare(db, detail::sqlite::sql::lock_release_by_token);
  sqlite3_bind_int64(s.get(), 1, now_ms(db));
  bind_text(s.get(), 2, name);
  sqlite3_bind_int64(s.get(), 3, token);
  bind_nonce(s.get(), 4, argc, argv, 2);
  step(db, s.get());
  return sqlite3_changes(db) > 0;
}

enum class call { try_acquire, renew, release };

void sql_call(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  sqlite3* db = sqlite3_context_db_handle(ctx);
  try {
    switch (*static_cast<call*>(sqlite3_user_data(ctx))) {
      case call::try_acquire:
        if (auto token = try_acquire(db, argc, argv))
          sqlite3_result_int64(ctx, *token);
        else
          sqlite3_result_null(ctx);
        return;
      case call::renew:
        sqlite3_result_int(ctx, renew(db, argc, argv) ? 1 : 0);
        return;
      case call::release:
        sqlite3_result_int(ctx, release(db, argc, argv) ? 1 : 0);
        return;
    }
  } catch (const sql_failure& f) {
    sqlite3_result_error(ctx, f.message.c_str(), -1);
  } catch (const std::exception& e) {
    sqlite3_result_error(ctx, e.what(), -1);
  }
}

}  // namespace

int register_lease_functions(sqlite3* db) {
  // Not SQLITE_DETERMINISTIC (they read the clock and write), and SQLITE_DIRECTONLY: a view or
  // trigger in the database file cannot call them behind the application's back.
  static call calls[] = {call::try_acquire, call::renew, call::release};
  const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  for (int argc = 2; argc <= 5; ++argc) {
    int rc = sqlite3_create_function_v2(db, "sqlock_try_acquire", argc, flags, &calls[0], sql_call,
                                        nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return rc;
  }
  for (int argc = 3; argc <= 4; ++argc) {
    int rc = sqlite3_create_function_v2(db, "sqlock_renew", argc, flags, &calls[1], sql_call,
                                        nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return rc;
  }
  for (int argc = 2; argc <= 3; ++argc) {
    int rc = sqlite3_create_function_v2(db, "sqlock_release", argc, flags, &calls[2], sql_call,
                                        nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

}  // namespace sqlock::sqlite
