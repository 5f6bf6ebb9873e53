// SPDX-License-Identifier: Apache-2.0
// One MariaDB/MySQL connection: connecting, the session's settings, statements with numbered
// parameters, and transactions, all through Connector/C's non-blocking calls bounded by the
// call's deadline.

#include "backends/mariadb/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "backends/mariadb/errors.hpp"
#include "backends/mariadb/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::mariadb {

std::pair<std::string, std::vector<int>> positional_parameters(const std::string& sql) {
  std::string out;
  std::vector<int> positions;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char ch = sql[i];
    if (quote) {
      out += ch;
      if (ch == quote) quote = 0;
      continue;
    }
    if (ch == '\'' || ch == '"' || ch == '`') {
      quote = ch;
      out += ch;
      continue;
    }
    if (ch == '?' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
      int n = 0;
      while (i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9')
        n = n * 10 + (sql[++i] - '0');
      positions.push_back(n);
      out += '?';
      continue;
    }
    out += ch;
  }
  return {out, positions};
}

connection::connection(const connection_params& p, deadline until, const std::string& what)
    : deadline_(until), describe_(p.display) {
  // mysql_init sets the library up on first use, which is not thread-safe: once, here.
  static std::once_flag library;
  std::call_once(library, [] { mysql_library_init(0, nullptr, nullptr); });
  db_ = mysql_init(nullptr);
  if (!db_) throw error(errc::unavailable, what + " on mariadb: out of memory", kind_name);
  try {
    open(p, what);
  } catch (...) {
    broken_ = true;
    close();  // no destructor runs for a constructor that throws
    throw;
  }
}

void connection::open(const connection_params& p, const std::string& what) {
  mysql_options(db_, MYSQL_OPT_NONBLOCK, nullptr);
  mysql_options(db_, MYSQL_OPT_CONNECT_TIMEOUT, &p.connect_timeout);
  mysql_options(db_, MYSQL_OPT_READ_TIMEOUT, &p.read_timeout);
  mysql_options(db_, MYSQL_OPT_WRITE_TIMEOUT, &p.write_timeout);
  mysql_options(db_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  const std::string ctx = what + " (connect to " + p.display + ")";
  MYSQL* ret = nullptr;
  int status = mysql_real_connect_start(
      &ret, db_, p.socket.empty() ? p.host.c_str() : "localhost", p.user.c_str(),
      p.has_password ? p.password.c_str() : nullptr, p.database.c_str(), p.port,
      p.socket.empty() ? nullptr : p.socket.c_str(), CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS);
  while (status)
    status = mysql_real_connect_cont(&ret, db_, wait_for(status, ctx, errc::unavailable));
  if (!ret) fail(ctx);
  const bool is_mariadb = std::strstr(mysql_get_server_info(db_), "MariaDB") != nullptr;
  const unsigned long v = mysql_get_server_version(db_);
  if (is_mariadb ? v < 100600 : v < 80001) {
    broken_ = true;
    throw error(errc::invalid_argument,
                ctx +
                    ": sqlock needs MariaDB 10.6 or newer, or MySQL 8.0.1 or newer (SKIP LOCKED, "
                    "NOWAIT); the server is " +
                    mysql_get_server_info(db_),
                kind_name);
  }
  exec(sql::session_setup, ctx);
  if (is_mariadb) exec(sql::session_setup_mariadb, ctx);
}

connection::~connection() { close(); }

void connection::close() noexcept {
  if (broken_ && db_) {
    // Whatever the server is doing for us, it ends with the socket: never wait for it.
    int fd = mysql_get_socket(db_);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
  if (db_) mysql_close(db_);
  db_ = nullptr;
  for (auto& [text, c] : cache_) mysql_stmt_close(c.stmt);  // detached: frees memory only
  cache_.clear();
}

int connection::wait_for(int status, const std::string& what, errc on_timeout) {
  for (;;) {
    auto now = steady::now();
    if (now >= deadline_) {
      broken_ = true;
      throw error(on_timeout, what + " on mariadb: no answer before the call's deadline", kind_name,
                  on_timeout == errc::in_doubt ? "08006" : "");
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline_ - now).count() + 1;
    int timeout = static_cast<int>(std::min<long long>(left, 60000));
    if (status & MYSQL_WAIT_TIMEOUT)
      timeout = std::min<int>(timeout, static_cast<int>(mysql_get_timeout_value_ms(db_)));
    pollfd fd{};
    fd.fd = mysql_get_socket(db_);
    if (status & MYSQL_WAIT_READ) fd.events |= POLLIN;
    if (status & MYSQL_WAIT_WRITE) fd.events |= POLLOUT;
    if (status & MYSQL_WAIT_EXCEPT) fd.events |= POLLPRI;
    int n = ::poll(&fd, 1, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);  // let the connector see the error
    }
    if (n == 0) {
      if (status & MYSQL_WAIT_TIMEOUT) return MYSQL_WAIT_TIMEOUT;
      continue;
    }
    int ready = 0;
    if (fd.revents & POLLIN) ready |= MYSQL_WAIT_READ;
    if (fd.revents & POLLOUT) ready |= MYSQL_WAIT_WRITE;
    if (fd.revents & POLLPRI) ready |= MYSQL_WAIT_EXCEPT;
    if (fd.revents & (POLLERR | POLLHUP | POLLNVAL))
      ready |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
    return ready;
  }
}

void connection::fail(const std::string& what, errc after_send) {
  const unsigned n = mysql_errno(db_);
  const errc code = code_for(n, after_send);
  if (connection_lost(n)) broken_ = true;
  std::string msg = what + " on mariadb: " + mysql_error(db_) + advice_for(n);
  if (row_is_locked(n)) throw row_locked(msg, kind_name, mysql_sqlstate(db_));
  throw error(code, msg, kind_name, mysql_sqlstate(db_));
}

void connection::fail_stmt(MYSQL_STMT* s, const std::string& what, errc after_send) {
  const unsigned n = mysql_stmt_errno(s);
  const errc code = code_for(n, after_send);
  if (connection_lost(n)) broken_ = true;
  std::string msg = what + " on mariadb: " + mysql_stmt_error(s) + advice_for(n);
  if (row_is_locked(n)) throw row_locked(msg, kind_name, mysql_stmt_sqlstate(s));
  throw error(code, msg, kind_name, mysql_stmt_sqlstate(s));
}

statement connection::prepare(const std::string& text, const std::string& what) {
  auto it = cache_.find(text);
  if (it == cache_.end()) {
    auto [server_text, positions] = positional_parameters(text);
    MYSQL_STMT* s = mysql_stmt_init(db_);
    if (!s) throw error(errc::unavailable, what + " on mariadb: out of memory", kind_name);
    int ret = 0;
    int status = mysql_stmt_prepare_start(&ret, s, server_text.data(), server_text.size());
    try {
      while (status)
        status = mysql_stmt_prepare_cont(&ret, s, wait_for(status, what, errc::unavailable));
      if (ret) fail_stmt(s, what);
    } catch (...) {
      mysql_stmt_close(s);
      throw;
    }
    if (mysql_stmt_param_count(s) != positions.size()) {
      mysql_stmt_close(s);
      throw error(errc::internal, what + " on mariadb: parameter count mismatch", kind_name);
    }
    it = cache_.emplace(text, cached{s, std::move(positions)}).first;
  }
  return statement(*this, it->second.stmt, it->second.positions, what);
}

std::vector<std::string> connection::exec(const std::string& text, const std::string& what) {
  std::vector<std::string> first_row;  // of the last result set that had a row
  int ret = 0;
  int status = mysql_real_query_start(&ret, db_, text.data(), text.size());
  while (status)
    status = mysql_real_query_cont(&ret, db_, wait_for(status, what, errc::unavailable));
  if (ret) fail(what);
  for (;;) {
    MYSQL_RES* res = nullptr;
    status = mysql_store_result_start(&res, db_);
    while (status)
      status = mysql_store_result_cont(&res, db_, wait_for(status, what, errc::unavailable));
    if (res) {
      if (MYSQL_ROW row = mysql_fetch_row(res)) {  // stored: no I/O
        const unsigned long* len = mysql_fetch_lengths(res);
        first_row.clear();
        for (unsigned i = 0; i < mysql_num_fields(res); ++i)
          first_row.emplace_back(row[i] ? std::string(row[i], len[i]) : std::string());
      }
      mysql_free_result(res);
    } else if (mysql_errno(db_)) {
      fail(what);
    }
    int more = 0;
    status = mysql_next_result_start(&more, db_);
    while (status)
      status = mysql_next_result_cont(&more, db_, wait_for(status, what, errc::unavailable));
    if (more < 0) return first_row;
    if (more > 0) fail(what);
  }
}

std::int64_t connection::now_us(const std::string& what) {
  auto s = prepare(sql::now, what);
  s.step();
  return s.integer(0);
}

void connection::commit(const std::string& what, errc after_send) {
  int ret = 0;
  const std::string text = sql::commit;
  int status = mysql_real_query_start(&ret, db_, text.data(), text.size());
  while (status) status = mysql_real_query_cont(&ret, db_, wait_for(status, what, after_send));
  if (ret) fail(what, after_send);
  in_tx_ = false;
}

void connection::rollback() noexcept {
  if (!in_tx_ || broken_) return;
  try {
    exec(sql::rollback, "rollback");
    in_tx_ = false;
  } catch (...) {
    broken_ = true;
  }
}

statement::~statement() {
  if (executed_) mysql_stmt_free_result(s_);
}

statement& statement::bind(int i, std::string_view v) {
  if (params_.size() <= static_cast<std::size_t>(i))
    params_.resize(static_cast<std::size_t>(i) + 1);
  auto& p = params_[static_cast<std::size_t>(i)];
  p.t = value::type::text;
  p.s.assign(v.data(), v.size());
  return *this;
}

statement& statement::bind(int i, std::int64_t v) {
  if (params_.size() <= static_cast<std::size_t>(i))
    params_.resize(static_cast<std::size_t>(i) + 1);
  auto& p = params_[static_cast<std::size_t>(i)];
  p.t = value::type::integer;
  p.i = v;
  return *this;
}

statement& statement::bind_null(int i) {
  if (params_.size() <= static_cast<std::size_t>(i))
    params_.resize(static_cast<std::size_t>(i) + 1);
  params_[static_cast<std::size_t>(i)] = value{};
  return *this;
}

void statement::execute() {
  const std::size_t n = positions_.size();
  std::vector<MYSQL_BIND> b(n);
  std::vector<unsigned long> lengths(n);
  for (std::size_t k = 0; k < n; ++k) {
    const auto number = static_cast<std::size_t>(positions_[k]);
    if (number >= params_.size())
      throw error(errc::internal,
                  what_ + " on mariadb: parameter ?" + std::to_string(number) + " not bound",
                  kind_name);
    auto& p = params_[number];
    std::memset(&b[k], 0, sizeof(MYSQL_BIND));
    switch (p.t) {
      case value::type::null:
        b[k].buffer_type = MYSQL_TYPE_NULL;
        break;
      case value::type::integer:
        b[k].buffer_type = MYSQL_TYPE_LONGLONG;
        b[k].buffer = &p.i;
        break;
      case value::type::text:
        b[k].buffer_type = MYSQL_TYPE_STRING;
        b[k].buffer = p.s.data();
        b[k].buffer_length = lengths[k] = static_cast<unsigned long>(p.s.size());
        b[k].length = &lengths[k];
        break;
    }
  }
  if (n > 0 && mysql_stmt_bind_param(s_, b.data())) c_.fail_stmt(s_, what_);
  int ret = 0;
  int status = mysql_stmt_execute_start(&ret, s_);
  while (status)
    status = mysql_stmt_execute_cont(&ret, s_, c_.wait_for(status, what_, errc::unavailable));
  if (ret) c_.fail_stmt(s_, what_);
  executed_ = true;
  MYSQL_RES* meta = mysql_stmt_result_metadata(s_);
  if (!meta) return;
  struct free_meta {
    MYSQL_RES* m;
    ~free_meta() { mysql_free_result(m); }
  } guard{meta};
  my_bool update_max = 1;
  mysql_stmt_attr_set(s_, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max);
  status = mysql_stmt_store_result_start(&ret, s_);
  while (status)
    status = mysql_stmt_store_result_cont(&ret, s_, c_.wait_for(status, what_, errc::unavailable));
  if (ret) c_.fail_stmt(s_, what_);
  const unsigned cols = mysql_num_fields(meta);
  MYSQL_FIELD* fields = mysql_fetch_fields(meta);
  std::vector<MYSQL_BIND> r(cols);
  std::vector<std::string> bufs(cols);
  std::vector<unsigned long> lens(cols);
  std::vector<my_bool> nulls(cols);
  for (unsigned k = 0; k < cols; ++k) {
    bufs[k].resize(std::max<unsigned long>(fields[k].max_length, 64) + 1);
    std::memset(&r[k], 0, sizeof(MYSQL_BIND));
    r[k].buffer_type = MYSQL_TYPE_STRING;
    r[k].buffer = bufs[k].data();
    r[k].buffer_length = static_cast<unsigned long>(bufs[k].size());
    r[k].length = &lens[k];
    r[k].is_null = &nulls[k];
  }
  if (mysql_stmt_bind_result(s_, r.data())) c_.fail_stmt(s_, what_);
  for (;;) {
    int f = mysql_stmt_fetch(s_);
    if (f == MYSQL_NO_DATA) break;
    if (f == 1) c_.fail_stmt(s_, what_);
    std::vector<value> row(cols);
    for (unsigned k = 0; k < cols; ++k) {
      if (nulls[k]) continue;
      row[k].t = value::type::text;
      if (lens[k] <= bufs[k].size()) {
        row[k].s.assign(bufs[k].data(), lens[k]);
      } else {  // MYSQL_DATA_TRUNCATED: read the whole column
        row[k].s.resize(lens[k]);
        MYSQL_BIND one{};
        one.buffer_type = MYSQL_TYPE_STRING;
        one.buffer = row[k].s.data();
        one.buffer_length = lens[k];
        if (mysql_stmt_fetch_column(s_, &one, k, 0)) c_.fail_stmt(s_, what_);
      }
    }
    rows_.push_back(std::move(row));
  }
}

bool statement::step() {
  if (!executed_) {
    execute();
    next_ = 0;
  } else {
    ++next_;
  }
  if (next_ >= rows_.size()) return false;
  row_ = &rows_[next_];
  return true;
}

std::uint64_t statement::run() {
  execute();
  return mysql_stmt_affected_rows(s_);
}

std::int64_t statement::integer(int col) const {
  const auto& v = (*row_)[static_cast<std::size_t>(col)];
  if (v.t == value::type::null) return 0;
  try {
    return std::stoll(v.s);
  } catch (const std::exception&) {
    throw error(errc::internal,
                what_ + " on mariadb: column " + std::to_string(col) + " is not an integer",
                kind_name);
  }
}

write_transaction::write_transaction(connection& c, const std::string& what) : c_(c), what_(what) {
  // One round trip: START TRANSACTION and the lock, as one text query (it has no parameter).
  c_.mark_in_transaction();
  auto row = c_.exec(sql::write_lock, what_);
  if (row.size() != 2)
    throw error(errc::schema_mismatch,
                what_ + " on mariadb: the token counter row is missing (run `sqlock migrate up`)",
                kind_name);
  counter_ = std::stoll(row[0]);
  now_ = std::stoll(row[1]);
}

std::int64_t write_transaction::next_token(std::int64_t floor) {
  if (counter_ == INT64_MAX)
    throw error(errc::schema_mismatch,
                what_ +
                    " on mariadb: the fencing token counter (sqlock_counters, name 'token') is "
                    "exhausted; it only gets there if it was set by hand",
                kind_name);
  const std::int64_t token = std::max(counter_ + 1, floor);
  c_.prepare(sql::set_counter, what_).bind(1, token).run();
  counter_ = token;
  return token;
}

write_transaction::~write_transaction() {
  if (!done_) c_.rollback();
}

void write_transaction::commit(errc after_send) {
  c_.commit(what_, after_send);
  done_ = true;
}

}  // namespace sqlock::detail::mariadb
