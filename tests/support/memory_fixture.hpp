// SPDX-License-Identifier: Apache-2.0
#pragma once
// The memory fixture for the conformance suite: a fresh process-wide memory database
// (<sqlock/testing.hpp>) per instance, under a unique name that the fixture's URL
// (`memory:NAME`) opens, so every case builds its clients and backends from the URL as it does
// for SQLite and PostgreSQL. The fixture keeps one backend open, which keeps the database alive
// while clients come and go; it is gone when the fixture dies.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>
#include <sqlock/testing.hpp>

namespace sqlock_test {

struct memory_fixture {
  static constexpr const char* backend_name = "memory";
  /// One mutex serialises every call, as SQLite's write lock does (only the cases that open a
  /// transaction by SQL tell the two apart, and they need `raw_sql`).
  static constexpr bool single_writer = true;
  /// No SQL and no transactions: the cases that change rows by SQL, or hold a row or the
  /// database in an open transaction (a fenced transaction), cannot be written for it.
  static constexpr bool raw_sql = false;
  /// The database lives in this process: tests/support/worker cannot open it from another.
  static constexpr bool multi_process = false;

  explicit memory_fixture(bool migrate = true)
      : name_("conformance-" + std::to_string(++counter())),
        url_("memory:" + name_),
        keep_(sqlock::testing::memory_backend::open(name_, options_for(migrate))) {}
  const std::string& url() const { return url_; }
  sqlock::client_options options() const { return {}; }
  /// The database itself (its clock: `keep_->advance(d)`).
  sqlock::testing::memory_backend& database() const { return *keep_; }
  /// Never called: the cases that start workers check `multi_process` first.
  std::vector<std::string> worker_args() const {
    FAIL("a memory database cannot be opened by another process");
    return {};
  }

 private:
  static std::atomic<int>& counter() {
    static std::atomic<int> n{0};
    return n;
  }
  static sqlock::testing::memory_options options_for(bool migrate) {
    sqlock::testing::memory_options o;
    o.migrated = migrate;
    return o;
  }
  std::string name_, url_;
  std::shared_ptr<sqlock::testing::memory_backend> keep_;
};

}  // namespace sqlock_test

TYPE_TO_STRING_AS("memory", sqlock_test::memory_fixture);
