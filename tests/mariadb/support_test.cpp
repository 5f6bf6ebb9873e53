// SPDX-License-Identifier: Apache-2.0
// The MariaDB test support itself (tests/support/mariadb.hpp, mariadb_fixture.hpp) against the
// server of scripts/with-mariadb, and the accounts that script creates. TEST_SUITE("mariadb"):
// without the server's environment these FAIL, never skip. The URL and passfile readers need no
// server and run in the `unit` entry.

#include <chrono>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/mariadb_fixture.hpp"

using namespace sqlock_test;

TEST_CASE("the tests' MariaDB URL and passfile readers") {
  auto p = parse_mariadb_url("mariadb://u%40x:p%3Aw@127.0.0.1:3307/db?socket=/tmp/s.sock");
  CHECK(p.user == "u@x");
  CHECK(p.password == "p:w");
  CHECK(p.has_password);
  CHECK(p.host == "127.0.0.1");
  CHECK(p.port == 3307);
  CHECK(p.database == "db");
  CHECK(p.socket == "/tmp/s.sock");
  auto q = parse_mariadb_url("mysql://sqlock_test@db.example");
  CHECK_FALSE(q.has_password);
  CHECK(q.port == 3306);
  CHECK(q.database.empty());
  CHECK(mariadb_url_with_database("mariadb://u@h:1/sqlock", "sqlock_t_1") ==
        "mariadb://u@h:1/sqlock_t_1");
  CHECK(mariadb_url_with_database("mariadb://u@h:1?socket=/s", "d") ==
        "mariadb://u@h:1/d?socket=/s");
  CHECK(mariadb_url_with_database("mariadb://u@h:1/x?socket=/s", "d") ==
        "mariadb://u@h:1/d?socket=/s");

  std::istringstream file(
      "# comment\n"
      "10.0.0.1:*:u:wrong-host\n"
      "127.0.0.1:3306:u:wrong-port\n"
      "127.0.0.1:3307:u:first\n"
      "*:*:u:second\n"
      "*:*:*:any\\:one\\\\\n");
  CHECK(passfile_password(file, "127.0.0.1", "3307", "u") == std::optional<std::string>("first"));
  file.clear();
  file.seekg(0);
  CHECK(passfile_password(file, "localhost", "1", "u") == std::optional<std::string>("second"));
  file.clear();
  file.seekg(0);
  CHECK(passfile_password(file, "h", "1", "v") == std::optional<std::string>("any:one\\"));
  std::istringstream none("127.0.0.1:*:u:pw\n");
  CHECK_FALSE(passfile_password(none, "127.0.0.1", "1", "v"));
}

TEST_SUITE("mariadb") {
  TEST_CASE("a MariaDB fixture is a fresh database, reached by its URL, dropped with it") {
    std::string name;
    {
      mariadb_fixture a(false), b(false);
      name = a.database();
      CHECK(a.database() != b.database());
      CHECK(a.database().rfind("sqlock_t_", 0) == 0);
      CHECK(a.url() == mariadb_url_with_database(std::getenv("SQLOCK_TEST_MARIADB_URL"), name));
      CHECK_FALSE(parse_mariadb_url(a.url()).has_password);  // the passfile has it
      CHECK(a.worker_args() == std::vector<std::string>{"--url", a.url()});
      raw_mariadb raw(a);
      CHECK(raw.value("SELECT DATABASE()") == name);
      CHECK(raw.value("SELECT CURRENT_USER()") == "sqlock_test@127.0.0.1");
      raw.exec("CREATE TABLE " + raw.database +
               ".t (name VARCHAR(10) COLLATE utf8mb4_bin PRIMARY KEY, at BIGINT) ENGINE=InnoDB");
      raw.exec("INSERT INTO " + raw.database + ".t VALUES ('a', " + raw.now() + ")");
      CHECK(raw.value("SELECT COUNT(*) FROM " + raw.database + ".t") == "1");
      // now(): epoch microseconds from the server's clock, whatever the session's time zone.
      const auto host_us = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
      raw.exec("SET time_zone = '+05:00'");
      const auto db_us = std::stoll(raw.value("SELECT " + raw.now()));
      CHECK(std::llabs(db_us - host_us) < 60'000'000);
      // Several statements per call; the first result set is returned.
      CHECK(raw.value("BEGIN; SELECT 7; SELECT 8; COMMIT") == "7");
      CHECK_THROWS(raw.exec("SELECT * FROM no_such_table"));
      CHECK(raw.session.last_errno() == 1146);
    }
    mariadb_session admin(mariadb_admin_url());
    CHECK(admin.value("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = " +
                      admin.literal(name)) == "0");
  }

  TEST_CASE("scripts/with-mariadb's accounts: the test user's databases, a bare runtime user") {
    const std::string url = required_env("SQLOCK_TEST_MARIADB_URL");
    mariadb_session test(url);
    CHECK(test.value("SELECT DATABASE()") == "sqlock");
    CHECK(test.value("SELECT @@character_set_database") == "utf8mb4");
    CHECK_THROWS(test.exec("CREATE DATABASE sqlockX"));  // only `sqlock` and `sqlock\_%`
    CHECK_THROWS(test.exec("CREATE DATABASE other"));
    // No database: MariaDB refuses a connection to one the user has no privilege on.
    mariadb_session runtime(
        mariadb_url_with_database(required_env("SQLOCK_TEST_MARIADB_RUNTIME_URL"), ""));
    CHECK(runtime.value("SELECT COUNT(*) FROM information_schema.SCHEMATA") == "1");  // i_s only
    CHECK_THROWS(runtime.exec("CREATE TABLE sqlock.t (x INT)"));
    mariadb_session admin(mariadb_admin_url());
    CHECK(admin.value(
              "SELECT COUNT(*) FROM mysql.user WHERE user = 'root' AND host <> 'localhost'") ==
          "0");
    // The same users through the unix socket, as `localhost`.
    auto p = parse_mariadb_url(url);
    mariadb_session local("mariadb://sqlock_test@localhost:" + std::to_string(p.port) +
                          "/sqlock?socket=" + required_env("SQLOCK_TEST_MARIADB_SOCKET"));
    CHECK(local.value("SELECT CURRENT_USER()") == "sqlock_test@localhost");
  }
}
