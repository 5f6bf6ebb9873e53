// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a mariadb:// or mysql:// URL says: where to connect and as whom.
//
//   mariadb://[user[:password]@][host][:port]/database[?key=value&...]
//   keys: socket=/path (a unix socket; then host and port are not used), connect_timeout=S,
//         read_timeout=S, write_timeout=S (seconds: the connector's own backstops; every call
//         also has its deadline), passfile=/path (see below)
//
// Without a password in the URL, the password file is read (`passfile=`, else the environment
// variable SQLOCK_MARIADB_PASSFILE): lines `host:port:user:password`, `*` matching any value of
// a field, `#` comments, first match wins (PostgreSQL's .pgpass, so no password need appear on a
// command line).

#include <string>

namespace sqlock::detail::mariadb {

struct connection_params {
  std::string host = "localhost";
  unsigned port = 3306;
  std::string user;
  std::string password;
  bool has_password = false;
  std::string database;
  std::string socket;
  unsigned connect_timeout = 10, read_timeout = 30, write_timeout = 30;
  /// The URL without its password, for messages.
  std::string display;
};

/// Parses `url` (errc::invalid_argument for a malformed one; the message never shows the
/// password) and fills in the password from the password file when the URL has none.
connection_params parse_url(const std::string& url);

}  // namespace sqlock::detail::mariadb
