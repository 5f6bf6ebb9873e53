// SPDX-License-Identifier: Apache-2.0
// The conformance suite, sqlock::election: one leader at a time with increasing terms, leader(),
// resign, observation, and processes campaigning in turn. Run against every backend fixture.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/semaphores.hpp"
#include "support/threads.hpp"
#include "support/worker.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

TEST_CASE_TEMPLATE("election: one leader at a time, terms strictly increase", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  constexpr int candidates = 3, rounds = 6;
  struct tenure {
    std::int64_t term;
    steady::time_point start, end;
    int who;
  };
  std::vector<std::unique_ptr<sqlock::client>> cs;
  for (int i = 0; i < candidates; ++i) cs.push_back(make_client(db, "cand" + std::to_string(i)));
  std::atomic<int> current{-1}, overlaps{0}, inconsistent{0}, errors{0};
  std::vector<std::vector<tenure>> tenures(candidates);
  std::vector<std::thread> ts;
  for (int i = 0; i < candidates; ++i) {
    ts.emplace_back([&, i] {
      try {
        sqlock::lock_options lo;
        lo.ttl = 1000ms;
        sqlock::election e(*cs[i], "leader", lo);
        for (int r = 0; r < rounds; ++r) {
          auto term = e.campaign("cand" + std::to_string(i));
          int none = -1;
          if (!current.compare_exchange_strong(none, i)) ++overlaps;
          auto start = steady::now();
          if (!e.is_leader() || e.term() != term || term <= 0) ++inconsistent;
          std::this_thread::sleep_for(20ms);
          if (!e.is_leader() || e.term() != term) ++inconsistent;
          auto end = steady::now();
          tenures[i].push_back({term, start, end, i});
          int me = i;
          if (!current.compare_exchange_strong(me, -1)) ++overlaps;
          e.resign();
          if (e.is_leader() || e.term() != 0) ++inconsistent;
        }
      } catch (const std::exception&) {
        ++errors;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
  CHECK(overlaps == 0);
  CHECK(inconsistent == 0);
  std::vector<tenure> all;
  for (auto& v : tenures) all.insert(all.end(), v.begin(), v.end());
  REQUIRE(all.size() == std::size_t(candidates * rounds));
  std::sort(all.begin(), all.end(),
            [](const tenure& x, const tenure& y) { return x.start < y.start; });
  for (std::size_t i = 1; i < all.size(); ++i) {
    CHECK(all[i].term > all[i - 1].term);
    CHECK(all[i].start >= all[i - 1].end);
  }
}

TEST_CASE_TEMPLATE("election: leader() reports value and term; resign lets another win", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto admin = make_client(db, "admin");
  sqlock::lock_options lo;
  lo.ttl = 1000ms;
  sqlock::election e1(*a, "office", lo);
  std::atomic<int> lost_calls{0};
  auto lo2 = lo;
  lo2.on_lost = [&](const sqlock::lost_event&) { ++lost_calls; };
  sqlock::election e2(*b, "office", lo2);
  CHECK_FALSE(e1.leader());
  CHECK_FALSE(e1.is_leader());
  CHECK(e1.term() == 0);
  CHECK(e1.state() == sqlock::lease_state::released);
  CHECK(e1.remaining() == 0ms);

  auto t1 = e1.campaign("alpha");
  CHECK(t1 > 0);
  CHECK(e1.is_leader());
  CHECK(e1.term() == t1);
  CHECK(e1.state() == sqlock::lease_state::held);
  CHECK(e1.remaining() > 0ms);
  CHECK(e1.remaining() <= 1000ms);
  auto info = e2.leader();
  REQUIRE(info);
  CHECK(info->value == "alpha");
  CHECK(info->owner == "a");
  CHECK(info->term == t1);
  CHECK(info->expires_in > 0ms);
  CHECK(info->expires_in <= 1000ms + now_gap);
  auto row = admin->inspect("office");  // the leader holds the lock of that name
  REQUIRE(row);
  CHECK(row->held);
  CHECK(row->token == t1);
  CHECK(row->metadata == "alpha");
  CHECK(code_of([&] { (void)e1.campaign("again"); }) == errc::usage);

  CHECK_FALSE(e2.try_campaign_for("beta", 300ms));
  CHECK_FALSE(e2.is_leader());
  CHECK(e2.term() == 0);

  std::atomic<bool> won{false};
  std::thread t([&] { won = e2.try_campaign_for("beta", 20s); });
  std::this_thread::sleep_for(300ms);  // the candidate is waiting by now (nothing to poll)
  CHECK_FALSE(won);
  CHECK(e1.is_leader());  // the keepalive keeps a 1 s leadership
  auto resigned_at = steady::now();
  e1.resign();
  CHECK_FALSE(e1.is_leader());
  CHECK(e1.term() == 0);
  CHECK(e1.state() == sqlock::lease_state::released);
  CHECK(e1.remaining() == 0ms);
  t.join();
  REQUIRE(won);
  CHECK(ms_since(resigned_at) < 3000);
  auto t2 = e2.term();
  CHECK(t2 > t1);
  info = e1.leader();
  REQUIRE(info);
  CHECK(info->value == "beta");
  CHECK(info->owner == "b");
  CHECK(info->term == t2);
  e1.resign();  // no-op when not leader

  // A leadership taken away (force release) is lost: on_lost once, is_leader false.
  CHECK(admin->force_release("office"));
  CHECK(eventually([&] { return !e2.is_leader(); }, 5s));
  CHECK(eventually([&] { return lost_calls == 1; }, 5s));
  CHECK(e2.term() == 0);
  CHECK(e2.state() == sqlock::lease_state::lost);
  CHECK(e2.remaining() == 0ms);
  CHECK_FALSE(e1.leader());
  auto t3 = e1.campaign("gamma");
  CHECK(t3 > t2);
}

TEST_CASE_TEMPLATE("election: observe reports each new term in order and the vacancy", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto o = make_client(db, "observer");
  sqlock::lock_options lo;
  lo.ttl = 1000ms;
  sqlock::election e1(*a, "office", lo), e2(*b, "office", lo), eo(*o, "office", lo);
  std::mutex mu;
  std::vector<std::optional<sqlock::leader_info>> seen;
  auto snapshot = [&] {
    std::lock_guard<std::mutex> g(mu);
    return seen;
  };
  auto last_term = [&]() -> std::int64_t {
    std::lock_guard<std::mutex> g(mu);
    return seen.empty() || !seen.back() ? 0 : seen.back()->term;
  };
  auto obs = eo.observe(
      [&](const std::optional<sqlock::leader_info>& l) {
        std::lock_guard<std::mutex> g(mu);
        seen.push_back(l);
      },
      200ms);
  REQUIRE(eventually([&] { return !snapshot().empty(); }, 5s));
  CHECK_FALSE(snapshot().front());  // nobody leads yet

  auto t1 = e1.campaign("one");
  CHECK(eventually([&] { return last_term() == t1; }, 5s));
  e1.resign();
  auto t2 = e2.campaign("two");
  CHECK(eventually([&] { return last_term() == t2; }, 5s));
  auto resigned_at = steady::now();
  e2.resign();  // nobody else campaigns: the office falls vacant
  CHECK(eventually(
      [&] {
        auto s = snapshot();
        return s.size() > 1 && !s.back();
      },
      5s));
  MESSAGE("the vacancy was observed " << ms_since(resigned_at) << " ms after the resign");

  auto s = snapshot();
  std::int64_t prev = 0;
  bool saw1 = false, saw2 = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0) {  // only changes are reported
      bool same = (!s[i] && !s[i - 1]) || (s[i] && s[i - 1] && s[i]->term == s[i - 1]->term);
      CHECK_FALSE(same);
    }
    if (!s[i]) continue;
    CHECK(s[i]->term > prev);
    prev = s[i]->term;
    if (s[i]->term == t1) {
      saw1 = true;
      CHECK(s[i]->value == "one");
      CHECK(s[i]->owner == "a");
    }
    if (s[i]->term == t2) {
      saw2 = true;
      CHECK(s[i]->value == "two");
      CHECK(s[i]->owner == "b");
    }
  }
  CHECK(saw1);
  CHECK(saw2);

  // Once stopped, nothing more is reported.
  auto stop_start = steady::now();
  obs.stop();
  CHECK(ms_since(stop_start) < 3000);
  auto count = snapshot().size();
  auto t3 = e1.campaign("three");
  CHECK(t3 > t2);
  std::this_thread::sleep_for(700ms);  // several poll periods: a running observer would report
  CHECK(snapshot().size() == count);
  obs.stop();  // idempotent

  // Destroying an observation stops it too.
  std::atomic<int> calls{0};
  {
    auto obs2 = eo.observe([&](const std::optional<sqlock::leader_info>&) { ++calls; }, 200ms);
    CHECK(eventually([&] { return calls >= 1; }, 5s));
  }
  int after = calls;
  e1.resign();
  std::this_thread::sleep_for(700ms);  // as above
  CHECK(calls == after);
}

TEST_CASE_TEMPLATE("election: an observation stops when its client shuts down", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto o = make_client(db, "observer");
  sqlock::lock_options lo;
  lo.ttl = 1000ms;
  sqlock::election e1(*a, "office", lo);
  std::atomic<int> calls{0};
  std::atomic<std::int64_t> last{-1};
  {
    sqlock::election eo(*o, "office", lo);
    auto obs = eo.observe(
        [&](const std::optional<sqlock::leader_info>& l) {
          last = l ? l->term : 0;
          ++calls;
        },
        200ms);
    REQUIRE(eventually([&] { return calls >= 1; }, 5s));
    auto t1 = e1.campaign("one");
    CHECK(eventually([&] { return last == t1; }, 5s));
    auto start = steady::now();
    o->shutdown();
    CHECK(ms_since(start) < 3000);
    int at_shutdown = calls;
    e1.resign();
    auto t2 = e1.campaign("two");
    CHECK(t2 > t1);
    std::this_thread::sleep_for(700ms);  // several poll periods: a running observer would report
    CHECK(calls == at_shutdown);
    start = steady::now();
    obs = sqlock::observation{};  // destroys the old one
    CHECK(ms_since(start) < 3000);
  }
  e1.resign();
}

TEST_CASE_TEMPLATE("election: processes campaigning in turn never overlap", F,
                   SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::multi_process) {
    // The memory backend's database lives in this process: no worker process can open it.
    return;
  }
  F db;
  sqlock_test::temp_dir work;
  constexpr int processes = 3, rounds = 8;
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p)
    pids.push_back(spawn_worker(
        db, {"--mode", "elect", "--name", "office", "--iterations", std::to_string(rounds), "--dir",
             work.path(), "--ttl-ms", "2000", "--hold-us", "20000"}));
  for (auto pid : pids) CHECK(sqlock_test::wait_exit(pid) == 0);
  auto lines = read_log(work.path() + "/log");
  REQUIRE(lines.size() == std::size_t(2 * processes * rounds));
  long long prev_term = 0;
  for (std::size_t i = 0; i < lines.size(); i += 2) {
    auto& start = lines[i];
    auto& end = lines[i + 1];
    REQUIRE(start.kind == "start");
    REQUIRE(end.kind == "end");
    REQUIRE(start.f.size() == 3);
    REQUIRE(end.f.size() == 2);
    CHECK(start.f[2] == 0);         // nobody else was leader
    CHECK(end.f[0] == start.f[0]);  // the same term ended before the next began
    CHECK(end.f[1] == start.f[1]);
    CHECK(start.f[0] > prev_term);
    prev_term = start.f[0];
  }
}
