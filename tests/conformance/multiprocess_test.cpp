// SPDX-License-Identifier: Apache-2.0
// The conformance suite, processes: several PROCESSES contending for one lock on the same
// database never overlap. Run against every backend fixture.

#include <fstream>

#include <doctest/doctest.h>

#include "support/fixtures.hpp"
#include "support/worker.hpp"

TEST_CASE_TEMPLATE("several processes contending on one name never overlap", F,
                   SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::multi_process) {
    // The memory backend's database lives in this process: no worker process can open it.
    return;
  }
  F db;
  sqlock_test::temp_dir work;
  constexpr int processes = 4;
  constexpr int iterations = 40;
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p) {
    pids.push_back(sqlock_test::spawn_worker(
        db, {"--name", "shared", "--iterations", std::to_string(iterations), "--dir", work.path(),
             "--ttl-ms", "5000"}));
  }
  for (auto pid : pids) CHECK(sqlock_test::wait_exit(pid) == 0);
  long counter = 0;
  std::ifstream(work.path() + "/counter") >> counter;
  CHECK(counter == processes * iterations);
  std::ifstream log(work.path() + "/tokens");
  std::vector<long long> tokens;
  for (long long t; log >> t;) tokens.push_back(t);
  REQUIRE(tokens.size() == processes * iterations);
  for (std::size_t i = 1; i < tokens.size(); ++i) CHECK(tokens[i] > tokens[i - 1]);
}
