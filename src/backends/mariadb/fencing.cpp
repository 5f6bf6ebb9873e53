// SPDX-License-Identifier: Apache-2.0
// <sqlock/mariadb.hpp>: fencing on the application's own connection, through the stored
// functions of migrations/mariadb (blocking calls: the application's connection, its rules).

#include <cstring>
#include <memory>
#include <string>

#include <sqlock/error.hpp>
#include <sqlock/mariadb.hpp>

#include "backends/mariadb/errors.hpp"
#include "util/util.hpp"

namespace sqlock::mariadb {
namespace {

void assert_live(MYSQL* db, const char* sql, const char* kind, std::string_view name,
                 std::int64_t token) {
  using detail::mariadb::kind_name;
  const std::string what = std::string("assert_held(") + kind + " " + detail::quoted(name) +
                           ", token " + std::to_string(token) + ")";
  if (!db) throw error(errc::usage, what + ": no connection", kind_name);
  unsigned status = 0;
  if (mariadb_get_infov(db, MARIADB_CONNECTION_SERVER_STATUS, &status) == 0 &&
      !(status & SERVER_STATUS_IN_TRANS))
    throw error(errc::usage,
                what +
                    ": call it inside the transaction it protects (START TRANSACTION first): "
                    "outside one, the row lock it takes ends with the statement",
                kind_name);
  std::unique_ptr<MYSQL_STMT, decltype(&mysql_stmt_close)> s(mysql_stmt_init(db),
                                                             &mysql_stmt_close);
  auto fail = [&]() {
    const unsigned n = mysql_stmt_errno(s.get());
    const std::string state = mysql_stmt_sqlstate(s.get());
    std::string msg = what + " on mariadb: " + mysql_stmt_error(s.get());
    if (state == "45001") throw error(errc::lease_lost, msg, kind_name, state);
    throw error(detail::mariadb::code_for(n, errc::unavailable),
                msg + detail::mariadb::advice_for(n), kind_name, state);
  };
  if (!s) throw error(errc::unavailable, what + " on mariadb: out of memory", kind_name);
  if (mysql_stmt_prepare(s.get(), sql, static_cast<unsigned long>(std::strlen(sql)))) fail();
  MYSQL_BIND b[2];
  std::memset(b, 0, sizeof b);
  std::string n(name);
  unsigned long len = static_cast<unsigned long>(n.size());
  b[0].buffer_type = MYSQL_TYPE_STRING;
  b[0].buffer = n.data();
  b[0].buffer_length = len;
  b[0].length = &len;
  long long t = token;
  b[1].buffer_type = MYSQL_TYPE_LONGLONG;
  b[1].buffer = &t;
  if (mysql_stmt_bind_param(s.get(), b) || mysql_stmt_execute(s.get()) ||
      mysql_stmt_store_result(s.get()))
    fail();
  mysql_stmt_free_result(s.get());
}

}  // namespace

void assert_held(MYSQL* db, std::string_view name, std::int64_t token) {
  assert_live(db, "SELECT sqlock_assert_held(?, ?)", "lock", name, token);
}

void assert_semaphore_held(MYSQL* db, std::string_view name, std::int64_t token) {
  assert_live(db, "SELECT sqlock_semaphore_assert_held(?, ?)", "semaphore", name, token);
}

}  // namespace sqlock::mariadb
