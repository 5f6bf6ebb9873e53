// SPDX-License-Identifier: Apache-2.0
// mariadb:// and mysql:// URLs, no server: what they name, the password file, and the typed
// errors of malformed ones (which never show a password).

#include <sqlock/config.hpp>

#if SQLOCK_HAVE_MARIADB
#include <cstdlib>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "backends/mariadb/params.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using sqlock::detail::mariadb::parse_url;
using sqlock_test::code_of;

TEST_CASE("mariadb URLs: user, password, host, port, database, socket and timeouts") {
  auto p = parse_url("mariadb://app:s%40cret@db.example:3307/locks?connect_timeout=3");
  CHECK(p.user == "app");
  CHECK(p.password == "s@cret");
  CHECK(p.has_password);
  CHECK(p.host == "db.example");
  CHECK(p.port == 3307);
  CHECK(p.database == "locks");
  CHECK(p.connect_timeout == 3);
  CHECK(p.display == "mariadb://app@db.example:3307/locks");  // never the password
  auto v6 = parse_url("mysql://app@[::1]:3306/locks");
  CHECK(v6.host == "::1");
  CHECK(v6.display == "mysql://app@[::1]:3306/locks");
  auto sock = parse_url("mariadb://app@/locks?socket=%2Frun%2Fmysqld%2Fmysqld.sock");
  CHECK(sock.socket == "/run/mysqld/mysqld.sock");
  CHECK(sock.host == "localhost");
  // A raw '@' or '/' in a password stays in it (the userinfo ends at the last '@').
  CHECK(parse_url("mariadb://app:a@b/c@h/db").password == "a@b/c");
  CHECK(sqlock::parse_database_url("mysql://h/db").backend == sqlock::parsed_url::kind::mariadb);
}

TEST_CASE("mariadb URLs: malformed ones are invalid_argument and show no password") {
  for (const char* url :
       {"mariadb://app:Kx7QaVb8Wm@h/", "mariadb://app:Kx7QaVb8Wm@h:0/db",
        "mariadb://app:Kx7QaVb8Wm@h:70000/db", "mariadb://app:Kx7QaVb8Wm@h:x/db",
        "mariadb://app:Kx7QaVb8Wm@h/db?nope=1", "mariadb://app:Kx7QaVb8Wm@h/db?password=x",
        "mariadb://app:Kx7Qa%zzVb8Wm@h/db", "mariadb://app:Kx7QaVb8Wm@[::1/db",
        "mariadb://app:Kx7QaVb8Wm@h/db?connect_timeout=0", "mariadb://app:Kx7QaVb8Wm@h/a/b",
        "mariadb://app:Kx7QaVb8Wm@h/db?Kx7QaVb8Wm=1"}) {
    CAPTURE(url);
    std::string msg;
    CHECK(code_of([&] {
            try {
              (void)sqlock::open_backend(url, {});
            } catch (const sqlock::error& e) {
              msg = e.what();
              throw;
            }
          }) == sqlock::errc::invalid_argument);
    CHECK(msg.find("Kx7Qa") == std::string::npos);
    CHECK(msg.find("Vb8Wm") == std::string::npos);
  }
}

TEST_CASE("mariadb URLs: a raw '?' in a password is named as the likely cause") {
  std::string msg;
  try {
    (void)parse_url("mariadb://u:Kx7Qa?Vb8Wm@127.0.0.1:1/db");
  } catch (const sqlock::error& e) {
    msg = e.what();
  }
  CHECK(msg.find("must be percent-encoded") != std::string::npos);
  CHECK(msg.find("Kx7Qa") == std::string::npos);
  CHECK(msg.find("Vb8Wm") == std::string::npos);
}

TEST_CASE("mariadb URLs: a password file fills in the password, first matching line wins") {
  sqlock_test::temp_dir dir;
  const std::string file = dir.path() + "/pass";
  std::ofstream(file) << "# comment\n"
                         "other:3306:app:wrong\n"
                         "db:3307:app:p\\:w\\\\1\n"
                         "*:*:app:fallback\n";
  auto p = parse_url("mariadb://app@db:3307/x?passfile=" + file);
  CHECK(p.password == "p:w\\1");
  CHECK(parse_url("mariadb://app@elsewhere/x?passfile=" + file).password == "fallback");
  CHECK_FALSE(parse_url("mariadb://nobody@db/x?passfile=" + file).has_password);
  // A password in the URL wins over the file.
  CHECK(parse_url("mariadb://app:given@db:3307/x?passfile=" + file).password == "given");
}
#endif
