// SPDX-License-Identifier: Apache-2.0
// The conformance suite, the lock queue (schema 4): a waiting acquisition queues with a ticket,
// a release hands the lock straight to the oldest live ticket, fair waiters are granted in
// arrival order, and a waiter that leaves or dies stops holding up the queue. Run against every
// backend fixture (fair waiters queue on every backend; non-fair ones only where releases wake
// other processes).

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;

namespace {

sqlock::lock_options fair_lock(std::chrono::milliseconds t = 30s) {
  auto o = ttl(t);
  o.fair = true;
  return o;
}

std::size_t queued(sqlock::client& c, const std::string& name) {
  auto r = c.inspect(name);
  return r ? r->waiters.size() : 0;
}

/// Whether a release wakes waiters in other processes on the fixture's backend: PostgreSQL
/// through NOTIFY (both PostgreSQL fixtures listen on the server directly); SQLite and MariaDB
/// wake only the waiters of their own process (others poll).
template <class F>
constexpr bool wakes_other_processes = !std::is_same_v<F, sqlite_fixture>
#if SQLOCK_HAVE_MARIADB
                                       && !std::is_same_v<F, mariadb_fixture>
#endif
    ;

}  // namespace

TEST_CASE_TEMPLATE("lock queue: a release hands the lock to the queued waiter", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto held = a->try_acquire("q", fair_lock());
  REQUIRE(held);
  std::optional<sqlock::lease> got;
  std::thread t([&] { got = b->try_acquire_for("q", 60s, fair_lock()); });
  scope_guard join{[&] {
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return queued(*a, "q") == 1; }, 20s));
  auto rec = a->inspect("q");
  REQUIRE(rec);
  CHECK(rec->waiters[0].owner == "b");
  CHECK(rec->waiters[0].fair);
  CHECK(rec->waiters[0].ticket > held->token());
  CHECK(rec->waiters[0].expires_in > 0ms);
  CHECK(rec->waiters[0].expires_in <= sqlock::fair_ticket_ttl + 1s);
  CHECK(rec->queued == 1);
  // `list` counts the queue too (`sqlock list`'s QUEUED column), and only the lock's own.
  REQUIRE(a->try_acquire("q-other"));
  sqlock::list_filter f;
  f.prefix = "q";
  auto listed = a->list(f);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].name == "q");
  CHECK(listed[0].queued == 1);
  CHECK(listed[1].name == "q-other");
  CHECK(listed[1].queued == 0);
  const auto token_a = held->token();
  held->release();
  t.join();
  REQUIRE(got);
  CHECK(got->token() > token_a);
  CHECK(got->state() == sqlock::lease_state::held);
  auto now = a->inspect("q");
  REQUIRE(now);
  CHECK(now->held);
  CHECK(now->owner == "b");
  CHECK(now->token == got->token());
  CHECK(now->waiters.empty());
  CHECK(now->queued == 0);
  CHECK(a->list(f)[0].queued == 0);
  // The handed lease is kept alive past its first term (at most the ticket's life).
  std::this_thread::sleep_for(sqlock::fair_ticket_ttl + 500ms);
  CHECK(got->state() == sqlock::lease_state::held);
  CHECK(a->inspect("q")->token == got->token());
  CHECK_FALSE(a->try_acquire("q"));
}

TEST_CASE_TEMPLATE("lock queue: a waiter that is not kept alive takes a handed lock for its ttl", F,
                   SQLOCK_TEST_FIXTURES) {
  // Such a lease cannot renew a short first term: its tickets ask for its whole ttl, the
  // database writes that term, and the waiter adopts the handoff without another attempt.
  F db;
  auto a = make_client(db, "a");
  std::mutex mu;
  int attempts = 0;
  std::string how;  // the reason of b's last `acquired`
  auto opts = db.options();
  opts.owner = "b";
  opts.listeners.push_back([&](const sqlock::lock_event& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (e.kind == sqlock::event_kind::attempt) ++attempts;
    if (e.kind == sqlock::event_kind::acquired) how = e.reason;
  });
  sqlock::client b(db.url(), opts);
  auto o = fair_lock(20s);
  o.keepalive = false;
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return attempts;
  };
  // A round is inconclusive when one of the waiter's polls was in flight as the release ran
  // (that attempt then finds the lock handed to it and takes it: correct, but not what this
  // case is about). Without the handoff term, every round takes that path.
  std::optional<sqlock::lease> got;
  for (int round = 0; round < 5; ++round) {
    auto held = a->try_acquire("q", fair_lock());
    REQUIRE(held);
    got.reset();
    std::thread t([&] { got = b.try_acquire_for("q", 60s, o); });
    scope_guard join{[&] {
      if (t.joinable()) t.join();
    }};
    REQUIRE(eventually([&] { return queued(*a, "q") == 1; }, 20s));
    // Past the first quick polls (SQLite's waiters poll every 125-250 ms from then on).
    std::this_thread::sleep_for(300ms);
    const int before = count();
    held->release();
    t.join();
    REQUIRE(got);
    std::string got_how;
    {
      std::lock_guard<std::mutex> lock(mu);  // (not while releasing: that emits an event)
      got_how = how;
    }
    if (got_how == "handed over") {
      CHECK(count() == before);
      break;
    }
    CHECK(count() > before);
    MESSAGE("round " << round << ": a poll took the handed lock");
    got.reset();
  }
  REQUIRE(got);
  CHECK(got->remaining() > 15s);
  // The database wrote the whole ttl too (not the ticket's life): past a ticket's life, the
  // lease that nobody renews is still the row's.
  std::this_thread::sleep_for(sqlock::fair_ticket_ttl + 500ms);
  auto rec = a->inspect("q");
  REQUIRE(rec);
  CHECK(rec->held);
  CHECK(rec->token == got->token());
  CHECK(rec->expires_in > 10s);
  CHECK_FALSE(a->try_acquire("q"));
}

TEST_CASE_TEMPLATE("lock queue: fair waiters are granted in arrival order", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  constexpr int n = 4;
  std::vector<std::unique_ptr<sqlock::client>> ws;
  for (int i = 0; i < n; ++i) ws.push_back(make_client(db, "w" + std::to_string(i + 1)));
  auto h = holder->try_acquire("q", fair_lock());
  REQUIRE(h);
  std::mutex mu;
  std::vector<std::pair<std::int64_t, int>> grants;  // token, waiter
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  scope_guard cleanup{[&] {
    if (h) h->release();
    join_all(ts);
  }};
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      try {
        auto l = ws[i]->try_acquire_for("q", 60s, fair_lock());
        if (!l) {
          ++failures;
          return;
        }
        {
          std::lock_guard<std::mutex> g(mu);
          grants.emplace_back(l->token(), i);
        }
        std::this_thread::sleep_for(20ms);  // the next one must be queued behind us by now
        l->release();
      } catch (const std::exception&) {
        ++failures;
      }
    });
    // Queue them one at a time: each is in line before the next starts.
    REQUIRE(eventually([&] { return queued(*holder, "q") == std::size_t(i + 1); }, 20s));
  }
  auto rec = holder->inspect("q");
  REQUIRE(rec);
  REQUIRE(rec->waiters.size() == std::size_t(n));
  for (int i = 0; i < n; ++i) {
    CHECK(rec->waiters[i].owner == "w" + std::to_string(i + 1));
    if (i > 0) CHECK(rec->waiters[i].ticket > rec->waiters[i - 1].ticket);
  }
  // A fair newcomer does not pass them, not even with the lock free for a moment.
  h->release();
  h.reset();
  join_all(ts);
  CHECK(failures == 0);
  std::sort(grants.begin(), grants.end());
  std::vector<int> order;
  for (auto& g : grants) order.push_back(g.second);
  CHECK(order == std::vector<int>{0, 1, 2, 3});
  CHECK(holder->inspect("q")->waiters.empty());
}

TEST_CASE_TEMPLATE("lock queue: a waiter that gives up leaves the queue", F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto held = a->try_acquire("q", fair_lock());
  REQUIRE(held);
  CHECK_FALSE(b->try_acquire_for("q", 400ms, fair_lock()));
  CHECK(a->inspect("q")->waiters.empty());  // dropped at once, not left to lapse
  held->release();
  auto rec = a->inspect("q");
  REQUIRE(rec);
  CHECK_FALSE(rec->held);  // handed to nobody
  CHECK(b->try_acquire("q", fair_lock()));
}

TEST_CASE_TEMPLATE("lock queue: a dead waiter holds the queue up at most its ticket life", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto w = make_client(db, "w");
  auto held = a->try_acquire("q", fair_lock());
  REQUIRE(held);
  // A waiter that queued and died: its ticket is fresh, nobody will ever adopt what it is
  // handed.
  sqlock::acquire_request dead{
      "q", "dead", "dead-nonce", "", 30s, true, true, true, sqlock::fair_ticket_ttl, 1};
  auto r = a->get_backend()->try_acquire(dead, std::chrono::steady_clock::now() + 10s);
  REQUIRE_FALSE(r.granted);
  CHECK(r.queued);
  std::optional<sqlock::lease> got;
  std::thread t([&] { got = w->try_acquire_for("q", 60s, fair_lock()); });
  scope_guard join{[&] {
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return queued(*a, "q") == 2; }, 20s));
  held->release();  // handed to the dead waiter, for its first term only
  auto released = std::chrono::steady_clock::now();
  t.join();
  REQUIRE(got);
  auto waited = std::chrono::steady_clock::now() - released;
  MESSAGE("granted " << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                     << " ms after the release");
  // At most the dead ticket's life (3 s) plus the live waiter's retry backoff and slack.
  CHECK(waited < sqlock::fair_ticket_ttl + 4s);
  CHECK(a->inspect("q")->owner == "w");
}

namespace {
// The waiter's backend: its second attempt first lets the holder's release hand the lock to the
// waiter's nonce, then reports the attempt's outcome as unknown (a reply lost on the way back).
struct doubt_after_handoff : sqlock::backend_wrapper {
  using backend_wrapper::backend_wrapper;
  std::function<void(const std::string& nonce)> before;
  std::atomic<int> calls{0};
  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline until) override {
    if (++calls == 2) {
      before(r.nonce);
      throw sqlock::error(sqlock::errc::in_doubt, "injected: the reply was lost");
    }
    return backend_wrapper::try_acquire(r, until);
  }
};
}  // namespace

TEST_CASE_TEMPLATE("lock queue: a lock handed to a nonce that the waiter abandoned is never used",
                   F, SQLOCK_TEST_FIXTURES) {
  // The client cleans up an in-doubt attempt by ending whatever its nonce holds, which includes
  // a lock a release handed to it; the handoff's notice can still arrive (or be waiting) after
  // that. Adopting it would give the waiter a lease the database already ended and passed on
  // (the fault suite's nemesis saw exactly that: two holders, the older token granted later).
  F db;
  auto a = make_client(db, "a");
  auto wrapped =
      std::make_shared<doubt_after_handoff>(sqlock::open_backend(db.url(), db.options().backend));
  auto held = a->try_acquire("q", fair_lock());
  REQUIRE(held);
  std::int64_t handed_token = 0;
  wrapped->before = [&](const std::string&) {
    held->release();  // hands the lock to the waiter's ticket
    REQUIRE(eventually([&] { return a->inspect("q")->owner == "w"; }, 10s));
    handed_token = a->inspect("q")->token;
    std::this_thread::sleep_for(300ms);  // let the handoff's notice reach the waiter
  };
  auto o = db.options();
  o.owner = "w";
  sqlock::client w(wrapped, o);
  auto got = w.try_acquire_for("q", 30s, fair_lock());
  REQUIRE(got);
  CHECK(wrapped->calls >= 3);  // the lock came from a later attempt, not from the handoff
  CHECK(handed_token > 0);
  CHECK(got->token() > handed_token);
  auto rec = a->inspect("q");
  REQUIRE(rec);
  CHECK(rec->held);
  CHECK(rec->token == got->token());  // the lease the waiter holds is the database's
}

TEST_CASE_TEMPLATE("lock queue: fair locks grant in strict arrival order under 8 contenders", F,
                   SQLOCK_TEST_FIXTURES) {
  // Eight clients take one fair lock `rounds` times each, queuing again right after letting go.
  // A holder lets go only once every other client that is waiting shows in the queue, and
  // records the queue it saw (inspected first, the clients' `waiting` flags read after). Every
  // ticket in it was drawn before the holder read those flags, and a client that was not
  // waiting then draws its ticket later: the waiters seen hold the oldest live tickets, and
  // they stay live until granted (they refresh them while they wait). Strict arrival order
  // therefore grants them next, in ticket order, before anybody else. Some grants end by
  // expiring rather than by a release (the holder keeps no lease alive): the waiters then poll
  // at the expiry and find the lock free, where only fairness keeps the oldest ticket first (a
  // release hands the lock to the oldest ticket even for non-fair waiters).
  F db;
  constexpr int n = 8, rounds = 3;
  std::vector<std::unique_ptr<sqlock::client>> cs;
  for (int i = 0; i < n; ++i) cs.push_back(make_client(db, "c" + std::to_string(i)));
  if constexpr (wakes_other_processes<F>) {
    // Every client's listener is up and has verified itself: from then on, even a non-fair
    // waiter queues (so a broken eligibility check shows as a grant out of order).
    for (auto& c : cs) (void)c->get_backend()->watch("warm-up");
    for (auto& c : cs)
      REQUIRE(eventually([&] { return c->get_backend()->wakes_other_processes(); }, 10s));
  }
  struct grant {
    std::int64_t token = 0;
    int who = -1;
    bool short_lease = false;  // 1 s, not kept alive: to be let expire if anybody waits
    bool expired = false;      // let expire rather than released
    bool checked = false;      // `queue` is the full queue, seen while surely still held
    std::vector<int> queue;    // the waiters seen by the holder, by ticket
  };
  std::mutex mu;
  std::vector<grant> grants;
  std::vector<std::string> problems;
  auto problem = [&](std::string what) {
    std::lock_guard<std::mutex> g(mu);
    problems.push_back(std::move(what));
  };
  std::array<std::atomic<bool>, n> waiting;
  for (auto& w : waiting) w = false;
  std::atomic<bool> broken{false};  // after a failure, nobody waits for a full queue any more
  std::vector<std::thread> ts;
  scope_guard cleanup{[&] {
    broken = true;
    join_all(ts);
  }};
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      const std::string me = "c" + std::to_string(i);
      try {
        for (int r = 0; r < rounds && !broken; ++r) {
          // One grant in four is let expire: its lease is short and not kept alive.
          const bool expire = (i + r) % 4 == 0;
          auto o = expire ? fair_lock(1s) : fair_lock();
          if (expire) o.keepalive = false;
          waiting[i] = true;
          auto l = cs[i]->try_acquire_for("q", 60s, o);
          waiting[i] = false;
          if (!l) {
            problem(me + " was not granted within 60 s");
            broken = true;
            return;
          }
          grant g;
          g.token = l->token();
          g.who = i;
          g.short_lease = expire;
          std::vector<sqlock::lock_waiter> seen;
          const bool full = eventually(
              [&] {
                auto rec = cs[i]->inspect("q");
                seen = rec ? rec->waiters : std::vector<sqlock::lock_waiter>{};
                if (broken) return true;
                for (int j = 0; j < n; ++j) {
                  if (j == i || !waiting[j]) continue;
                  const std::string them = "c" + std::to_string(j);
                  if (std::none_of(seen.begin(), seen.end(),
                                   [&](const sqlock::lock_waiter& w) { return w.owner == them; }))
                    return false;
                }
                return true;
              },
              20s);
          if (!full) {
            problem(me + " (token " + std::to_string(g.token) +
                    "): not every waiting client showed in the queue within 20 s");
            broken = true;
          }
          // Still held after the flags were read: nobody was granted the lock meanwhile.
          g.checked = full && !broken && l->remaining() > 0ms;
          std::sort(seen.begin(), seen.end(),
                    [](const auto& x, const auto& y) { return x.ticket < y.ticket; });
          for (auto& w : seen) {
            const int j = w.owner.size() == 2 && w.owner[0] == 'c' ? w.owner[1] - '0' : -1;
            if (j < 0 || j >= n || j == i)
              problem(me + " (token " + std::to_string(g.token) + ") saw a ticket of " + w.owner +
                      " in the queue");
            g.queue.push_back(j);
          }
          if (expire && !seen.empty() && !broken) {
            // Not released: the head of the queue takes it once it has expired.
            g.expired = true;
            if (!eventually(
                    [&] {
                      auto rec = cs[i]->inspect("q");
                      return rec && rec->token != g.token;
                    },
                    30s)) {
              problem(me + " (token " + std::to_string(g.token) +
                      "): nobody took the lock within 30 s of letting it expire");
              broken = true;
            }
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            grants.push_back(g);
          }
          l->release();  // a no-op when it expired (the lease is lost by then)
        }
      } catch (const std::exception& e) {
        problem(me + ": " + e.what());
        broken = true;
      }
    });
  }
  join_all(ts);
  for (auto& p : problems) FAIL_CHECK(p);
  REQUIRE(problems.empty());
  REQUIRE(grants.size() == std::size_t(n * rounds));
  std::sort(grants.begin(), grants.end(),
            [](const grant& x, const grant& y) { return x.token < y.token; });
  // The order of grants, each with the queue its holder saw: "c3 [c4 c5 ...]".
  std::string order;
  for (auto& g : grants) {
    order += "\n  token " + std::to_string(g.token) + ": c" + std::to_string(g.who) +
             (g.expired ? " (expired)" : "") + (g.checked ? " saw [" : " unchecked [");
    for (int j : g.queue) order += " c" + std::to_string(j);
    order += " ]";
  }
  int checked = 0, expired_checked = 0, violations = 0, long_unchecked = 0;
  for (std::size_t k = 0; k < grants.size(); ++k) {
    if (!grants[k].checked) {
      if (!grants[k].short_lease) ++long_unchecked;
      continue;
    }
    ++checked;
    if (grants[k].expired) ++expired_checked;
    const auto& q = grants[k].queue;
    for (std::size_t m = 0; m < q.size(); ++m) {
      if (k + 1 + m >= grants.size() || grants[k + 1 + m].who != q[m]) {
        ++violations;
        FAIL_CHECK("after token " << grants[k].token << ", the waiter c" << q[m] << " (place "
                                  << m + 1 << " in the queue) was not granted in its turn");
        break;
      }
    }
  }
  MESSAGE(grants.size() << " grants, " << checked << " checked (" << expired_checked
                        << " of them let expire)");
  if (violations > 0)
    FAIL_CHECK("grants, with the queue each holder saw before letting go:" << order);
  // Every grant of a 30 s lease is checked (a short one may expire before its queue is full).
  CHECK(long_unchecked == 0);
  CHECK(cs[0]->inspect("q")->waiters.empty());
}

namespace {
// Counts the acquire statements sent through it.
struct counting_backend : sqlock::backend_wrapper {
  using backend_wrapper::backend_wrapper;
  std::atomic<int> acquires{0};
  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline until) override {
    ++acquires;
    return backend_wrapper::try_acquire(r, until);
  }
};
}  // namespace

TEST_CASE_TEMPLATE("lock queue: a queued waiter does not poll on the backoff", F,
                   SQLOCK_TEST_FIXTURES) {
  // Where a release wakes waiters in other processes, a queued waiter is handed the lock by the
  // release itself: it attempts again only to refresh its ticket (every fair_ticket_ttl / 3)
  // and at the holder's expiry (here a minute away). On the backoff (2, 4, 8 ... ms, capped at
  // 2 s) it would send about ten attempts in its first second alone.
  F db;
  auto a = make_client(db, "a");
  auto counted =
      std::make_shared<counting_backend>(sqlock::open_backend(db.url(), db.options().backend));
  auto o = db.options();
  o.owner = "w";
  sqlock::client w(counted, o);
  if constexpr (wakes_other_processes<F>) {
    // The waiter's listener is up and has verified itself (until then it would back off).
    (void)counted->watch("warm-up");
    REQUIRE(eventually([&] { return counted->wakes_other_processes(); }, 10s));
  }
  auto held = a->try_acquire("q", fair_lock(60s));
  REQUIRE(held);
  std::optional<sqlock::lease> got;
  const auto start = steady::now();
  std::thread t([&] { got = w.try_acquire_for("q", 60s, fair_lock()); });
  scope_guard join{[&] {
    if (held) held->release();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return queued(*a, "q") == 1; }, 20s));
  if constexpr (wakes_other_processes<F>) {
    // The window observed: the wait's first 3 s (a span of time, not a synchronisation).
    std::this_thread::sleep_until(start + 3s);
    const int sent = counted->acquires;
    const auto waited = steady::now() - start;  // read after the count: it only raises the bound
    // The first attempt, one per ticket refresh since, and one to spare.
    const auto bound = 2 + waited / (sqlock::fair_ticket_ttl / 3);
    MESSAGE(sent << " acquire statements in the first "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()
                 << " ms of the wait (at most " << bound << ")");
    CHECK(sent >= 1);
    CHECK(sent <= bound);
  }
  held->release();
  held.reset();
  t.join();
  REQUIRE(got);
  CHECK(a->inspect("q")->owner == "w");
  CHECK(a->inspect("q")->waiters.empty());
}

TEST_CASE_TEMPLATE("lock queue: a fair try never passes a live ticket, even on a free lock", F,
                   SQLOCK_TEST_FIXTURES) {
  // A plain try (no wait) is sent without the queue's parts (PostgreSQL: acquire_try); the
  // fair check must be in it all the same.
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  {
    // A lease that runs out without a release, so nothing is handed over: the row ends free.
    auto o = fair_lock(1s);
    o.keepalive = false;
    auto held = a->try_acquire("q", o);
    REQUIRE(held);
    // A waiter queued behind it (then gone quiet): its ticket lives 10 s.
    sqlock::acquire_request waiter{"q", "w", "w-nonce", "", 30s, true, true, true, 10s, 1};
    auto r = a->get_backend()->try_acquire(waiter, std::chrono::steady_clock::now() + 10s);
    REQUIRE_FALSE(r.granted);
    REQUIRE(r.queued);
    REQUIRE(eventually([&] { return !a->inspect("q")->held; }, 20s));
  }
  REQUIRE(a->inspect("q")->queued == 1);
  CHECK_FALSE(b->try_acquire("q", fair_lock()));  // fair: the ticket is older
  auto barge = b->try_acquire("q", ttl(30s));     // non-fair may take a free lock
  CHECK(barge);
}
