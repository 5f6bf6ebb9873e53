// SPDX-License-Identifier: Apache-2.0
// SQLite only, hardening: someone else's SQLite database is never written to, a directory or a
// read-only file is a configuration error, an exhausted token counter refuses grants, and
// assert_held never names the current token.

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/sqlite.hpp"
#include "support/temp_dir.hpp"
#include "support/tokens.hpp"

using namespace std::chrono_literals;
using sqlock_test::code_of;

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string journal_mode(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  std::string mode = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return mode;
}

// Another application's database: its own table, rollback journal.
std::string make_foreign_db(const std::string& dir) {
  std::string path = dir + "/other.db";
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlock_test::sqlite_exec(db,
                           "PRAGMA journal_mode=DELETE; CREATE TABLE orders (id INTEGER "
                           "PRIMARY KEY, item TEXT); INSERT INTO orders (item) VALUES ('book')");
  sqlite3_close(db);
  return path;
}

}  // namespace

TEST_SUITE("sqlite") {
  TEST_CASE("someone else's SQLite database is never written to") {
    sqlock_test::temp_dir dir;
    const std::string path = make_foreign_db(dir.path());
    const std::string before = file_bytes(path);
    REQUIRE(journal_mode(path) == "delete");
    {
      sqlock::client c("sqlite:" + path);
      CHECK(code_of([&] { (void)c.inspect("x"); }) == sqlock::errc::schema_mismatch);
      CHECK(code_of([&] { (void)c.try_acquire("x"); }) == sqlock::errc::schema_mismatch);
      CHECK(code_of([&] { (void)c.list(); }) == sqlock::errc::schema_mismatch);
      auto b = sqlock::open_backend("sqlite:" + path, {});
      CHECK(b->schema_version(std::chrono::steady_clock::now() + 5s) == 0);
      sqlock::acquire_request r;
      r.name = "x";
      r.owner = "o";
      r.nonce = "n";
      r.ttl = 1s;
      CHECK(code_of([&] { (void)b->try_acquire(r, std::chrono::steady_clock::now() + 5s); }) ==
            sqlock::errc::schema_mismatch);
    }
    CHECK(file_bytes(path) == before);
    CHECK(journal_mode(path) == "delete");
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
    CHECK_FALSE(std::filesystem::exists(path + "-shm"));
    // `migrate up` is the one operation that may take the file over, and it switches it to WAL.
    sqlock::client("sqlite:" + path).migrate();
    CHECK(journal_mode(path) == "wal");
  }

  TEST_CASE("a directory or a read-only database is a configuration error, not unavailable") {
    sqlock_test::temp_dir dir;
    for (const std::string& url : {"sqlite:" + dir.path(), dir.path()}) {
      CAPTURE(url);
      sqlock::client c(url);
      CHECK(code_of([&] { (void)c.try_acquire("x"); }) == sqlock::errc::invalid_argument);
      CHECK(code_of([&] { c.migrate(); }) == sqlock::errc::invalid_argument);
    }
    // Read-only in a way that holds for root too: SQLite's mode=ro.
    const std::string file = dir.path() + "/locks.db";
    sqlock::client("sqlite:" + file).migrate();
    sqlock::client ro("file:" + file + "?mode=ro");
    CHECK_FALSE(ro.inspect("x").has_value());  // reading works
    CHECK(code_of([&] { (void)ro.try_acquire("x"); }) == sqlock::errc::invalid_argument);
  }

  TEST_CASE("an exhausted SQLite token counter refuses grants instead of repeating a token") {
    sqlock_test::sqlite_fixture db;
    auto c = sqlock_test::make_client(db);
    {
      sqlite3* h = nullptr;
      REQUIRE(sqlite3_open(db.file().c_str(), &h) == SQLITE_OK);
      sqlock_test::sqlite_exec(
          h, "UPDATE sqlock_counters SET value = 9223372036854775806 WHERE name = 'token'");
      sqlite3_close(h);
    }
    (void)sqlock_test::check_tokens_run_out(*c);
    CHECK_FALSE(c->inspect("b").has_value());
  }

  TEST_CASE("sqlite assert_held never names the current token") {
    sqlock_test::temp_dir dir;
    const std::string path = dir.path() + "/locks.db";
    sqlock::client a("sqlite:" + path);
    a.migrate();
    sqlock::lock_options lo;
    lo.ttl = 30s;
    const auto stale = sqlock_test::stale_token(a, "ledger", lo);
    // Tokens far apart, so that the stale one is no substring of the current one.
    for (int i = 0; i < 12; ++i) a.try_acquire("ledger", lo)->release();
    auto current = a.try_acquire("ledger", lo);
    REQUIRE(current);
    const auto secret = std::to_string(current->token());
    REQUIRE(std::to_string(stale).find(secret) == std::string::npos);

    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> conn(raw, sqlite3_close);
    REQUIRE(sqlock::sqlite::register_functions(raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    try {
      sqlock::sqlite::assert_held(raw, "ledger", stale);
      FAIL("accepted a stale token");
    } catch (const sqlock::error& e) {
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(e.code() == sqlock::errc::lease_lost);
      CHECK(std::string(e.what()).find(secret) == std::string::npos);
    }
    char* err = nullptr;
    const std::string sql = "SELECT sqlock_assert_held('ledger', " + std::to_string(stale) + ")";
    CHECK(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK);
    REQUIRE(err);
    CHECK(std::string(err).find(secret) == std::string::npos);
    sqlite3_free(err);
    sqlite3_exec(raw, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}
