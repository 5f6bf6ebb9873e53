// SPDX-License-Identifier: Apache-2.0
// One SQLite connection: opening it (synchronous, WAL), preparing and running statements,
// write transactions, and the busy handler that bounds every wait for the write lock.

#include "backends/sqlite/connection.hpp"

#include <algorithm>
#include <thread>

#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::sqlite {

connection::connection(const std::string& location, bool uri, bool create,
                       backend_options::sqlite_sync sync) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (create) flags |= SQLITE_OPEN_CREATE;
  if (uri) flags |= SQLITE_OPEN_URI;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(location.c_str(), &raw, flags, nullptr);
  db_.reset(raw);
  if (rc != SQLITE_OK) {
    std::string why = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    fail(rc, "open " + quoted(location), why.c_str(), raw);
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_handler(raw, &connection::on_busy, this);
  deadline_ = steady::now() + milliseconds{5000};
  // synchronous is per connection and writes nothing.
  opened_durable_ = sync == backend_options::sqlite_sync::full;
  durable_ = !opened_durable_;
  set_durable(opened_durable_, "open " + quoted(location));
  // journal_mode=WAL is persistent: it rewrites the file header. Only a database already
  // recognised as sqlock's gets it here (migrate sets it before creating the schema);
  // someone else's database is left exactly as it was.
  if (has_sqlock_schema("open " + quoted(location))) use_wal("open " + quoted(location));
}

// Switching a file to WAL needs it to itself: while another connection holds a write
// transaction (a concurrent migrator's first step, still in rollback-journal mode), SQLite
// refuses at once without calling the busy handler (waiting could deadlock), so the switch
// is retried here with the busy handler's sleeps until the deadline.
void connection::use_wal(const std::string& what) {
  for (int attempt = 0;; ++attempt) {
    int rc = sqlite3_exec(db_.get(), sql::pragma_journal_mode_wal, nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    if ((rc & 0xff) != SQLITE_BUSY || on_busy(this, attempt) == 0)
      fail(rc, what, sqlite3_errmsg(db_.get()), db_.get());
  }
}

bool connection::has_sqlock_schema(const std::string& what) {
  auto t = prepare(sql::has_schema_table, what);
  t.step();
  return t.integer(0) != 0;
}

statement connection::prepare(const char* sql, const std::string& what) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) fail(rc, what, sqlite3_errmsg(db_.get()), db_.get());
    it = cache_.emplace(sql, std::unique_ptr<sqlite3_stmt, stmt_finalizer>(s)).first;
  }
  return statement(*this, it->second.get(), what);
}

void connection::exec(const char* sql, const std::string& what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_.get());
    sqlite3_free(err);
    fail(rc, what, msg.c_str(), db_.get());
  }
}

std::int64_t connection::now_ms(const std::string& what) {
  auto s = prepare(sql::now, what);
  s.step();
  return s.integer(0);
}

void connection::set_durable(bool durable, const std::string& what) {
  if (durable == durable_) return;
  // Prepared once: a release switches it twice.
  prepare(durable ? sql::pragma_synchronous_full : sql::pragma_synchronous_normal, what).step();
  durable_ = durable;
}

// Our own busy wait: short random sleeps (so contending processes interleave fairly), never
// past the call's deadline. SQLite's stock handler starved one of two contending processes in
// half of the measured runs.
int connection::on_busy(void* self, int count) {
  auto* c = static_cast<connection*>(self);
  auto now = steady::now();
  if (now >= c->deadline_) return 0;
  auto cap = milliseconds{std::min(1 << std::min(count, 4), 16)};
  auto sleep = std::min<steady::duration>(
      jitter(milliseconds{0}, cap) + std::chrono::microseconds{200}, c->deadline_ - now);
  std::this_thread::sleep_for(sleep);
  return 1;
}

bool statement::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(rc, what_, sqlite3_errmsg(c_.get()), c_.get());
}

void statement::check(int rc) {
  if (rc != SQLITE_OK) fail(rc, what_, sqlite3_errmsg(c_.get()), c_.get());
}

// Prepared once per connection: sqlite3_exec would parse them for every transaction.
write_transaction::write_transaction(connection& c, const std::string& what) : c_(c), what_(what) {
  c_.prepare(sql::begin_immediate, what_).step();
}

write_transaction::~write_transaction() {
  if (!done_) sqlite3_exec(c_.get(), sql::rollback, nullptr, nullptr, nullptr);
}

void write_transaction::commit() {
  c_.prepare(sql::commit, what_).step();
  done_ = true;
}

}  // namespace sqlock::detail::sqlite
