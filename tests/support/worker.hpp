// SPDX-License-Identifier: Apache-2.0
#pragma once
// Driving tests/support/worker.cpp (the helper process, built as sqlock_test_worker): starting
// it against a fixture's database, reading the log it writes.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "spawn.hpp"

namespace sqlock_test {

/// Starts the worker against fixture `db` with the extra arguments `extra`.
template <class F>
pid_t spawn_worker(const F& db, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{SQLOCK_TEST_WORKER};
  for (auto& a : db.worker_args()) argv.push_back(a);
  for (auto& a : extra) argv.push_back(a);
  return sqlock_test::spawn(argv);
}

/// One line of a worker log: its kind ("enter", "exit", ...) and its numbers.
struct log_line {
  std::string kind;
  std::vector<long long> f;
};

inline std::vector<log_line> read_log(const std::string& path) {
  std::vector<log_line> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    log_line l;
    s >> l.kind;
    for (long long v; s >> v;) l.f.push_back(v);
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace sqlock_test
