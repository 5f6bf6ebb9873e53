// SPDX-License-Identifier: Apache-2.0
#pragma once
// Raw MariaDB access for tests (MariaDB Connector/C only, no sqlock): a session for set-up and
// raw SQL, the passwords of scripts/with-mariadb's passfile, unique database names, and the
// server's URLs from its environment. A test helper may build SQL from strings; sqlock may not.
//
//   SQLOCK_TEST_MARIADB_URL        mariadb://sqlock_test@127.0.0.1:PORT/sqlock (no password)
//   SQLOCK_TEST_MARIADB_ADMIN_URL  the same for sqlock_admin (ALL ON *.* WITH GRANT OPTION)
//   SQLOCK_MARIADB_PASSFILE        `host:port:user:password` lines (libpq's PGPASSFILE rules)

#include <mysql.h>

#include <cstdint>
#include <fstream>
#include <istream>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "env.hpp"

namespace sqlock_test {

/// The parts of a `mariadb://` or `mysql://` URL the tests use:
/// scheme://[user[:password]@]host[:port][/database][?socket=PATH]. %XX is decoded.
struct mariadb_url_parts {
  std::string user, password, host = "localhost", database, socket;
  unsigned port = 3306;
  bool has_password = false;
};

inline std::string mariadb_percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

inline mariadb_url_parts parse_mariadb_url(const std::string& url) {
  mariadb_url_parts p;
  auto scheme = url.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("test: not a MariaDB URL: " + url);
  std::string rest = url.substr(scheme + 3);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest.resize(q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    p.database = mariadb_percent_decode(rest.substr(slash + 1));
    rest.resize(slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (auto colon = userinfo.find(':'); colon != std::string::npos) {
      p.password = mariadb_percent_decode(userinfo.substr(colon + 1));
      p.has_password = true;
      userinfo.resize(colon);
    }
    p.user = mariadb_percent_decode(userinfo);
  }
  if (auto colon = rest.rfind(':');
      colon != std::string::npos && rest.find(']') == std::string::npos) {
    p.port = static_cast<unsigned>(std::stoul(rest.substr(colon + 1)));
    rest.resize(colon);
  }
  if (!rest.empty()) p.host = rest;
  for (std::size_t start = 0; start < query.size();) {
    auto end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    std::string kv = query.substr(start, end - start);
    if (kv.rfind("socket=", 0) == 0) p.socket = mariadb_percent_decode(kv.substr(7));
    start = end + 1;
  }
  return p;
}

/// `url` with its database replaced by `database` (the query string is kept).
inline std::string mariadb_url_with_database(const std::string& url, const std::string& database) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("test: not a MariaDB URL: " + url);
  auto q = url.find('?', scheme + 3);
  auto slash = url.find('/', scheme + 3);
  if (slash == std::string::npos || (q != std::string::npos && slash > q)) slash = q;
  std::string out = url.substr(0, slash == std::string::npos ? url.size() : slash);
  out += "/" + database;
  if (q != std::string::npos) out += url.substr(q);
  return out;
}

/// The password of the first line of a passfile (`host:port:user:password`, `*` matching any
/// host, port or user, `\:` and `\\` escaped, `#` comments) that matches; none if no line does.
inline std::optional<std::string> passfile_password(std::istream& in, const std::string& host,
                                                    const std::string& port,
                                                    const std::string& user) {
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields(1);
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) {
        fields.back() += line[++i];
      } else if (line[i] == ':' && fields.size() < 4) {
        fields.emplace_back();
      } else {
        fields.back() += line[i];
      }
    }
    if (fields.size() != 4) continue;
    auto match = [](const std::string& pattern, const std::string& value) {
      return pattern == "*" || pattern == value;
    };
    if (match(fields[0], host) && match(fields[1], port) && match(fields[2], user))
      return fields[3];
  }
  return std::nullopt;
}

/// The password for `p` from SQLOCK_MARIADB_PASSFILE (required: the test FAILS without it).
/// A socket connection is host `localhost`, as in libpq.
inline std::string mariadb_password(const mariadb_url_parts& p) {
  if (p.has_password) return p.password;
  const std::string file = required_env("SQLOCK_MARIADB_PASSFILE");
  std::ifstream in(file);
  if (!in) throw std::runtime_error("test: cannot read SQLOCK_MARIADB_PASSFILE " + file);
  const std::string host = p.socket.empty() ? p.host : "localhost";
  auto pw = passfile_password(in, host, std::to_string(p.port), p.user);
  if (!pw)
    throw std::runtime_error("test: no password for " + p.user + "@" + host + ":" +
                             std::to_string(p.port) + " in " + file);
  return *pw;
}

/// A plain Connector/C connection for test set-up and raw SQL; throws on any failure.
/// Autocommit, utf8mb4, several statements per call allowed.
class mariadb_session {
 public:
  explicit mariadb_session(const std::string& url) {
    static std::once_flag once;  // mysql_init is not thread-safe until the library is set up
    std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
    const auto p = parse_mariadb_url(url);
    const auto password = mariadb_password(p);
    conn_ = mysql_init(nullptr);
    if (!conn_) throw std::runtime_error("test: mysql_init failed");
    unsigned timeout = 10;
    mysql_optionsv(conn_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_optionsv(conn_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!p.socket.empty()) {
      unsigned protocol = MYSQL_PROTOCOL_SOCKET;
      mysql_optionsv(conn_, MYSQL_OPT_PROTOCOL, &protocol);
    }
    if (!mysql_real_connect(conn_, p.socket.empty() ? p.host.c_str() : "localhost", p.user.c_str(),
                            password.c_str(), p.database.empty() ? nullptr : p.database.c_str(),
                            p.port, p.socket.empty() ? nullptr : p.socket.c_str(),
                            CLIENT_MULTI_STATEMENTS | CLIENT_FOUND_ROWS)) {
      std::string why = mysql_error(conn_);
      mysql_close(conn_);
      throw std::runtime_error("test: cannot connect to MariaDB as " + p.user + ": " + why);
    }
  }
  ~mariadb_session() { mysql_close(conn_); }
  mariadb_session(const mariadb_session&) = delete;
  mariadb_session& operator=(const mariadb_session&) = delete;

  /// Runs `sql` (one or more statements); returns the rows of the first result set as strings
  /// ("" for NULL).
  std::vector<std::vector<std::string>> query(const std::string& sql) {
    if (mysql_real_query(conn_, sql.data(), static_cast<unsigned long>(sql.size())) != 0) fail(sql);
    std::vector<std::vector<std::string>> rows;
    bool first = true;
    for (;;) {
      if (MYSQL_RES* r = mysql_store_result(conn_)) {
        const unsigned n = mysql_num_fields(r);
        while (MYSQL_ROW row = mysql_fetch_row(r)) {
          const unsigned long* len = mysql_fetch_lengths(r);
          if (!first) continue;
          rows.emplace_back();
          for (unsigned i = 0; i < n; ++i)
            rows.back().emplace_back(row[i] ? std::string(row[i], len[i]) : std::string());
        }
        mysql_free_result(r);
        first = false;
      } else if (mysql_field_count(conn_) != 0) {
        fail(sql);
      }
      const int next = mysql_next_result(conn_);
      if (next == -1) break;
      if (next > 0) fail(sql);
    }
    return rows;
  }
  void exec(const std::string& sql) { (void)query(sql); }
  /// The first column of the first row ("" for none or NULL).
  std::string value(const std::string& sql) {
    auto rows = query(sql);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }
  /// `s` as a quoted identifier (backticks).
  static std::string ident(const std::string& s) {
    std::string out = "`";
    for (char c : s) out += c == '`' ? std::string("``") : std::string(1, c);
    return out + "`";
  }
  /// `s` as a quoted string literal, escaped for this connection.
  std::string literal(const std::string& s) {
    std::string buf(s.size() * 2 + 1, '\0');
    auto n =
        mysql_real_escape_string(conn_, buf.data(), s.data(), static_cast<unsigned long>(s.size()));
    buf.resize(n);
    return "'" + buf + "'";
  }
  /// The server's error number of the last failed statement (e.g. 1205: lock wait timeout).
  unsigned last_errno() const { return last_errno_; }
  MYSQL* get() const { return conn_; }

 private:
  [[noreturn]] void fail(const std::string& sql) {
    last_errno_ = mysql_errno(conn_);
    throw std::runtime_error("test SQL failed: " + std::string(mysql_error(conn_)) + " (" +
                             std::to_string(last_errno_) + ") in: " + sql);
  }
  MYSQL* conn_ = nullptr;
  unsigned last_errno_ = 0;
};

/// A fresh database name the test user may create: `sqlock_t_` and 16 random hex digits.
inline std::string unique_database() {
  static std::mutex m;
  static std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t r;
  {
    std::lock_guard<std::mutex> lock(m);
    r = rng();
  }
  static const char* hex = "0123456789abcdef";
  std::string out = "sqlock_t_";
  for (int i = 15; i >= 0; --i) out += hex[(r >> (4 * i)) & 0xf];
  return out;
}

/// A fresh database (`unique_database()`, utf8mb4 with the server's default collation) created
/// on construction and dropped on destruction, through the user of `base_url` (the test user):
/// the conformance fixture's and the CLI tests' database.
class mariadb_database {
 public:
  explicit mariadb_database(std::string base_url)
      : base_url_(std::move(base_url)), name_(unique_database()) {
    mariadb_session s(base_url_);
    s.exec("CREATE DATABASE " + mariadb_session::ident(name_) + " CHARACTER SET utf8mb4");
  }
  ~mariadb_database() {
    try {
      mariadb_session s(base_url_);
      s.exec("DROP DATABASE IF EXISTS " + mariadb_session::ident(name_));
    } catch (...) {
    }
  }
  mariadb_database(const mariadb_database&) = delete;
  mariadb_database& operator=(const mariadb_database&) = delete;
  const std::string& name() const { return name_; }
  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_, name_;
};

/// The admin URL of the test server (for set-up that needs more than the fixtures' user).
inline std::string mariadb_admin_url() { return required_env("SQLOCK_TEST_MARIADB_ADMIN_URL"); }

}  // namespace sqlock_test
