// SPDX-License-Identifier: Apache-2.0
// The conformance suite, counting semaphores: the limit under contention (processes, threads,
// clients), shared and exclusive holders, counts and bad limits, and each grant's token. Written
// once and run against every backend fixture (SQLite; PostgreSQL direct and through PgBouncer).

#include "support/semaphores.hpp"

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
#include "support/threads.hpp"
#include "support/worker.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;

// --- limits under contention ----------------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: processes never hold more units than the limit", F,
                   SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::multi_process) {
    // The memory backend's database lives in this process: no worker process can open it.
    return;
  }
  F db;
  sqlock_test::temp_dir work;
  constexpr int processes = 4, rounds = 20;
  constexpr long long limit = 2;
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p)
    pids.push_back(spawn_worker(
        db, {"--mode", "semaphore", "--name", "pool", "--iterations", std::to_string(rounds),
             "--dir", work.path(), "--limit", std::to_string(limit), "--count", "1", "--ttl-ms",
             "5000", "--hold-us", "5000"}));
  for (auto pid : pids) CHECK(sqlock_test::wait_exit(pid) == 0);
  auto most = check_semaphore_log(read_log(work.path() + "/log"), limit, processes * rounds);
  CHECK(most == limit);  // it is a semaphore, not a mutex: units were shared
  auto c = make_client(db);
  auto rec = c->inspect_semaphore("pool");
  REQUIRE(rec);
  CHECK(rec->used == 0);
  CHECK(rec->limit == limit);
}

TEST_CASE_TEMPLATE("semaphore: fair processes taking 1 or 2 units never exceed the limit", F,
                   SQLOCK_TEST_FIXTURES) {
  if constexpr (!F::multi_process) {
    // The memory backend's database lives in this process: no worker process can open it.
    return;
  }
  F db;
  sqlock_test::temp_dir work;
  constexpr int rounds = 10;
  constexpr long long limit = 3;
  const std::vector<int> counts{1, 2, 1, 2};
  std::vector<pid_t> pids;
  for (int count : counts)
    pids.push_back(spawn_worker(
        db, {"--mode", "semaphore", "--name", "pool", "--iterations", std::to_string(rounds),
             "--dir", work.path(), "--limit", std::to_string(limit), "--count",
             std::to_string(count), "--fair", "1", "--ttl-ms", "5000", "--hold-us", "5000"}));
  for (auto pid : pids) CHECK(sqlock_test::wait_exit(pid) == 0);
  check_semaphore_log(read_log(work.path() + "/log"), limit, counts.size() * rounds);
  auto c = make_client(db);
  auto rec = c->inspect_semaphore("pool");
  REQUIRE(rec);
  CHECK(rec->used == 0);
  CHECK(rec->waiters.empty());
}

TEST_CASE_TEMPLATE("semaphore: threads of one client and of several clients respect the limit", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  constexpr int clients = 3, threads_per_client = 2, rounds = 12;
  constexpr long long limit = 3;
  std::vector<std::unique_ptr<sqlock::client>> cs;
  for (int i = 0; i < clients; ++i) cs.push_back(make_client(db, "c" + std::to_string(i)));
  std::atomic<long long> units{0}, most{0};
  std::atomic<int> over{0}, lost{0}, errors{0};
  std::mutex mu;
  std::vector<std::int64_t> tokens;
  std::vector<std::vector<std::int64_t>> per_thread(clients * threads_per_client);
  std::vector<std::thread> ts;
  for (int t = 0; t < clients * threads_per_client; ++t) {
    ts.emplace_back([&, t] {
      try {
        auto& c = *cs[t % clients];
        for (int i = 0; i < rounds; ++i) {
          auto l = c.acquire_semaphore("pool", sem(limit, 1, 5s));
          long long now = units += l.count();
          if (now > limit) ++over;
          long long m = most.load();
          while (now > m && !most.compare_exchange_weak(m, now)) {
          }
          std::this_thread::sleep_for(10ms);
          if (!l) ++lost;
          units -= l.count();
          {
            std::lock_guard<std::mutex> g(mu);
            tokens.push_back(l.token());
          }
          per_thread[t].push_back(l.token());
          l.release();
        }
      } catch (const std::exception&) {
        ++errors;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
  CHECK(over == 0);
  CHECK(lost == 0);
  CHECK(most <= limit);
  CHECK(most >= 2);  // units were shared
  REQUIRE(tokens.size() == std::size_t(clients * threads_per_client * rounds));
  CHECK(std::set<std::int64_t>(tokens.begin(), tokens.end()).size() == tokens.size());
  for (auto& v : per_thread)
    for (std::size_t i = 1; i < v.size(); ++i) CHECK(v[i] > v[i - 1]);
  auto rec = cs[0]->inspect_semaphore("pool");
  REQUIRE(rec);
  CHECK(rec->used == 0);
}

// --- readers and writers ----------------------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: shared holders coexist and an exclusive one excludes them", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto shared = sem(10);
  auto exclusive = sem(10);
  exclusive.exclusive = true;
  auto r1 = a->try_acquire_semaphore("rw", shared);
  auto r2 = b->try_acquire_semaphore("rw", shared);
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1->kind() == sqlock::lease_kind::semaphore);
  CHECK(r1->count() == 1);
  CHECK(r1->token() != r2->token());
  CHECK(a->inspect_semaphore("rw")->used == 2);

  CHECK_FALSE(b->try_acquire_semaphore("rw", exclusive));
  CHECK_FALSE(a->try_acquire_semaphore_for("rw", 300ms, exclusive));
  r1->release();
  CHECK_FALSE(b->try_acquire_semaphore("rw", exclusive));  // one reader is still there
  r2->release();
  auto w = b->try_acquire_semaphore("rw", exclusive);
  REQUIRE(w);
  CHECK(w->count() == 10);
  CHECK(w->token() > r2->token());
  auto rec = a->inspect_semaphore("rw");
  REQUIRE(rec);
  CHECK(rec->used == 10);
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].count == 10);
  CHECK(rec->holders[0].owner == "b");

  CHECK_FALSE(a->try_acquire_semaphore("rw", shared));
  CHECK_FALSE(a->try_acquire_semaphore_for("rw", 300ms, shared));
  CHECK_FALSE(b->try_acquire_semaphore("rw", exclusive));
  w->release();
  auto r3 = a->try_acquire_semaphore("rw", shared);
  REQUIRE(r3);
  CHECK(r3->token() > w->token());
}

TEST_CASE_TEMPLATE("semaphore: counts, exclusive and bad limits", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  auto d = make_client(db);

  // Bad counts and limits are refused before any row exists.
  auto bad = [&](std::int64_t limit, std::int64_t count, bool exclusive = false) {
    auto o = sem(limit, count);
    o.exclusive = exclusive;
    CHECK(code_of([&] { (void)c->try_acquire_semaphore("bad", o); }) == errc::invalid_argument);
    CHECK(code_of([&] { (void)c->try_acquire_semaphore_for("bad", 200ms, o); }) ==
          errc::invalid_argument);
    CHECK(code_of([&] { (void)c->acquire_semaphore("bad", o); }) == errc::invalid_argument);
  };
  bad(3, 4);
  bad(3, 0);
  bad(3, -1);
  bad(0, 1);
  bad(-1, 1);
  bad(0, 0, true);
  bad(sqlock::max_semaphore_limit + 1, 1);
  bad(sqlock::max_semaphore_limit + 1, 1, true);
  CHECK(code_of([&] { (void)c->try_acquire_semaphore("", sem(1)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)c->try_acquire_semaphore("bad", sem(1, 1, 50ms)); }) ==
        errc::invalid_argument);
  CHECK(code_of([&] { (void)c->inspect_semaphore(""); }) == errc::invalid_argument);
  CHECK_FALSE(c->inspect_semaphore("bad"));
  CHECK(c->list_semaphores().empty());
  CHECK(c->list().empty());

  // count 2 of 3, then 2 more is refused and 1 more granted.
  auto two = c->try_acquire_semaphore("s", sem(3, 2));
  REQUIRE(two);
  CHECK(two->count() == 2);
  CHECK(two->kind() == sqlock::lease_kind::semaphore);
  CHECK_FALSE(d->try_acquire_semaphore("s", sem(3, 2)));
  auto one = d->try_acquire_semaphore("s", sem(3, 1));
  REQUIRE(one);
  CHECK(one->count() == 1);
  CHECK_FALSE(c->try_acquire_semaphore("s", sem(3, 1)));
  CHECK(c->inspect_semaphore("s")->used == 3);

  // A different limit while held is refused (and changes nothing); accepted once idle.
  CHECK(code_of([&] { (void)d->try_acquire_semaphore("s", sem(4, 1)); }) == errc::invalid_argument);
  CHECK(code_of([&] { (void)d->try_acquire_semaphore_for("s", 200ms, sem(4, 1)); }) ==
        errc::invalid_argument);
  CHECK(c->inspect_semaphore("s")->limit == 3);
  two->release();
  CHECK(code_of([&] { (void)d->try_acquire_semaphore("s", sem(4, 1)); }) ==
        errc::invalid_argument);  // `one` is still live
  one->release();
  auto four = d->try_acquire_semaphore("s", sem(4, 4));
  REQUIRE(four);
  CHECK(c->inspect_semaphore("s")->limit == 4);
  CHECK(c->inspect_semaphore("s")->used == 4);
  four->release();

  // exclusive takes the whole limit.
  auto ex = sem(3);
  ex.exclusive = true;
  auto all = c->try_acquire_semaphore("s", ex);
  REQUIRE(all);
  CHECK(all->count() == 3);
  CHECK_FALSE(d->try_acquire_semaphore("s", sem(3, 1)));
  CHECK_FALSE(d->try_acquire_semaphore("s", ex));
  all->release();
  auto one_more = d->try_acquire_semaphore("s", sem(3, 1));
  REQUIRE(one_more);
  CHECK_FALSE(c->try_acquire_semaphore("s", ex));  // exclusive needs every unit free
  one_more->release();

  // The largest limit and count are accepted.
  auto biggest = sem(sqlock::max_semaphore_limit, sqlock::max_semaphore_limit);
  auto huge = c->try_acquire_semaphore("huge", biggest);
  REQUIRE(huge);
  CHECK(huge->count() == sqlock::max_semaphore_limit);
  CHECK_FALSE(c->inspect_semaphore("bad"));
}

TEST_CASE_TEMPLATE("semaphore: each grant has its own token, from the locks' sequence", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  auto lock = c->try_acquire("x");
  REQUIRE(lock);
  std::vector<std::int64_t> tokens{lock->token()};
  std::vector<sqlock::lease> held;
  for (int i = 0; i < 3; ++i) {
    auto l = c->try_acquire_semaphore("x", sem(3));  // lock "x" and semaphore "x" are unrelated
    REQUIRE(l);
    tokens.push_back(l->token());
    held.push_back(std::move(*l));
  }
  held[0].release();
  {
    auto l = c->try_acquire_semaphore("x", sem(3));
    REQUIRE(l);
    tokens.push_back(l->token());
  }
  {
    auto l = c->try_acquire_semaphore("y", sem(1));
    REQUIRE(l);
    tokens.push_back(l->token());
  }
  {
    auto l = c->try_acquire("z");  // a later lock grant is larger than the semaphores' too
    REQUIRE(l);
    tokens.push_back(l->token());
  }
  for (std::size_t i = 1; i < tokens.size(); ++i) CHECK(tokens[i] > tokens[i - 1]);
  auto rec = c->inspect_semaphore("x");
  REQUIRE(rec);
  REQUIRE(rec->holders.size() == 2);
  CHECK(rec->holders[0].token == held[1].token());
  CHECK(rec->holders[1].token == held[2].token());
  CHECK(c->inspect("x")->token == lock->token());  // the lock row is untouched
  CHECK(c->inspect("x")->held);
  auto locks = c->list();
  CHECK(locks.size() == 2);  // x and z: semaphores are not lock rows
}

// --- fair waiting ---------------------------------------------------------------------------
