// SPDX-License-Identifier: Apache-2.0
// Same-database fencing for SQLite (include/sqlock/sqlite.hpp).
#include <memory>
#include <string>

#include <sqlock/error.hpp>
#include <sqlock/sqlite.hpp>
#include <sqlock/types.hpp>

#include "backends/sqlite/sql_api.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::sqlite {

using sqlock::lease_kind;

namespace {
constexpr const char* check_sql = "SELECT token, expires_at > " SQLOCK_SQLITE_NOW_MS
                                  " "
                                  "FROM sqlock_locks WHERE name = ?1";
// A semaphore has one row per holder: find the holder with the token, if any.
constexpr const char* check_semaphore_sql =
    "SELECT token, expires_at > " SQLOCK_SQLITE_NOW_MS
    " "
    "FROM sqlock_semaphore_holders WHERE name = ?1 AND token = ?2";

// Empty when held by `token`; otherwise why not.
std::string check(sqlite3* db, std::string_view name, std::int64_t token,
                  lease_kind kind = lease_kind::lock) {
  sqlite3_stmt* raw = nullptr;
  const bool sem = kind == lease_kind::semaphore;
  int rc = sqlite3_prepare_v2(db, sem ? check_semaphore_sql : check_sql, -1, &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  if (rc != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db);
    throw error(
        msg.find("no such table") != std::string::npos ? errc::schema_mismatch : errc::unavailable,
        "assert_held " + detail::quoted(name) + " on sqlite: " + msg, "sqlite");
  }
  sqlite3_bind_text(raw, 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
  if (sem) sqlite3_bind_int64(raw, 2, token);
  rc = sqlite3_step(raw);
  if (rc == SQLITE_DONE)
    return sem ? "token " + std::to_string(token) + " is not a holder of the semaphore"
               : std::string("no such lock");
  if (rc != SQLITE_ROW)
    throw error(errc::unavailable,
                "assert_held " + detail::quoted(name) + " on sqlite: " + sqlite3_errmsg(db),
                "sqlite");
  std::int64_t current = sqlite3_column_int64(raw, 0);
  bool live = sqlite3_column_int(raw, 1) != 0;
  // Never the current token: whoever may call this must not learn the one to forge.
  if (current != token) return "token " + std::to_string(token) + " is not the current lease";
  if (!live) return "the lease with token " + std::to_string(token) + " has expired";
  return {};
}

void sql_assert_held(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  std::string_view name(text ? text : "", static_cast<std::size_t>(sqlite3_value_bytes(argv[0])));
  const auto kind = sqlite3_user_data(ctx) ? lease_kind::semaphore : lease_kind::lock;
  try {
    auto why = check(sqlite3_context_db_handle(ctx), name, sqlite3_value_int64(argv[1]), kind);
    if (why.empty()) {
      sqlite3_result_int(ctx, 1);
      return;
    }
    std::string msg = "sqlock: lease lost: " + detail::quoted(name) + ": " + why;
    sqlite3_result_error(ctx, msg.c_str(), -1);
  } catch (const std::exception& e) {
    sqlite3_result_error(ctx, e.what(), -1);
  }
}
}  // namespace

namespace {
void assert_live(sqlite3* db, std::string_view name, std::int64_t token, lease_kind kind) {
  if (!db) throw error(errc::usage, "assert_held: null sqlite3 handle", "sqlite");
  if (sqlite3_get_autocommit(db) != 0)
    throw error(errc::usage,
                "assert_held " + detail::quoted(name) +
                    ": call it inside the transaction that does the protected writes "
                    "(BEGIN IMMEDIATE), or the check proves nothing about them",
                "sqlite");
  auto why = check(db, name, token, kind);
  if (!why.empty())
    throw error(errc::lease_lost, "assert_held " + detail::quoted(name) + " on sqlite: " + why,
                "sqlite");
}
}  // namespace

void assert_held(sqlite3* db, std::string_view name, std::int64_t token) {
  assert_live(db, name, token, lease_kind::lock);
}

void assert_semaphore_held(sqlite3* db, std::string_view name, std::int64_t token) {
  assert_live(db, name, token, lease_kind::semaphore);
}

int register_functions(sqlite3* db) {
  // Not SQLITE_DETERMINISTIC: the answer depends on the clock and the table. The user data
  // tells the two functions apart (non-null: a semaphore holder).
  static int semaphore_tag = 1;
  int rc = sqlite3_create_function_v2(db, "sqlock_assert_held", 2, SQLITE_UTF8 | SQLITE_DIRECTONLY,
                                      nullptr, sql_assert_held, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_create_function_v2(db, "sqlock_semaphore_assert_held", 2,
                                  SQLITE_UTF8 | SQLITE_DIRECTONLY, &semaphore_tag, sql_assert_held,
                                  nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return rc;
  return register_lease_functions(db);
}

}  // namespace sqlock::sqlite
