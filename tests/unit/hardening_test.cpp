// SPDX-License-Identifier: Apache-2.0
// Hardening, no database: secrets never leave the library (redaction of hostile passwords in
// every URL form, errors from opening or connecting), operation_timeout bounds, and names
// escaped for the terminal.

#include <chrono>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "backends/common/url.hpp"
#include "support/fixtures.hpp"
#include "support/temp_dir.hpp"
#include "util/util.hpp"

using namespace std::chrono_literals;
using sqlock_test::code_of;

namespace {

// Distinctive pieces: no message may contain any of them, whatever the parser cut.
const std::vector<std::string> pieces = {"Kx7Qa", "Vb8Wm", "Yt3Zn", "Jr5Lp"};

struct hostile {
  std::string url;
};

std::vector<std::string> hostile_urls() {
  std::vector<std::string> out;
  for (std::string pw :
       {"Kx7Qa?Vb8Wm", "Kx7Qa#Vb8Wm", "Kx7Qa@Vb8Wm", "Kx7Qa%Vb8Wm", "Kx7Qa%4", "Kx7Qa%40Vb8Wm",
        "Kx7Qa/Vb8Wm", "Kx7Qa'Vb8Wm", "Kx7Qa\\Vb8Wm", "Kx7Qa Vb8Wm", "Kx7Qa@Vb8Wm?Yt3Zn#Jr5Lp",
        "Kx7Qa:Vb8Wm", "Kx7Qa%00Vb8Wm"}) {
    out.push_back("postgresql://app:" + pw + "@127.0.0.1:1/db");
    out.push_back("mariadb://app:" + pw + "@127.0.0.1:1/db");
    out.push_back("mysql://app:" + pw + "@127.0.0.1:1/db?connect_timeout=2");
  }
  for (std::string q :
       {"password=Kx7Qa%Vb8Wm", "sslpassword=Kx7QaVb8Wm", "passw%6Frd=Kx7QaVb8Wm",
        "PASSWORD=Kx7QaVb8Wm", "password=Kx7Qa&Vb8Wm&sslmode=disable", "password=Kx7Qa%zzVb8Wm",
        "password=Kx7Qa?Vb8Wm#Yt3Zn", "sslmode=disable&password=Kx7Qa@Vb8Wm", "passw%6=Kx7QaVb8Wm"})
    out.push_back("postgres://app@127.0.0.1:1/db?" + q);
  for (std::string kv : {"host=127.0.0.1 port=1 password=Kx7Qa Vb8Wm dbname=db",
                         "host=127.0.0.1 port=1 password='Kx7Qa Vb8Wm",
                         R"(host=127.0.0.1 port=1 password='Kx7Qa\'Vb8Wm' dbname=db)",
                         R"(host=127.0.0.1 port=1 password=Kx7Qa\ Vb8Wm dbname=db)",
                         "host=127.0.0.1 port=1 sslpassword=Kx7QaVb8Wm dbname=db",
                         "host=127.0.0.1 port=1 password = 'Kx7Qa Vb8Wm' dbname=db",
                         "host=127.0.0.1 port=1 password=Kx7Qa=Vb8Wm dbname=db"})
    out.push_back(kv);
  out.push_back("postgresql:/app:Kx7Qa@Vb8Wm@127.0.0.1:1/db");
  out.push_back("mysql://app:Kx7Qa@Vb8Wm@h/db");
  out.push_back("mariadb://app:Kx7Qa?Vb8Wm=Yt3Zn@127.0.0.1:1/db");
  out.push_back("mariadb://app@127.0.0.1:1/db?password=Kx7QaVb8Wm");
  return out;
}

void check_clean(const std::string& text, const std::string& url) {
  CAPTURE(url);
  CAPTURE(text);
  for (const auto& p : pieces) CHECK(text.find(p) == std::string::npos);
}

}  // namespace

TEST_CASE("secret_ranges covers every hostile password and redact_url hides it") {
  for (const auto& url : hostile_urls()) {
    check_clean(sqlock::detail::redact_url(url), url);
    std::string masked = url;
    for (auto [pos, len] : sqlock::detail::secret_ranges(url))
      for (std::size_t i = pos; i < pos + len; ++i) masked[i] = '*';
    check_clean(masked, url);
  }
  // Other schemes carry parameters too (SQLite ignores unknown ones).
  for (const char* url :
       {"file:/tmp/x.db?password=Kx7QaVb8Wm", "sqlite:/tmp/x.db?sslpassword=Kx7Qa"})
    check_clean(sqlock::detail::redact_url(url), url);
  // What is not secret stays readable.
  CHECK(sqlock::detail::redact_url("postgresql://app:pw@db:5432/app?sslmode=require") ==
        "postgresql://app:****@db:5432/app?sslmode=require");
  CHECK(sqlock::detail::redact_url("postgresql://app:p%40ss@db/app?passw%6Frd=x&sslmode=require") ==
        "postgresql://app:****@db/app?passw%6Frd=****&sslmode=require");
  CHECK(sqlock::detail::redact_url("host=db sslpassword='a b' dbname=app") ==
        "host=db sslpassword=**** dbname=app");
}

#if SQLOCK_HAVE_POSTGRESQL
TEST_CASE("no error from opening or connecting shows any piece of a hostile password") {
  for (const auto& url : hostile_urls()) {
    std::vector<std::string> messages;
    try {
      auto b = sqlock::open_backend(url, {});
      (void)b->schema_version(std::chrono::steady_clock::now() + 5s);
    } catch (const sqlock::error& e) {
      messages.emplace_back(e.what());
    }
    try {
      sqlock::client_options o;
      o.operation_timeout = 5s;
      sqlock::client c(url, o);
      (void)c.inspect("x");
    } catch (const sqlock::error& e) {
      messages.emplace_back(e.what());
    }
    CAPTURE(url);
    CHECK(messages.size() == 2);  // every one of them fails (bad syntax or port 1 refused)
    for (const auto& m : messages) check_clean(m, url);
  }
}
#endif

TEST_CASE("operation_timeout is positive and at most a day") {
  sqlock_test::temp_dir dir;
  const std::string url = "sqlite:" + dir.path() + "/x.db";
  for (auto t : {std::chrono::milliseconds::max(), std::chrono::milliseconds{86'400'001},
                 std::chrono::milliseconds{0}, std::chrono::milliseconds{-1}}) {
    sqlock::client_options o;
    o.operation_timeout = t;
    CAPTURE(t.count());
    CHECK(code_of([&] { sqlock::client c(url, o); }) == sqlock::errc::invalid_argument);
  }
  sqlock::client_options o;
  o.operation_timeout = 24h;
  sqlock::client c(url, o);
  c.migrate();
  CHECK(c.try_acquire("t").has_value());
}

TEST_CASE("names are escaped for the terminal: controls, C1, bidi overrides, invalid UTF-8") {
  auto quoted = [](std::string_view n) { return sqlock::detail::quoted(n); };
  using sqlock::detail::valid_utf8;
  for (std::string raw :
       {std::string("a\xff"
                    "b"),
        std::string("a\xc2\x9b"
                    "31mb"),
        std::string("a\xe2\x80\xae"
                    "b"),
        std::string("a\x1b[31mb"), std::string("\xc3"), std::string(100, '\xe9')}) {
    std::string q = quoted(raw);
    CAPTURE(q);
    CHECK(valid_utf8(q));
    CHECK(q.find('\x1b') == std::string::npos);
    CHECK(q.find("\xc2\x9b") == std::string::npos);
    CHECK(q.find("\xe2\x80\xae") == std::string::npos);
  }
  CHECK(quoted("a\xff"
               "b") == "'a\\xffb'");
  CHECK(quoted("caf\xc3\xa9") == "'caf\xc3\xa9'");  // valid UTF-8 passes
  // The 80-byte cut never splits a character.
  std::string long_name;
  for (int i = 0; i < 50; ++i) long_name += "\xc3\xa9";
  CHECK(valid_utf8(quoted(long_name)));
  // The library's own message for a bad name.
  sqlock_test::sqlite_fixture db;
  auto c = sqlock_test::make_client(db);
  try {
    (void)c->try_acquire("bad\xff\x1b[2Jname");
    FAIL("accepted an invalid name");
  } catch (const sqlock::error& e) {
    CHECK(e.code() == sqlock::errc::invalid_argument);
    CHECK(valid_utf8(e.what()));
    CHECK(std::string(e.what()).find('\x1b') == std::string::npos);
  }
}
