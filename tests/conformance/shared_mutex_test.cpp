// SPDX-License-Identifier: Apache-2.0
// The conformance suite, sqlock::shared_mutex: readers share, a writer excludes them, and a fair
// writer is not overtaken. Run against every backend fixture.

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

TEST_CASE_TEMPLATE("shared_mutex: shared_lock readers share and a unique_lock writer excludes", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto w = make_client(db, "w");
  sqlock::shared_mutex ma(*a, "rw"), mb(*b, "rw"), mw(*w, "rw");
  CHECK(code_of([&] { (void)ma.token(); }) == errc::usage);  // nothing held yet

  std::shared_lock<sqlock::shared_mutex> ra(ma);
  std::shared_lock<sqlock::shared_mutex> rb(mb, std::try_to_lock);
  REQUIRE(rb.owns_lock());
  const auto ta = ma.token(), tb = mb.token();
  CHECK(ta != tb);
  {
    auto rec = a->inspect_semaphore("rw");
    REQUIRE(rec);
    CHECK(rec->limit == sqlock::max_semaphore_limit);
    CHECK(rec->used == 2);
  }
  // A second thread takes its own shared lease through the same object.
  std::int64_t t_other = 0;
  std::thread other([&] {
    std::shared_lock<sqlock::shared_mutex> l(ma, 5s);  // try_lock_shared_for
    if (l.owns_lock()) t_other = ma.token();
  });
  other.join();
  CHECK(t_other > 0);
  CHECK(t_other != ta);
  CHECK(ma.token() == ta);  // the other thread's unlock ended its lease, not ours
  CHECK(a->inspect_semaphore("rw")->used == 2);

  CHECK_FALSE(mw.try_lock());
  CHECK_FALSE(mw.try_lock_for(300ms));

  // A writer waits for the readers to leave.
  std::atomic<bool> writing{false}, done{false};
  std::atomic<std::int64_t> t_writer{0};
  std::thread writer([&] {
    std::unique_lock<sqlock::shared_mutex> l(mw);
    t_writer = mw.token();
    writing = true;
    while (!done) std::this_thread::sleep_for(5ms);
  });
  scope_guard stop_writer{[&] {
    done = true;
    if (ra.owns_lock()) ra.unlock();
    if (rb.owns_lock()) rb.unlock();
    if (writer.joinable()) writer.join();
  }};
  std::this_thread::sleep_for(300ms);  // the writer is waiting by now (checked next)
  CHECK_FALSE(writing);
  ra.unlock();
  CHECK_FALSE(writing.load());  // rb still reads (a grant now would be a bug; no wait needed)
  rb.unlock();
  CHECK(eventually([&] { return writing.load(); }, 10s));
  CHECK(t_writer > std::max(ta, tb));
  {
    auto rec = a->inspect_semaphore("rw");
    REQUIRE(rec);
    CHECK(rec->used == sqlock::max_semaphore_limit);
    REQUIRE(rec->holders.size() == 1);
    CHECK(rec->holders[0].owner == "w");
    CHECK(rec->holders[0].token == t_writer);
  }
  CHECK_FALSE(ma.try_lock_shared());
  {
    std::shared_lock<sqlock::shared_mutex> l(mb, std::try_to_lock);
    CHECK_FALSE(l.owns_lock());
  }
  CHECK_FALSE(mb.try_lock_shared_for(300ms));
  CHECK_FALSE(ma.try_lock());
  CHECK(code_of([&] { mw.lock(); }) == errc::usage);  // mw holds the exclusive lock already
  CHECK(mw.token() == t_writer);
  done = true;
  writer.join();

  // The writer left: readers are back, and interoperate with acquire_semaphore at that limit.
  REQUIRE(ma.try_lock_shared_until(steady::now() + 5s));
  CHECK(ma.token() > t_writer);
  auto via_client = b->try_acquire_semaphore("rw", sem(sqlock::max_semaphore_limit));
  REQUIRE(via_client);
  CHECK(code_of([&] { (void)b->try_acquire_semaphore("rw", sem(10)); }) == errc::invalid_argument);
  CHECK_FALSE(mw.try_lock());
  via_client->release();
  ma.unlock_shared();
  std::unique_lock<sqlock::shared_mutex> x(mw, std::try_to_lock);
  CHECK(x.owns_lock());
}

TEST_CASE_TEMPLATE("shared_mutex: a fair writer is not overtaken by later readers", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "reader-a");
  auto b = make_client(db, "reader-b");
  auto w = make_client(db, "writer");
  sqlock::shared_mutex ma(*a, "rw", {}, true), mb(*b, "rw", {}, true), mw(*w, "rw", {}, true);
  REQUIRE(ma.try_lock_shared());
  std::atomic<bool> writing{false}, done{false};
  std::thread writer([&] {
    mw.lock();
    writing = true;
    while (!done) std::this_thread::sleep_for(5ms);
    mw.unlock();
  });
  scope_guard cleanup{[&] {
    done = true;
    ma.unlock_shared();
    if (writer.joinable()) writer.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*a, "rw", "writer"); }, 10s));
  // Shared units are free, but the writer queued first.
  CHECK_FALSE(mb.try_lock_shared());
  CHECK_FALSE(mb.try_lock_shared_for(300ms));
  CHECK_FALSE(writing);
  ma.unlock_shared();
  CHECK(eventually([&] { return writing.load(); }, 10s));
  CHECK_FALSE(mb.try_lock_shared());
  done = true;
  writer.join();
  CHECK(mb.try_lock_shared_for(5s));
  mb.unlock_shared();
}

// --- counts and limits
// ----------------------------------------------------------------------------
