// SPDX-License-Identifier: Apache-2.0
#pragma once
// One SQLite connection (opened NOMUTEX, used by one thread at a time) with its cache of
// prepared statements, a statement in use, a write transaction, and the busy handler.

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <sqlock/backend.hpp>

#include "backends/sqlite/errors.hpp"

namespace sqlock::detail::sqlite {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

struct db_closer {
  bool owned = true;
  void operator()(sqlite3* db) const noexcept {
    if (owned) sqlite3_close_v2(db);
  }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};

class connection;

// A prepared statement in use: resets and clears its bindings when done, so the cached
// statement holds no read snapshot and no stale values.
class statement {
 public:
  statement(connection& c, sqlite3_stmt* s, const std::string& what) : c_(c), s_(s), what_(what) {}
  ~statement() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  statement& bind_null(int i) {
    check(sqlite3_bind_null(s_, i));
    return *this;
  }
  /// true: a row is available; false: done.
  bool step();
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  bool is_integer(int col) const { return sqlite3_column_type(s_, col) == SQLITE_INTEGER; }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }

 private:
  void check(int rc);
  connection& c_;
  sqlite3_stmt* s_;
  const std::string& what_;
};

class connection {
 public:
  /// Opens `location` (a `file:` URI when `uri`); `create`: create the file if missing.
  connection(const std::string& location, bool uri, bool create, backend_options::sqlite_sync sync);
  /// Wraps the application's own open connection (the SQL functions of sql_api.cpp run on it,
  /// inside its transaction): closes nothing, changes no setting, installs no busy handler.
  explicit connection(sqlite3* borrowed) noexcept : db_(borrowed, db_closer{false}) {}

  /// WAL: readers never block the writer and a refused acquire never waits for one.
  void use_wal(const std::string& what);

  bool has_sqlock_schema(const std::string& what);

  sqlite3* get() const noexcept { return db_.get(); }
  void set_deadline(deadline d) noexcept { deadline_ = d; }

  /// `sql` is one of the statements of statements.hpp: the cache is keyed by its address.
  statement prepare(const char* sql, const std::string& what);

  void exec(const char* sql, const std::string& what);

  /// The database clock: epoch milliseconds.
  std::int64_t now_ms(const std::string& what);

  /// Whether commits wait for their WAL write to reach the disk (`PRAGMA synchronous=FULL`,
  /// as opened with sqlite_sync::full). SQLite refuses to change it inside a transaction.
  bool durable() const noexcept { return durable_; }
  /// Sets it for the next transactions; outside a transaction only. A connection left with
  /// another setting than it was opened with is not pooled.
  void set_durable(bool durable, const std::string& what);
  bool durability_changed() const noexcept { return durable_ != opened_durable_; }

 private:
  static int on_busy(void* self, int count);

  std::unique_ptr<sqlite3, db_closer> db_;
  std::unordered_map<const char*, std::unique_ptr<sqlite3_stmt, stmt_finalizer>> cache_;
  deadline deadline_;
  bool durable_ = true, opened_durable_ = true;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
class write_transaction {
 public:
  write_transaction(connection& c, const std::string& what);
  ~write_transaction();
  void commit();

 private:
  connection& c_;
  const std::string& what_;
  bool done_ = false;
};

}  // namespace sqlock::detail::sqlite
