// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers of the semaphore, shared_mutex and election cases of the conformance suite.

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "worker.hpp"

namespace sqlock_test {

// A read computes expires_in from its transaction's start (PostgreSQL's now()), which can precede
// the commit of a concurrent renewal or ticket refresh that the read still sees; so a row being
// renewed can show up to that scheduling gap more than its ttl (seen once: a fair waiter's
// ticket at 3001 ms, under TSan through PgBouncer).
constexpr std::chrono::milliseconds now_gap{500};

inline sqlock::semaphore_options sem(std::int64_t limit, std::int64_t count = 1,
                                     std::chrono::milliseconds ttl = std::chrono::seconds{30},
                                     bool fair = false) {
  sqlock::semaphore_options o;
  o.limit = limit;
  o.count = count;
  o.ttl = ttl;
  o.fair = fair;
  return o;
}

inline sqlock::semaphore_options fair_sem(std::int64_t limit, std::int64_t count = 1) {
  return sem(limit, count, std::chrono::seconds{30}, true);
}

inline std::size_t waiter_count(sqlock::client& c, std::string_view name) {
  auto r = c.inspect_semaphore(name);
  return r ? r->waiters.size() : 0;
}

inline bool has_waiter(sqlock::client& c, std::string_view name, const std::string& owner) {
  auto r = c.inspect_semaphore(name);
  if (!r) return false;
  for (auto& w : r->waiters)
    if (w.owner == owner) return true;
  return false;
}

/// Checks a semaphore worker log (see tests/support/worker.cpp): never more than `limit` units
/// held, every grant's token unique and larger than the token of every grant logged before its
/// acquisition started. Returns the most units seen held at once.
inline long long check_semaphore_log(const std::vector<log_line>& lines, long long limit,
                                     std::size_t expected_grants) {
  std::vector<long long> enter_tokens, prefix_max;
  std::map<long long, long long> live;  // token -> units, by replaying enter/exit in log order
  std::set<long long> seen;
  long long units = 0, most = 0, exits = 0;
  for (auto& l : lines) {
    if (l.kind == "enter") {
      REQUIRE(l.f.size() == 5);
      long long token = l.f[0], count = l.f[1], before = l.f[2], after = l.f[3];
      CHECK(seen.insert(token).second);  // unique
      REQUIRE(before <= static_cast<long long>(enter_tokens.size()));
      if (before > 0) {
        INFO("grant " << enter_tokens.size() << " token " << token << " started after " << before
                      << " grants whose largest token is " << prefix_max[before - 1]);
        CHECK(token > prefix_max[before - 1]);
      }
      enter_tokens.push_back(token);
      prefix_max.push_back(std::max(token, prefix_max.empty() ? 0 : prefix_max.back()));
      live[token] = count;
      units += count;
      CHECK(after == units);  // the workers' shared counter agrees with the replay
      most = std::max(most, units);
    } else if (l.kind == "exit") {
      REQUIRE(l.f.size() == 3);
      auto it = live.find(l.f[0]);
      REQUIRE(it != live.end());
      CHECK(it->second == l.f[1]);
      units -= it->second;
      live.erase(it);
      ++exits;
    } else {
      FAIL("unexpected log line " << l.kind);
    }
  }
  CHECK(enter_tokens.size() == expected_grants);
  CHECK(exits == static_cast<long long>(expected_grants));
  CHECK(units == 0);
  CHECK(most <= limit);
  return most;
}

}  // namespace sqlock_test
