// SPDX-License-Identifier: Apache-2.0
// The lock and semaphore protocols as SQL functions on the application's own SQLite connection
// (sqlock::sqlite::register_functions, include/sqlock/sqlite.hpp): PostgreSQL's schema-7 and
// schema-8 functions, with a ttl in milliseconds (SQLite has no interval type). They run
// inside the caller's write transaction (BEGIN IMMEDIATE), on the same rows and token counter
// as the SQLite backend's statements (the semaphore ones through the backend's own grant and
// release, semaphore_rows.hpp), so they commit or roll back with the caller's work.
#include "backends/sqlite/sql_api.hpp"

#include <unistd.h>

#include <optional>
#include <string>

#include <sqlock/error.hpp>
#include <sqlock/sqlite.hpp>

#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/connection.hpp"
#include "backends/sqlite/semaphore_rows.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock::sqlite {

namespace {

using detail::sqlite::connection;
using detail::sqlite::sqlite_backend;
namespace sql = detail::sqlite::sql;

// Thrown out of a function body; becomes the SQL function's error.
struct sql_failure {
  std::string message;
};

// One call's arguments, checked as the C++ client checks them: the same limits and messages.
class args {
 public:
  args(const char* fn, int argc, sqlite3_value** argv) : fn_(fn), argc_(argc), argv_(argv) {}

  std::string name(int i) const {
    if (null(i)) fail("name is NULL");
    std::string name(text(i));
    detail::validate_name(name);
    return name;
  }
  std::chrono::milliseconds ttl(int i) const {
    if (sqlite3_value_type(argv_[i]) != SQLITE_INTEGER)
      fail("ttl must be an integer number of milliseconds");
    std::chrono::milliseconds ttl{sqlite3_value_int64(argv_[i])};
    detail::validate_ttl(ttl);
    return ttl;
  }
  std::int64_t integer(int i, const char* what) const {
    if (sqlite3_value_type(argv_[i]) != SQLITE_INTEGER)
      fail(std::string(what) + " must be an integer");
    return sqlite3_value_int64(argv_[i]);
  }
  // Optional trailing arguments: absent or NULL.
  bool given(int i) const { return argc_ > i && !null(i); }
  std::string owner(int i) const {
    std::string owner =
        given(i) ? std::string(text(i)) : "sql (pid " + std::to_string(::getpid()) + ")";
    detail::validate_owner(owner);
    return owner;
  }
  std::string metadata(int i) const {
    std::string metadata = given(i) ? std::string(text(i)) : std::string();
    detail::validate_metadata(metadata);
    return metadata;
  }
  // A fresh lease's identity: 'sql:' and random, unless the caller names one.
  std::string new_nonce(int i) const {
    std::string nonce = given(i) ? std::string(text(i)) : "sql:" + detail::random_hex(16);
    if (nonce.empty() || nonce.size() > max_owner_bytes) fail("a nonce is 1 to 255 bytes");
    return nonce;
  }
  // The nonce that names an existing lease: NULL (bound as such) for one these functions
  // granted.
  void bind_nonce(detail::sqlite::statement& s, int param, int i) const {
    if (given(i))
      s.bind(param, text(i));
    else
      s.bind_null(param);
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw sql_failure{std::string(fn_) + ": " + why};
  }

 private:
  bool null(int i) const { return sqlite3_value_type(argv_[i]) == SQLITE_NULL; }
  std::string_view text(int i) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_value_text(argv_[i]));
    return {p ? p : "", static_cast<std::size_t>(sqlite3_value_bytes(argv_[i]))};
  }
  const char* fn_;
  int argc_;
  sqlite3_value** argv_;
};

// The calls change lease rows: only inside a transaction that already writes, so that they
// commit with the caller's work (and a read transaction never has to upgrade, which WAL
// refuses with SQLITE_BUSY_SNAPSHOT once another writer has committed).
void require_write_transaction(sqlite3* db, const args& a) {
  if (sqlite3_txn_state(db, "main") != SQLITE_TXN_WRITE)
    a.fail(
        "call it inside a write transaction (BEGIN IMMEDIATE), so that it commits or rolls back "
        "with your work");
}

// sqlock_try_acquire(name, ttl_ms [, owner [, metadata [, nonce]]]) -> token or NULL.
std::optional<std::int64_t> try_acquire(connection& c, const args& a) {
  const std::string what = "sqlock_try_acquire";
  const std::string name = a.name(0);
  const auto ttl = a.ttl(1);
  const std::string owner = a.owner(2), metadata = a.metadata(3), nonce = a.new_nonce(4);
  require_write_transaction(c.get(), a);
  const std::int64_t now = c.now_ms(what);
  std::int64_t floor = 1;  // the next token exceeds the row's last one, as on PostgreSQL
  {
    auto cur = c.prepare(sql::lock_current, what);
    cur.bind(1, name);
    if (cur.step()) {
      if (cur.integer(1) > now) return std::nullopt;  // held
      floor = cur.integer(0) + 1;
    }
  }
  const std::int64_t token = sqlite_backend::next_token(c, floor, what);
  auto grant = c.prepare(sql::lock_upsert, what);
  grant.bind(1, name).bind(2, owner).bind(3, nonce).bind(4, token).bind(5, now);
  grant.bind(6, now + ttl.count()).bind(7, metadata).step();
  return token;
}

// sqlock_renew(name, token, ttl_ms [, nonce]) and sqlock_semaphore_renew(...): 1 when the lease
// was live; sqlock_release(name, token [, nonce]): 1 when a live lease ended.
bool renew(connection& c, const args& a, const char* statement) {
  const std::string what = "renew";
  const std::string name = a.name(0);
  const std::int64_t token = a.integer(1, "token");
  const auto ttl = a.ttl(2);
  require_write_transaction(c.get(), a);
  auto s = c.prepare(statement, what);
  s.bind(1, c.now_ms(what)).bind(2, static_cast<std::int64_t>(ttl.count())).bind(3, name);
  s.bind(4, token);
  a.bind_nonce(s, 5, 3);
  s.step();
  return sqlite3_changes(c.get()) > 0;
}

bool release(connection& c, const args& a) {
  const std::string what = "sqlock_release";
  const std::string name = a.name(0);
  const std::int64_t token = a.integer(1, "token");
  require_write_transaction(c.get(), a);
  auto s = c.prepare(sql::lock_release_by_token, what);
  s.bind(1, c.now_ms(what)).bind(2, name).bind(3, token);
  a.bind_nonce(s, 4, 2);
  s.step();
  return sqlite3_changes(c.get()) > 0;
}

// sqlock_semaphore_try_acquire(name, limit, count, ttl_ms [, owner [, metadata [, nonce]]])
// -> token or NULL: the backend's grant of a try (never past a queued fair waiter).
std::optional<std::int64_t> semaphore_try_acquire(connection& c, const args& a) {
  const std::string what = "sqlock_semaphore_try_acquire";
  semaphore_options o;
  o.limit = a.integer(1, "limit");
  o.count = a.integer(2, "count");
  o.ttl = a.ttl(3);
  semaphore_request r;
  r.name = a.name(0);
  r.limit = o.limit;
  r.count = detail::validate_units(o);
  r.ttl = o.ttl;
  r.owner = a.owner(4);
  r.metadata = a.metadata(5);
  r.nonce = a.new_nonce(6);
  require_write_transaction(c.get(), a);
  const std::int64_t now = c.now_ms(what);
  auto v = detail::sqlite::semaphore_view(c, r.name, r.nonce, now, what);
  detail::sqlite::check_semaphore_limit(v, r, what);
  if (v.exists && !v.grantable(r)) return std::nullopt;
  return detail::sqlite::add_holder(c, r, v, now, what);
}

// sqlock_semaphore_release(name, token [, nonce]): ends the live holder and hands the room to
// the queue, as the backend's release does; a waiter takes a handed grant at its next attempt.
bool semaphore_release(connection& c, const args& a) {
  const std::string what = "sqlock_semaphore_release";
  lease_key key;
  key.name = a.name(0);
  key.token = a.integer(1, "token");
  require_write_transaction(c.get(), a);
  const std::int64_t now = c.now_ms(what);
  {
    auto s = c.prepare(sql::holder_by_token, what);
    s.bind(1, key.name).bind(2, key.token).bind(3, now);
    a.bind_nonce(s, 4, 2);
    if (!s.step()) return false;
    key.nonce = s.text(0);
  }
  return detail::sqlite::end_holder_rows(c, key, false, now, what).ended;
}

enum class call {
  try_acquire,
  renew,
  release,
  semaphore_try_acquire,
  semaphore_renew,
  semaphore_release
};

struct function {
  const char* name;
  int min_args, max_args;
  call what;
};

const function functions[] = {
    {"sqlock_try_acquire", 2, 5, call::try_acquire},
    {"sqlock_renew", 3, 4, call::renew},
    {"sqlock_release", 2, 3, call::release},
    {"sqlock_semaphore_try_acquire", 4, 7, call::semaphore_try_acquire},
    {"sqlock_semaphore_renew", 3, 4, call::semaphore_renew},
    {"sqlock_semaphore_release", 2, 3, call::semaphore_release},
};

void result(sqlite3_context* ctx, std::optional<std::int64_t> token) {
  if (token)
    sqlite3_result_int64(ctx, *token);
  else
    sqlite3_result_null(ctx);
}

void sql_call(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  const auto& f = *static_cast<const function*>(sqlite3_user_data(ctx));
  connection c(sqlite3_context_db_handle(ctx));
  const args a(f.name, argc, argv);
  try {
    switch (f.what) {
      case call::try_acquire:
        return result(ctx, try_acquire(c, a));
      case call::renew:
        return sqlite3_result_int(ctx, renew(c, a, sql::lock_renew_by_token) ? 1 : 0);
      case call::release:
        return sqlite3_result_int(ctx, release(c, a) ? 1 : 0);
      case call::semaphore_try_acquire:
        return result(ctx, semaphore_try_acquire(c, a));
      case call::semaphore_renew:
        return sqlite3_result_int(ctx, renew(c, a, sql::holder_renew_by_token) ? 1 : 0);
      case call::semaphore_release:
        return sqlite3_result_int(ctx, semaphore_release(c, a) ? 1 : 0);
    }
  } catch (const sql_failure& e) {
    sqlite3_result_error(ctx, e.message.c_str(), -1);
  } catch (const std::exception& e) {
    sqlite3_result_error(ctx, e.what(), -1);
  }
}

}  // namespace

int register_lease_functions(sqlite3* db) {
  // Not SQLITE_DETERMINISTIC (they read the clock and write), and SQLITE_DIRECTONLY: a view or
  // trigger in the database file cannot call them behind the application's back.
  const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  for (const auto& f : functions)
    for (int argc = f.min_args; argc <= f.max_args; ++argc) {
      int rc = sqlite3_create_function_v2(db, f.name, argc, flags, const_cast<function*>(&f),
                                          sql_call, nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) return rc;
    }
  return SQLITE_OK;
}

}  // namespace sqlock::sqlite
