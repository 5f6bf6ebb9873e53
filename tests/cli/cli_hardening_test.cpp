// SPDX-License-Identifier: Apache-2.0
// Hardening through the real binary: hostile passwords never reach
// /proc/PID/cmdline or stderr, someone else's SQLite file is left untouched, and directories,
// read-only databases and invalid UTF-8 names are reported without harm.

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <iterator>
#include <string>
#include <vector>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

namespace {

const std::vector<std::string> pieces = {"Kx7Qa", "Vb8Wm", "Yt3Zn"};

bool has_piece(const std::string& text) {
  for (const auto& p : pieces)
    if (text.find(p) != std::string::npos) return true;
  return false;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80             ? 1
                      : (c & 0xe0) == 0xc0 ? 2
                      : (c & 0xf0) == 0xe0 ? 3
                      : (c & 0xf8) == 0xf0 ? 4
                                           : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += len;
  }
  return true;
}

}  // namespace

#if SQLOCK_HAVE_POSTGRESQL
TEST_CASE("hostile passwords are scrubbed from the command line and never printed") {
  // `watch` keeps running while the database is unreachable, which gives time to look.
  int watched = 0;
  for (const char* url :
       {"postgresql://u:Kx7Qa?Vb8Wm@127.0.0.1:1/db", "postgresql://u:Kx7Qa#Vb8Wm@127.0.0.1:1/db",
        "postgresql://u:Kx7Qa@Vb8Wm@127.0.0.1:1/db", "postgresql://u:Kx7Qa%Vb8Wm@127.0.0.1:1/db",
        "postgresql://u:Kx7Qa@Vb8Wm?Yt3Zn@127.0.0.1:1/db",
        "postgresql://u@127.0.0.1:1/db?sslpassword=Kx7QaVb8Wm",
        "postgresql://u@127.0.0.1:1/db?passw%6Frd=Kx7QaVb8Wm",
        "postgresql://u@127.0.0.1:1/db?password=Kx7Qa&Vb8Wm",
        "host=127.0.0.1 port=1 password=Kx7Qa Vb8Wm dbname=db",
        "host=127.0.0.1 port=1 sslpassword='Kx7Qa Vb8Wm' dbname=db",
        "host=127.0.0.1 port=1 password='Kx7Qa Vb8Wm"}) {
    const std::string u = url;
    CAPTURE(u);
    process p(sqlock({"-d", u, "watch", "--interval", "100ms"}));
    REQUIRE(eventually([&] { return !p.err().empty() || p.exited(); }, 20s));
    // A URL libpq cannot parse ends the command at once (78); the others keep watching.
    std::string cmdline = read_file("/proc/" + std::to_string(p.pid()) + "/cmdline");
    // An exiting process shows an empty cmdline before it becomes a zombie.
    if (!cmdline.empty() && !p.exited()) {
      CAPTURE(cmdline);
      CHECK(contains(cmdline, "watch"));
      CHECK_FALSE(has_piece(cmdline));
      ++watched;
      ::kill(p.pid(), SIGINT);
    }
    auto r = p.wait();
    CAPTURE(r.err);
    CHECK_FALSE(has_piece(r.err + r.out));
  }
  CHECK(watched >= 6);
}
#endif

#if SQLOCK_HAVE_MARIADB
TEST_CASE(
    "hostile passwords in MariaDB URLs are scrubbed from the command line and never printed") {
  // As above, for mariadb:// and mysql:// (the password's only place in a URL is the userinfo:
  // a ?password= parameter is refused, and must not be shown either).
  int watched = 0;
  for (const char* url :
       {"mariadb://u:Kx7Qa?Vb8Wm@127.0.0.1:1/db", "mariadb://u:Kx7Qa#Vb8Wm@127.0.0.1:1/db",
        "mariadb://u:Kx7Qa@Vb8Wm@127.0.0.1:1/db", "mariadb://u:Kx7Qa%Vb8Wm@127.0.0.1:1/db",
        "mariadb://u:Kx7Qa@Vb8Wm?Yt3Zn@127.0.0.1:1/db", "mysql://u:Kx7Qa:Vb8Wm@127.0.0.1:1/db",
        "mariadb://u:Kx7Qa%3AVb8Wm@127.0.0.1:1/db",
        "mariadb://u@127.0.0.1:1/db?password=Kx7QaVb8Wm",
        "mysql://u@127.0.0.1:1/db?passw%6Frd=Kx7QaVb8Wm"}) {
    const std::string u = url;
    CAPTURE(u);
    process p(sqlock({"-d", u, "watch", "--interval", "100ms"}));
    REQUIRE(eventually([&] { return !p.err().empty() || p.exited(); }, 20s));
    // A URL the backend refuses ends the command at once (78); the others keep watching.
    std::string cmdline = read_file("/proc/" + std::to_string(p.pid()) + "/cmdline");
    if (!cmdline.empty() && !p.exited()) {
      CAPTURE(cmdline);
      CHECK(contains(cmdline, "watch"));
      CHECK_FALSE(has_piece(cmdline));
      ++watched;
      ::kill(p.pid(), SIGINT);
    }
    auto r = p.wait();
    CAPTURE(r.err);
    CHECK_FALSE(has_piece(r.err + r.out));
  }
  CHECK(watched >= 4);
}
#endif

TEST_CASE("list on someone else's SQLite database exits 78 and leaves the file as it was") {
  temp_dir dir;
  const std::string path = dir.path() + "/other.db";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "PRAGMA journal_mode=DELETE; CREATE TABLE orders (id INTEGER PRIMARY KEY);"
                         " INSERT INTO orders DEFAULT VALUES",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const std::string before = file_bytes(path);
  for (std::vector<std::string> args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"show", "x"},
        std::vector<std::string>{"run", "x", "--", "true"}}) {
    args.insert(args.begin(), {"-d", path});
    auto r = run(sqlock(args));
    CAPTURE(r.err);
    CHECK(r.code == 78);
    CHECK(contains(r.err, "migrate up"));
  }
  CHECK(file_bytes(path) == before);
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST_CASE("a directory or a read-only SQLite database exits 78") {
  temp_dir dir;
  auto d = run(sqlock({"-d", dir.path(), "run", "x", "--", "true"}));
  CAPTURE(d.err);
  CHECK(d.code == 78);
  auto m = run(sqlock({"-d", dir.path(), "migrate", "up"}));
  CHECK(m.code == 78);
  const std::string file = dir.path() + "/locks.db";
  REQUIRE(run(sqlock({"-d", file, "migrate", "up"})).code == 0);
  auto ro = run(sqlock({"-d", "file:" + file + "?mode=ro", "run", "x", "--", "true"}));
  CAPTURE(ro.err);
  CHECK(ro.code == 78);
}

TEST_CASE("a name with invalid UTF-8 or control characters is escaped in diagnostics") {
  sqlite_db db;
  for (const std::string& name : {std::string("a\xff"
                                              "b"),
                                  std::string("a\x1b[2Jb"),
                                  std::string("a\xc2\x9b"
                                              "2Jb")}) {
    for (const char* cmd : {"show", "release"}) {
      auto r = run(db.cmd({cmd, name}));
      CAPTURE(r.err);
      CHECK(valid_utf8(r.err));
      CHECK_FALSE(contains(r.err, "\x1b"));
      CHECK_FALSE(contains(r.err, "\xc2\x9b"));
    }
  }
}

TEST_CASE("output that cannot be written exits 74, not 0") {
  REQUIRE(std::filesystem::exists("/dev/full"));
  sqlite_db db;
  REQUIRE(run(db.cmd({"run", "x", "--", "true"})).code == 0);
  // `exec CMD > /dev/full`: every write to stdout fails with ENOSPC.
  auto to_full = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"sh", "-c", "exec \"$@\" > /dev/full", "sh"});
    return args;
  };
  for (const auto& args : {std::vector<std::string>{"list"},
                           {"list", "-o", "json"},
                           {"show", "x"},
                           {"migrate", "status"},
                           {"version"}}) {
    auto r = run(to_full(db.cmd(args)));
    CAPTURE(args[0]);
    CAPTURE(r.err);
    CHECK(r.code == 74);
    CHECK(contains(r.err, "cannot write the output: No space left on device"));
  }
  // A command that prints nothing on stdout is not affected.
  auto quiet = run(to_full(db.cmd({"run", "x", "--", "true"})));
  CAPTURE(quiet.err);
  CHECK(quiet.code == 0);
}
