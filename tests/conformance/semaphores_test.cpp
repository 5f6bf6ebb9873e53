// The conformance suite of issue 8: counting semaphores (limits, counts, readers/writer, tokens,
// fair waiting, loss, inspection, purge), sqlock::shared_mutex and sqlock::election, written once
// and run against every backend fixture (SQLite; PostgreSQL direct and through PgBouncer).

#include <doctest/doctest.h>
#include <signal.h>
#include <sqlock/sqlock.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/spawn.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock_test::code_of;
using sqlock_test::eventually;
using sqlock_test::make_client;

namespace {

using steady = std::chrono::steady_clock;

// A read computes expires_in from its transaction's start (PostgreSQL's now()), which can precede
// the commit of a concurrent renewal or ticket refresh that the read still sees; so a row being
// renewed can show up to that scheduling gap more than its ttl (seen once: a fair waiter's
// ticket at 3001 ms, under TSan through PgBouncer).
constexpr std::chrono::milliseconds now_gap{500};

sqlock::semaphore_options sem(std::int64_t limit, std::int64_t count = 1,
                              std::chrono::milliseconds ttl = 30s, bool fair = false) {
  sqlock::semaphore_options o;
  o.limit = limit;
  o.count = count;
  o.ttl = ttl;
  o.fair = fair;
  return o;
}

sqlock::semaphore_options fair_sem(std::int64_t limit, std::int64_t count = 1) {
  return sem(limit, count, 30s, true);
}

std::size_t waiter_count(sqlock::client& c, std::string_view name) {
  auto r = c.inspect_semaphore(name);
  return r ? r->waiters.size() : 0;
}

bool has_waiter(sqlock::client& c, std::string_view name, const std::string& owner) {
  auto r = c.inspect_semaphore(name);
  if (!r) return false;
  for (auto& w : r->waiters)
    if (w.owner == owner) return true;
  return false;
}

/// Runs `f` when the scope ends, also when a REQUIRE throws: releases what blocked threads wait
/// for and joins them, so a failing check never leaves a joinable std::thread behind.
struct scope_guard {
  std::function<void()> f;
  ~scope_guard() {
    try {
      f();
    } catch (...) {
    }
  }
};

void join_all(std::vector<std::thread>& ts) {
  for (auto& t : ts)
    if (t.joinable()) t.join();
}

long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

// --- worker processes ---------------------------------------------------------------------

template <class F>
pid_t spawn_worker(const F& db, const std::vector<std::string>& extra) {
  std::vector<std::string> argv{SQLOCK_TEST_WORKER};
  for (auto& a : db.worker_args()) argv.push_back(a);
  for (auto& a : extra) argv.push_back(a);
  return sqlock_test::spawn(argv);
}

struct log_line {
  std::string kind;
  std::vector<long long> f;
};

std::vector<log_line> read_log(const std::string& path) {
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

/// Checks a semaphore worker log (see tests/support/worker.cpp): never more than `limit` units
/// held, every grant's token unique and larger than the token of every grant logged before its
/// acquisition started. Returns the most units seen held at once.
long long check_semaphore_log(const std::vector<log_line>& lines, long long limit,
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
        INFO("grant " << enter_tokens.size() << " token " << token << " started after "
                      << before << " grants whose largest token is " << prefix_max[before - 1]);
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

}  // namespace

// --- limits under contention ----------------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: processes never hold more units than the limit", F,
                   SQLOCK_TEST_FIXTURES) {
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

TEST_CASE_TEMPLATE("semaphore: threads of one client and of several clients respect the limit",
                   F, SQLOCK_TEST_FIXTURES) {
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
  CHECK(code_of([&] { (void)b->try_acquire_semaphore("rw", sem(10)); }) ==
        errc::invalid_argument);
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

// --- counts and limits ----------------------------------------------------------------------------

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
  CHECK(code_of([&] { (void)d->try_acquire_semaphore("s", sem(4, 1)); }) ==
        errc::invalid_argument);
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

TEST_CASE_TEMPLATE("semaphore: fair waiters are granted in arrival order", F,
                   SQLOCK_TEST_FIXTURES) {
  // W1 needs both units, W2 and W3 one each, W4 both again. When the first unit comes free,
  // only fairness stops W2 from taking it ahead of W1; the grants' tokens give their order
  // in the database (a later grant on a semaphore always has a larger token).
  F db;
  auto holder = make_client(db, "holder");
  constexpr int n = 4;
  const std::int64_t counts[n] = {2, 1, 1, 2};
  std::vector<std::unique_ptr<sqlock::client>> ws;
  for (int i = 0; i < n; ++i) ws.push_back(make_client(db, "w" + std::to_string(i + 1)));
  auto h1 = holder->try_acquire_semaphore("q", fair_sem(2));
  auto h2 = holder->try_acquire_semaphore("q", fair_sem(2));
  REQUIRE(h1);
  REQUIRE(h2);

  std::mutex mu;
  std::vector<std::pair<std::int64_t, int>> grants;  // token, waiter
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  scope_guard cleanup{[&] {
    h1->release();
    h2->release();
    join_all(ts);
  }};
  for (int i = 0; i < n; ++i) {
    ts.emplace_back([&, i] {
      try {
        auto l = ws[i]->try_acquire_semaphore_for("q", 60s, fair_sem(2, counts[i]));
        if (!l) {
          ++failures;
          return;
        }
        {
          std::lock_guard<std::mutex> g(mu);
          grants.emplace_back(l->token(), i);
        }
        std::this_thread::sleep_for(50ms);  // hold a moment so the next must wait for us
        l->release();
      } catch (const std::exception&) {
        ++failures;
      }
    });
    // Queue them one at a time: each is in line before the next starts.
    REQUIRE(eventually([&] { return waiter_count(*holder, "q") == std::size_t(i + 1); }, 20s));
  }
  auto rec = holder->inspect_semaphore("q");
  REQUIRE(rec);
  REQUIRE(rec->waiters.size() == std::size_t(n));
  for (int i = 0; i < n; ++i) {
    CHECK(rec->waiters[i].owner == "w" + std::to_string(i + 1));
    CHECK(rec->waiters[i].count == counts[i]);
    CHECK(rec->waiters[i].ticket > h2->token());
    CHECK(rec->waiters[i].expires_in > 0ms);
    CHECK(rec->waiters[i].expires_in <= sqlock::fair_ticket_ttl + now_gap);
    if (i > 0) CHECK(rec->waiters[i].ticket > rec->waiters[i - 1].ticket);
  }
  h1->release();  // one unit free: W1 (first in line) needs two, so nobody may take it
  std::this_thread::sleep_for(300ms);  // a waiter granted now would show in the order below
  CHECK(holder->inspect_semaphore("q")->waiters.size() == std::size_t(n));
  h2->release();
  join_all(ts);
  CHECK(failures == 0);
  std::sort(grants.begin(), grants.end());
  std::vector<int> order;
  for (auto& g : grants) order.push_back(g.second);
  CHECK(order == std::vector<int>{0, 1, 2, 3});
  CHECK(holder->inspect_semaphore("q")->waiters.empty());
}

TEST_CASE_TEMPLATE("semaphore: no acquisition passes a queued fair waiter, even with free units",
                   F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto waiter = make_client(db, "waiter");
  auto other = make_client(db, "other");
  auto h = holder->try_acquire_semaphore("q", fair_sem(3, 2));
  REQUIRE(h);
  std::optional<sqlock::lease> got;
  std::thread t([&] {
    try {
      got = waiter->try_acquire_semaphore_for("q", 60s, fair_sem(3, 2));
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    h->release();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*other, "q", "waiter"); }, 20s));
  // One unit is free, but the queued waiter (which needs 2) is older than any of these.
  CHECK(other->inspect_semaphore("q")->used == 2);
  CHECK_FALSE(other->try_acquire_semaphore("q", sem(3, 1)));
  CHECK_FALSE(other->try_acquire_semaphore("q", fair_sem(3, 1)));
  CHECK_FALSE(other->try_acquire_semaphore_for("q", 300ms, sem(3, 1)));
  {
    auto rec = other->inspect_semaphore("q");
    REQUIRE(rec);
    REQUIRE(rec->waiters.size() == 1);  // a non-fair waiter takes no ticket
    CHECK(rec->waiters[0].owner == "waiter");
    CHECK(rec->waiters[0].count == 2);
  }
  auto start = steady::now();
  h->release();
  t.join();
  REQUIRE(got);
  CHECK(ms_since(start) < 3000);
  CHECK(got->count() == 2);
  CHECK(got->token() > h->token());
  CHECK(other->inspect_semaphore("q")->waiters.empty());
  auto one = other->try_acquire_semaphore("q", sem(3, 1));  // no queue any more
  REQUIRE(one);
  CHECK_FALSE(other->try_acquire_semaphore("q", sem(3, 1)));
}

TEST_CASE_TEMPLATE("semaphore: a fair waiter that times out leaves the queue at once", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto waiter = make_client(db, "waiter");
  auto h = holder->try_acquire_semaphore("q", fair_sem(1));
  REQUIRE(h);
  std::atomic<bool> returned{false}, granted{false};
  std::thread t([&] {
    try {
      auto l = waiter->try_acquire_semaphore_for("q", 1500ms, fair_sem(1));
      granted = bool(l);
    } catch (const std::exception&) {
    }
    returned = true;
  });
  CHECK(eventually([&] { return has_waiter(*holder, "q", "waiter"); }, 10s));
  t.join();
  CHECK(returned);
  CHECK_FALSE(granted);
  CHECK(holder->inspect_semaphore("q")->waiters.empty());  // at once, not after fair_ticket_ttl

  // Without a lingering ticket, a plain acquisition gets the unit as soon as it is free.
  auto start = steady::now();
  h->release();
  auto next = waiter->try_acquire_semaphore("q", sem(1));
  REQUIRE(next);
  CHECK(ms_since(start) < 1000);

  // Same with try_acquire_semaphore_for returning at its deadline in the caller's thread.
  auto s = steady::now();
  CHECK_FALSE(holder->try_acquire_semaphore_for("q", 400ms, fair_sem(1)));
  CHECK(ms_since(s) >= 400);
  CHECK(holder->inspect_semaphore("q")->waiters.empty());
}

TEST_CASE_TEMPLATE("semaphore: a killed fair waiter stops blocking the queue", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  sqlock_test::temp_dir work;
  auto holder = make_client(db, "holder");
  auto next_client = make_client(db, "next");
  auto h = holder->try_acquire_semaphore("q", fair_sem(1));
  REQUIRE(h);
  pid_t pid = spawn_worker(db, {"--mode", "semaphore", "--name", "q", "--iterations", "1",
                                "--dir", work.path(), "--limit", "1", "--count", "1", "--fair",
                                "1", "--owner", "doomed", "--hold-us", "60000000"});
  bool killed = false;
  scope_guard kill_worker{[&] {
    if (!killed) {
      ::kill(pid, SIGKILL);
      sqlock_test::wait_exit(pid);
    }
  }};
  REQUIRE(eventually([&] { return has_waiter(*holder, "q", "doomed"); }, 30s));
  std::atomic<bool> granted{false};
  steady::time_point released_at{}, granted_at{};
  std::mutex mu;
  std::optional<sqlock::lease> got;
  std::thread t([&] {
    try {
      auto l = next_client->try_acquire_semaphore_for("q", 60s, fair_sem(1));
      std::lock_guard<std::mutex> g(mu);
      granted_at = steady::now();
      got = std::move(l);
      granted = bool(got);
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    h->release();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*holder, "q") == 2; }, 20s));
  {
    auto rec = holder->inspect_semaphore("q");
    REQUIRE(rec);
    REQUIRE(rec->waiters.size() == 2);
    CHECK(rec->waiters[0].owner == "doomed");
    CHECK(rec->waiters[1].owner == "next");
  }
  CHECK(::kill(pid, SIGKILL) == 0);
  CHECK(sqlock_test::wait_exit(pid) == 128 + SIGKILL);
  killed = true;

  released_at = steady::now();
  h->release();
  // While the dead waiter's ticket is visibly live, nobody is granted past it: watch until the
  // grant and the ticket's lapse have both happened.
  bool passed_live_ticket = false;
  for (;;) {
    auto rec = holder->inspect_semaphore("q");
    bool doomed_live = false;
    if (rec)
      for (auto& w : rec->waiters)
        if (w.owner == "doomed" && w.expires_in > 500ms) doomed_live = true;
    bool done = granted;  // read after the inspect: a grant now, with the ticket live, is a bug
    if (doomed_live && done) passed_live_ticket = true;
    if ((done && !doomed_live) || ms_since(released_at) > 10000) break;
    std::this_thread::sleep_for(20ms);
  }
  t.join();
  auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(granted_at - released_at).count();
  CHECK_FALSE(passed_live_ticket);
  REQUIRE(granted);
  CHECK(waited < 6000);  // fair_ticket_ttl (3 s) after the dead waiter's last attempt, + slack
  MESSAGE("granted " << waited << " ms after the release");
  CHECK(got->token() > h->token());
  auto rec = holder->inspect_semaphore("q");
  REQUIRE(rec);
  CHECK_FALSE(has_waiter(*holder, "q", "doomed"));
  CHECK(rec->waiters.empty());
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].owner == "next");
  CHECK(read_log(work.path() + "/log").empty());  // the dead worker was never granted
}

// --- loss, keepalive, renew, release --------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: force_release_semaphore makes the holder lost, on_lost once", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db, "holder");
  auto admin = make_client(db, "admin");
  std::atomic<int> calls{0};
  std::mutex mu;
  sqlock::lost_event seen;
  auto o = sem(3, 1, 300ms);
  o.on_lost = [&](const sqlock::lost_event& e) {
    std::lock_guard<std::mutex> g(mu);
    seen = e;
    ++calls;
  };
  auto l = holder->try_acquire_semaphore("s", o);
  REQUIRE(l);
  std::atomic<int> other_calls{0};
  auto o2 = sem(3, 2, 300ms);
  o2.on_lost = [&](const sqlock::lost_event&) { ++other_calls; };
  auto l2 = admin->try_acquire_semaphore("s", o2);
  REQUIRE(l2);

  CHECK(admin->force_release_semaphore("s", l->token()) == 1);
  CHECK(admin->force_release_semaphore("s", l->token()) == 0);  // already ended
  CHECK(admin->force_release_semaphore("missing") == 0);
  CHECK(eventually([&] { return l->lost(); }, 5s));
  CHECK(eventually([&] { return calls >= 1; }, 5s));
  std::this_thread::sleep_for(500ms);  // more keepalive rounds must not call it again
  CHECK(calls == 1);
  {
    std::lock_guard<std::mutex> g(mu);
    CHECK(seen.name == "s");
    CHECK(seen.token == l->token());
    CHECK(seen.reason.find("force") != std::string::npos);
  }
  CHECK(l->state() == sqlock::lease_state::lost);
  CHECK_FALSE(l->renew());
  // The other holder is untouched.
  CHECK_FALSE(l2->lost());
  CHECK(other_calls == 0);
  auto rec = admin->inspect_semaphore("s");
  REQUIRE(rec);
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].token == l2->token());
  CHECK(rec->used == 2);

  // Token 0 ends every holder.
  auto l3 = holder->try_acquire_semaphore("s", sem(3, 1));
  REQUIRE(l3);
  CHECK(admin->force_release_semaphore("s") == 2);
  CHECK(eventually([&] { return l2->lost(); }, 5s));
  CHECK(eventually([&] { return other_calls == 1; }, 5s));
  CHECK(admin->inspect_semaphore("s")->used == 0);
  auto next = admin->try_acquire_semaphore("s", sem(3, 3));
  REQUIRE(next);
  CHECK(next->token() > l3->token());
}

TEST_CASE_TEMPLATE("semaphore: keepalive, renew and the safety deadline", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db);
  auto b = make_client(db);
  std::atomic<int> lost{0};
  auto o = sem(1, 1, 300ms);
  o.on_lost = [&](const sqlock::lost_event&) { ++lost; };
  auto l = a->try_acquire_semaphore("s", o);
  REQUIRE(l);
  auto until = steady::now() + 1500ms;
  int checks = 0;
  while (steady::now() < until) {
    CHECK_FALSE(b->try_acquire_semaphore("s", sem(1)));
    CHECK(l->state() != sqlock::lease_state::lost);
    std::this_thread::sleep_for(50ms);  // pacing the observer, not synchronisation
    ++checks;
  }
  CHECK(checks > 10);
  CHECK(lost == 0);
  CHECK(bool(*l));
  auto rec = a->inspect_semaphore("s");
  REQUIRE(rec);
  REQUIRE(rec->holders.size() == 1);
  CHECK(rec->holders[0].token == l->token());
  CHECK(rec->holders[0].expires_in > 0ms);
  CHECK(rec->holders[0].expires_in <= 300ms + now_gap);
  l->release();
  CHECK(l->state() == sqlock::lease_state::released);

  // renew(ttl) by hand on a lease without keepalive.
  auto mo = sem(2, 1, 2s);
  mo.keepalive = false;
  auto m = a->try_acquire_semaphore("m", mo);
  REQUIRE(m);
  REQUIRE(m->renew(4s));
  CHECK(m->remaining() > 3s);
  CHECK(m->remaining() <= 4s);
  auto h = a->inspect_semaphore("m")->holders;
  REQUIRE(h.size() == 1);
  CHECK(h[0].expires_in > 3s);
  CHECK(h[0].expires_at == m->expires_at());
  REQUIRE(m->renew(1s));
  CHECK(m->remaining() <= 1s);
  // A renewal never shortens the row (issue 12): it keeps the 4 s, the holder believes in 1 s.
  CHECK(a->inspect_semaphore("m")->holders.at(0).expires_in > 2s);
  CHECK(eventually([&] { return m->lost(); }, 5s));  // no keepalive: lost at its deadline
  CHECK_FALSE(m->renew());
  // The local deadline comes before the database's expiry; then its unit is free again.
  std::optional<sqlock::lease> after;
  CHECK(eventually([&] { return bool(after = b->try_acquire_semaphore("m", sem(2, 2))); }, 10s));
  REQUIRE(after);
  CHECK(after->token() > m->token());
}

TEST_CASE_TEMPLATE("semaphore: release frees units at once and wakes a waiter", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto a = make_client(db, "a");
  auto b = make_client(db, "b");
  auto h = a->try_acquire_semaphore("s", sem(1));
  REQUIRE(h);
  CHECK_FALSE(b->try_acquire_semaphore("s", sem(1)));
  h->release();
  auto again = b->try_acquire_semaphore("s", sem(1));  // no waiting, no retry
  REQUIRE(again);
  CHECK(again->token() > h->token());

  // A waiter (fair, so that its place in line is visible) gets the unit soon after a release.
  std::atomic<long long> granted_at_ms{-1};
  std::optional<sqlock::lease> got;
  auto start = steady::now();
  std::thread t([&] {
    try {
      got = a->try_acquire_semaphore_for("s", 30s, fair_sem(1));
      if (got) granted_at_ms = ms_since(start);
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    again->release();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*b, "s", "a"); }, 10s));
  auto released_ms = ms_since(start);
  again->release();
  t.join();
  REQUIRE(got);
  MESSAGE("the waiter was granted " << granted_at_ms - released_ms << " ms after the release");
  CHECK(granted_at_ms - released_ms < 2000);

  // And a non-fair waiter too.
  std::optional<sqlock::lease> got2;
  std::atomic<bool> started{false};
  std::thread t2([&] {
    started = true;
    try {
      got2 = b->try_acquire_semaphore_for("s", 30s, sem(1));
    } catch (const std::exception&) {
    }
  });
  REQUIRE(eventually([&] { return started.load(); }));
  std::this_thread::sleep_for(300ms);  // the waiter is blocked by now (nothing to poll)
  auto s2 = steady::now();
  got->release();
  t2.join();
  REQUIRE(got2);
  CHECK(ms_since(s2) < 3000);
}

TEST_CASE_TEMPLATE("semaphore: shutdown wakes a semaphore waiter and releases its units", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto holder = make_client(db);
  auto waiter = make_client(db, "waiter");
  auto admin = make_client(db);
  auto h = holder->try_acquire_semaphore("s", sem(2, 2));
  REQUIRE(h);
  auto mine = waiter->try_acquire_semaphore("t", sem(2, 1));
  REQUIRE(mine);
  std::atomic<int> code{-1};
  std::thread t([&] {
    try {
      (void)waiter->acquire_semaphore("s", fair_sem(2, 1));
      code = 100;
    } catch (const sqlock::error& e) {
      code = static_cast<int>(e.code());
    }
  });
  scope_guard cleanup{[&] {
    waiter->shutdown();
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return has_waiter(*admin, "s", "waiter"); }, 10s));
  auto start = steady::now();
  waiter->shutdown();
  t.join();
  CHECK(ms_since(start) < 3000);
  CHECK(code == static_cast<int>(errc::cancelled));
  CHECK(mine->state() == sqlock::lease_state::released);
  CHECK(admin->inspect_semaphore("t")->used == 0);
  CHECK(admin->inspect_semaphore("s")->waiters.empty());
  CHECK(code_of([&] { (void)waiter->try_acquire_semaphore("s", sem(2)); }) == errc::cancelled);
}

// --- inspection, listing, purge -------------------------------------------------------------

TEST_CASE_TEMPLATE("semaphore: inspect_semaphore and list_semaphores show holders and waiters",
                   F, SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db, "lister");
  auto o = make_client(db, "other");
  auto w = make_client(db, "queued");
  auto ma = sem(5, 2);
  ma.metadata = "m-a";
  auto a = c->try_acquire_semaphore("sem/a", ma);
  auto mb = sem(5, 1);
  mb.metadata = "m-b";
  auto a2 = o->try_acquire_semaphore("sem/a", mb);
  auto b = c->try_acquire_semaphore("sem/b", sem(2));
  auto x = c->try_acquire_semaphore("semx", sem(1));
  auto z = c->try_acquire_semaphore("other", sem(7, 3));
  REQUIRE((a && a2 && b && x && z));
  b->release();
  CHECK_FALSE(c->inspect_semaphore("nope"));
  CHECK_FALSE(c->inspect("sem/a"));  // not a lock

  // A queued waiter for 3 units (only 2 are free).
  std::thread t([&] {
    try {
      (void)w->try_acquire_semaphore_for("sem/a", 2500ms, fair_sem(5, 3));
    } catch (const std::exception&) {
    }
  });
  scope_guard cleanup{[&] {
    if (t.joinable()) t.join();
  }};
  REQUIRE(eventually([&] { return waiter_count(*c, "sem/a") == 1; }, 10s));
  auto rec = c->inspect_semaphore("sem/a");
  t.join();
  REQUIRE(rec);
  CHECK(rec->name == "sem/a");
  CHECK(rec->limit == 5);
  CHECK(rec->used == 3);
  REQUIRE(rec->holders.size() == 2);
  auto& h0 = rec->holders[0];
  auto& h1 = rec->holders[1];
  CHECK(h0.owner == "lister");
  CHECK(h0.token == a->token());
  CHECK(h0.count == 2);
  CHECK(h0.metadata == "m-a");
  CHECK(h0.expires_in > 25s);
  CHECK(h0.expires_in <= 30s);
  CHECK(h0.expires_at - h0.acquired_at == 30s);
  CHECK(h0.expires_at == a->expires_at());
  CHECK(h1.owner == "other");
  CHECK(h1.token == a2->token());
  CHECK(h1.count == 1);
  CHECK(h1.metadata == "m-b");
  REQUIRE(rec->waiters.size() == 1);
  CHECK(rec->waiters[0].owner == "queued");
  CHECK(rec->waiters[0].count == 3);
  CHECK(rec->waiters[0].ticket > a2->token());
  CHECK(rec->waiters[0].expires_in > 0ms);
  CHECK(rec->waiters[0].expires_in <= sqlock::fair_ticket_ttl + now_gap);
  CHECK(c->inspect_semaphore("sem/a")->waiters.empty());  // it gave up (timed out)

  auto free_b = c->inspect_semaphore("sem/b");
  REQUIRE(free_b);
  CHECK(free_b->used == 0);
  CHECK(free_b->limit == 2);
  CHECK(free_b->holders.empty());

  auto all = c->list_semaphores();
  REQUIRE(all.size() == 4);
  CHECK(all[0].name == "other");
  CHECK(all[1].name == "sem/a");
  CHECK(all[2].name == "sem/b");
  CHECK(all[3].name == "semx");
  CHECK(all[0].limit == 7);
  CHECK(all[0].used == 3);
  CHECK(all[1].used == 3);
  CHECK(all[1].holders.size() == 2);
  CHECK(c->list().empty());  // no lock rows

  sqlock::list_filter f;
  f.prefix = "sem/";
  auto sems = c->list_semaphores(f);
  REQUIRE(sems.size() == 2);
  CHECK(sems[0].name == "sem/a");
  CHECK(sems[1].name == "sem/b");
  f.show = sqlock::list_filter::which::held;
  auto held = c->list_semaphores(f);
  REQUIRE(held.size() == 1);
  CHECK(held[0].name == "sem/a");
  f.show = sqlock::list_filter::which::free;
  auto free = c->list_semaphores(f);
  REQUIRE(free.size() == 1);
  CHECK(free[0].name == "sem/b");
  CHECK(free[0].used == 0);
  sqlock::list_filter all_held;
  all_held.show = sqlock::list_filter::which::held;
  CHECK(c->list_semaphores(all_held).size() == 3);
  sqlock::list_filter lim;
  lim.limit = 3;
  auto first3 = c->list_semaphores(lim);
  REQUIRE(first3.size() == 3);
  CHECK(first3[2].name == "sem/b");
  sqlock::list_filter pct;
  pct.prefix = "sem%";  // a byte prefix, not a pattern
  CHECK(c->list_semaphores(pct).empty());
  sqlock::list_filter caps;
  caps.prefix = "SEM";
  CHECK(c->list_semaphores(caps).empty());
}

TEST_CASE_TEMPLATE("semaphore: purge removes idle semaphores and tokens stay monotonic", F,
                   SQLOCK_TEST_FIXTURES) {
  F db;
  auto c = make_client(db);
  auto kept = c->try_acquire_semaphore("kept", sem(2));
  REQUIRE(kept);
  std::int64_t last = 0;
  for (int i = 0; i < 3; ++i) {
    auto l = c->try_acquire_semaphore("idle", sem(3, 1, 200ms));
    REQUIRE(l);
    last = l->token();
    l->release();
  }
  CHECK(c->purge(std::chrono::hours{1}) == 0);  // not idle for an hour yet
  CHECK(c->purge(0ms) == 1);
  CHECK_FALSE(c->inspect_semaphore("idle"));
  auto k = c->inspect_semaphore("kept");
  REQUIRE(k);
  CHECK(k->used == 1);
  CHECK(kept->renew());
  auto again = c->try_acquire_semaphore("idle", sem(1));  // a new limit is fine: a new semaphore
  REQUIRE(again);
  CHECK(again->token() > last);
  CHECK(again->token() > kept->token());
  CHECK(c->list_semaphores().size() == 2);
}

// --- election -------------------------------------------------------------------------------

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
  F db;
  sqlock_test::temp_dir work;
  constexpr int processes = 3, rounds = 8;
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p)
    pids.push_back(spawn_worker(db, {"--mode", "elect", "--name", "office", "--iterations",
                                     std::to_string(rounds), "--dir", work.path(), "--ttl-ms",
                                     "2000", "--hold-us", "20000"}));
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
    CHECK(start.f[2] == 0);           // nobody else was leader
    CHECK(end.f[0] == start.f[0]);    // the same term ended before the next began
    CHECK(end.f[1] == start.f[1]);
    CHECK(start.f[0] > prev_term);
    prev_term = start.f[0];
  }
}
