// SPDX-License-Identifier: Apache-2.0
// Unit tests of the pieces below the conformance suite: URL parsing and redaction, input
// validation, the prefix range, the wait backoff and the embedded migrations.

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "backends/common/migrations.hpp"
#include "backends/common/url.hpp"
#include "core/wait.hpp"
#include "support/errors.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock::detail::parse_database_url;
using sqlock::detail::parsed_url;
using sqlock::detail::redact_url;

using sqlock_test::error_of;

TEST_CASE("database URLs choose the backend") {
  auto pg = parse_database_url("postgresql://u:secret@localhost:5432/db");
  CHECK(pg.backend == parsed_url::kind::postgresql);
  CHECK(parse_database_url("postgres://localhost/db").backend == parsed_url::kind::postgresql);
  CHECK(parse_database_url("host=/tmp dbname=x").backend == parsed_url::kind::postgresql);
  CHECK(parse_database_url(" dbname = x").backend == parsed_url::kind::postgresql);

  auto s = parse_database_url("sqlite:locks.db");
  CHECK(s.backend == parsed_url::kind::sqlite);
  CHECK(s.location == "locks.db");
  CHECK(parse_database_url("sqlite:///var/lib/app/locks.db").location == "/var/lib/app/locks.db");
  CHECK(parse_database_url("sqlite://localhost/var/x.db").location == "/var/x.db");
  auto f = parse_database_url("file:/tmp/x.db?mode=rw");
  CHECK(f.backend == parsed_url::kind::sqlite);
  CHECK(f.uri);
  CHECK(parse_database_url("/tmp/locks.db").location == "/tmp/locks.db");
  CHECK(parse_database_url("./data/locks.db").backend == parsed_url::kind::sqlite);
  CHECK(parse_database_url("locks.db").backend == parsed_url::kind::sqlite);
}

TEST_CASE("bad database URLs are invalid_argument and never show the password") {
  for (const char* bad :
       {"", ":memory:", "sqlite::memory:", "file::memory:", "file:x.db?mode=memory",
        "sqlite:", "sqlite://relative/path", "mysql://u:hunter2@host/",
        "mariadb://u:hunter2@host:99999/db", "redis://:hunter2@host"}) {
    CAPTURE(bad);
    auto e = error_of([&] { (void)sqlock::open_backend(bad); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
  }
}

TEST_CASE("redaction hides passwords in URIs and key=value strings") {
  CHECK(redact_url("postgresql://alice:s3cr%40t@db:5432/app") ==
        "postgresql://alice:****@db:5432/app");
  CHECK(redact_url("postgresql://db/app?user=a&password=s3cret&sslmode=require") ==
        "postgresql://db/app?user=a&password=****&sslmode=require");
  CHECK(redact_url("host=db password=s3cret dbname=app") == "host=db password=**** dbname=app");
  CHECK(redact_url(R"(host=db password = 'it\'s secret' dbname=app)").find("secret") ==
        std::string::npos);
  CHECK(redact_url("postgresql://alice@db/app") == "postgresql://alice@db/app");
}

TEST_CASE("names are 1 to 255 bytes of valid UTF-8 without NUL") {
  using sqlock::detail::validate_name;
  CHECK_NOTHROW(validate_name("a"));
  CHECK_NOTHROW(validate_name(std::string(255, 'a')));
  CHECK_NOTHROW(validate_name("\xf0\x9f\x94\x92 lock"));
  CHECK(error_of([] { validate_name(""); }).code() == errc::invalid_argument);
  CHECK(error_of([] { validate_name(std::string(256, 'a')); }).code() == errc::invalid_argument);
  CHECK(error_of([] { validate_name(std::string("a\0", 2)); }).code() == errc::invalid_argument);
  for (const char* bad : {"\x80", "\xc3", "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80",
                          "\xe0\x80\xaf" /* overlong */}) {
    CAPTURE(bad);
    CHECK(error_of([&] { validate_name(bad); }).code() == errc::invalid_argument);
  }
}

TEST_CASE("the prefix upper bound selects exactly the names with that prefix") {
  using sqlock::detail::prefix_upper_bound;
  CHECK(prefix_upper_bound("abc") == "abd");
  CHECK(prefix_upper_bound("a/") == "a0");
  CHECK(prefix_upper_bound("a\x7f") == "a\xc2\x80");
  CHECK(prefix_upper_bound("x\xf4\x8f\xbf\xbf") == "y");  // U+10FFFF is dropped, x bumped
  CHECK(prefix_upper_bound("\xf4\x8f\xbf\xbf").empty());
  CHECK(prefix_upper_bound("\xed\x9f\xbf") == "\xee\x80\x80");  // skips the surrogates
  // Every name that starts with the prefix sorts below the bound, byte-wise.
  for (std::string name : {"abc", "abc\xf4\x8f\xbf\xbf\xf4\x8f\xbf\xbf", "abcz", "abc\xc3\xa9"}) {
    CHECK(name >= std::string("abc"));
    CHECK(name < prefix_upper_bound("abc"));
  }
}

TEST_CASE("the wait backoff doubles with jitter up to its cap") {
  sqlock::detail::backoff b(false);
  std::chrono::milliseconds last{0};
  for (int i = 0; i < 20; ++i) {
    auto d = b.next();
    CHECK(d >= 1ms);
    CHECK(d <= sqlock::detail::backoff::cap_unsignalled);
    last = d;
  }
  CHECK(last >= sqlock::detail::backoff::cap_unsignalled / 2);
  sqlock::detail::backoff s(true);
  for (int i = 0; i < 20; ++i) last = s.next();
  CHECK(last >= sqlock::detail::backoff::cap_signalled / 2);
}

TEST_CASE("the embedded migrations equal the files in migrations/") {
  namespace fs = std::filesystem;
  for (const char* backend : {"postgresql", "sqlite", "mariadb"}) {
    CAPTURE(backend);
    const auto& ms = sqlock::detail::embedded_migrations(backend);
    std::size_t files = 0;
    for (auto& e : fs::directory_iterator(fs::path(SQLOCK_SOURCE_DIR) / "migrations" / backend))
      if (e.path().extension() == ".sql") ++files;
    REQUIRE(files == ms.size() * 2);
    int expect = 1;
    for (const auto& m : ms) {
      CHECK(m.version == expect++);  // versions are 1..N without gaps
      for (auto [file, text] : {std::pair{m.up_file, m.up}, std::pair{m.down_file, m.down}}) {
        std::ifstream in(fs::path(SQLOCK_SOURCE_DIR) / "migrations" / backend / file,
                         std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        CHECK(ss.str() == text);
      }
      // Each up file records its own version.
      CHECK(std::string(m.up).find("sqlock_schema_version") != std::string::npos);
    }
  }
  CHECK(sqlock::detail::latest_migration("postgresql") ==
        sqlock::detail::latest_migration("sqlite"));
}

TEST_CASE("a missing SQLite file is not created by anything but migrate") {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("sqlock-unit-" + sqlock::detail::random_hex(6));
  fs::create_directories(dir);
  auto file = dir / "absent.db";
  {
    sqlock::client c("sqlite:" + file.string());
    CHECK(c.schema_version() == 0);
    CHECK(error_of([&] { (void)c.try_acquire("x"); }).code() == errc::schema_mismatch);
    CHECK_FALSE(fs::exists(file));
    CHECK(c.migrate() >= 1);
    CHECK(fs::exists(file));
  }
  fs::remove_all(dir);
}

TEST_CASE("a file that is not a database is a clear error") {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("sqlock-unit-" + sqlock::detail::random_hex(6));
  fs::create_directories(dir);
  auto file = dir / "garbage.db";
  std::ofstream(file) << std::string(4096, 'x');
  sqlock::client c(file.string());
  auto e = error_of([&] { (void)c.schema_version(); });
  CHECK(e.code() == errc::invalid_argument);
  CHECK(e.backend() == "sqlite");
  fs::remove_all(dir);
}

TEST_CASE("client options are validated") {
  sqlock::client_options o;
  o.owner = std::string("bad\0owner", 9);
  CHECK(error_of([&] { sqlock::client c("sqlite:/tmp/never-created.db", o); }).code() ==
        errc::invalid_argument);
  sqlock::client_options t;
  t.operation_timeout = 0ms;
  CHECK(error_of([&] { sqlock::client c("sqlite:/tmp/never-created.db", t); }).code() ==
        errc::invalid_argument);
  CHECK(error_of([&] { sqlock::client c(std::shared_ptr<sqlock::backend>{}); }).code() ==
        errc::invalid_argument);
}

TEST_CASE("the default owner names host, pid and a random part") {
  sqlock::client c("sqlite:/tmp/never-created-owner.db");
  auto& owner = c.owner();
  CHECK(std::count(owner.begin(), owner.end(), ':') >= 2);
  CHECK(owner.find(std::to_string(getpid())) != std::string::npos);
  sqlock::client d("sqlite:/tmp/never-created-owner.db");
  CHECK(d.owner() != owner);
}

TEST_CASE("a fence accepts the current token and newer ones and rejects stale ones") {
  sqlock::fence f;
  CHECK(f.highest("file") == 0);
  CHECK(f.accept("file", 33));
  CHECK(f.accept("file", 33));  // the holder writes again
  CHECK(f.accept("file", 34));
  CHECK_FALSE(f.accept("file", 33));  // the paused holder wakes up too late
  CHECK(f.highest("file") == 34);
  CHECK(f.accept("other", 1));  // per resource
}
