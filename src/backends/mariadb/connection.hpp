// SPDX-License-Identifier: Apache-2.0
#pragma once
// One MariaDB/MySQL connection through Connector/C's non-blocking API, so that every call waits
// at most until its own deadline (the connector's read/write timeouts are only a backstop); its
// cache of prepared statements; and the two transaction shapes the backend uses.
//
// Statements are written with numbered parameters (?1, ?2, ... as on SQLite): a parameter may
// appear more than once. prepare() rewrites them into the server's positional `?` and binds each
// position from its number, so no SQL is ever built from a value.

#include <mysql.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sqlock/backend.hpp>

#include "backends/mariadb/params.hpp"

namespace sqlock::detail::mariadb {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

class connection;

/// `sql` with its numbered parameters (?1, ?2, ...) as the server's positional `?`, and the
/// number each position binds; quoted text is copied as it is.
std::pair<std::string, std::vector<int>> positional_parameters(const std::string& sql);

/// A bound parameter value.
struct value {
  enum class type { null, integer, text } t = type::null;
  std::int64_t i = 0;
  std::string s;
};

/// A prepared statement in use: bind by number, execute, then read rows (all results are read
/// into the client at execute, so reading never waits). Resets itself when done.
class statement {
 public:
  statement(connection& c, MYSQL_STMT* s, const std::vector<int>& positions,
            const std::string& what)
      : c_(c), s_(s), positions_(positions), what_(what) {}
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, std::string_view v);
  statement& bind(int i, std::int64_t v);
  statement& bind_null(int i);
  /// Runs it (once) and reads its rows; true: a row is available. Later calls move on.
  bool step();
  /// Runs it; the rows it matched (CLIENT_FOUND_ROWS: matched, not only changed).
  std::uint64_t run();
  std::int64_t integer(int col) const;
  bool is_null(int col) const {
    return (*row_)[static_cast<std::size_t>(col)].t == value::type::null;
  }
  std::string text(int col) const { return (*row_)[static_cast<std::size_t>(col)].s; }

 private:
  void execute();
  connection& c_;
  MYSQL_STMT* s_;
  const std::vector<int>& positions_;
  const std::string& what_;
  std::vector<value> params_;
  std::vector<std::vector<value>> rows_;
  std::size_t next_ = 0;
  const std::vector<value>* row_ = nullptr;
  bool executed_ = false;
};

class connection {
 public:
  /// Connects (within `until`), sets the session up (UTC, READ COMMITTED, utf8mb4, the lock
  /// wait timeout) and, when `use_database`, selects the URL's database.
  connection(const connection_params& p, deadline until, const std::string& what);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  MYSQL* get() const noexcept { return db_; }
  void set_deadline(deadline d) noexcept { deadline_ = d; }
  deadline current_deadline() const noexcept { return deadline_; }
  /// A statement failed in a way that leaves the connection unusable (dropped, timed out).
  bool broken() const noexcept { return broken_; }
  bool in_transaction() const noexcept { return in_tx_; }

  /// `sql` uses ?N parameters; cached by its text.
  statement prepare(const std::string& sql, const std::string& what);
  /// Runs one or more statements of text without parameters (migrations, the write lock),
  /// reading every result; returns the first row of the last result set that had one (NULL as
  /// ""), or nothing.
  std::vector<std::string> exec(const std::string& sql, const std::string& what);
  /// The database clock: epoch microseconds.
  std::int64_t now_us(const std::string& what);

  /// `after_send`: the code of a failure once COMMIT may have reached the server (in_doubt for
  /// a grant, whose outcome is then unknown).
  void commit(const std::string& what, errc after_send = errc::unavailable);
  void rollback() noexcept;

  // The non-blocking loop: waits for the socket as Connector/C asks, never past the deadline.
  int wait_for(int status, const std::string& what, errc on_timeout);
  [[noreturn]] void fail(const std::string& what, errc after_send = errc::unavailable);
  [[noreturn]] void fail_stmt(MYSQL_STMT* s, const std::string& what,
                              errc after_send = errc::unavailable);
  void mark_broken() noexcept { broken_ = true; }
  /// A transaction is (or may be) open from here until commit or rollback.
  void mark_in_transaction() noexcept { in_tx_ = true; }

 private:
  void open(const connection_params& p, const std::string& what);
  void close() noexcept;
  struct cached {
    MYSQL_STMT* stmt = nullptr;
    std::vector<int> positions;
  };
  MYSQL* db_ = nullptr;
  std::unordered_map<std::string, cached> cache_;
  deadline deadline_;
  bool broken_ = false, in_tx_ = false;
  std::string describe_;
};

/// START TRANSACTION, then the write lock every writer takes first: the token counter row,
/// locked FOR UPDATE (so writers serialise, as SQLite's BEGIN IMMEDIATE makes them), read
/// together with the database clock, one instant for the whole transaction. Rows a fenced
/// transaction may hold are locked after it with NOWAIT (lock_row), so a writer never waits for
/// a row while holding the counter: no deadlock. Rolls back unless committed.
class write_transaction {
 public:
  write_transaction(connection& c, const std::string& what);
  ~write_transaction();
  write_transaction(const write_transaction&) = delete;
  write_transaction& operator=(const write_transaction&) = delete;
  /// The database clock when the lock was taken (epoch µs).
  std::int64_t now() const noexcept { return now_; }
  /// Draws the next token (or queue ticket): at least `floor`, above every one issued, written
  /// to the counter row this transaction holds.
  std::int64_t next_token(std::int64_t floor);
  void commit(errc after_send = errc::unavailable);

 private:
  connection& c_;
  const std::string& what_;
  std::int64_t now_ = 0, counter_ = 0;
  bool done_ = false;
};

}  // namespace sqlock::detail::mariadb
