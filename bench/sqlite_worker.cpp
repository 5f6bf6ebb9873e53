// SPDX-License-Identifier: Apache-2.0
// The worker process of the SQLite scenarios (5 and 8, s5_s8_sqlite.cpp): this program
// re-executed as `sqlock_bench sqlite-worker IMPL FILE INDEX START_NS MS` (posix_spawn, never a
// fork of a threaded process), which cycles acquire+release through sqlock or through the bare
// sqlite3 API sending sqlock's statements, and prints its figures as "k=v" on stdout.

#include <sqlite3.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <thread>

#include <sqlock/sqlock.hpp>

#include "bench.hpp"
#include "util.hpp"

namespace bench {
namespace {

constexpr int names_per_process = 32;
constexpr std::int64_t sem_limit = 4;  // the uncontended semaphore cycle: limit 4, count 1

// The same busy policy as sqlock's SQLite backend (short random sleeps), so both sides wait for
// the write lock the same way and only the statements differ.
int busy_handler(void*, int count) {
  if (count > 20000) return 0;
  auto cap = 1 << std::min(count, 4);
  std::uniform_int_distribution<int> d(0, std::min(cap, 16) * 1000);
  std::this_thread::sleep_for(std::chrono::microseconds{d(rng()) + 200});
  return 1;
}

// sqlock's statements for a grant and a release (their text in
// src/backends/sqlite/statements.cpp, their order in locks.cpp), prepared once.
class bare_sqlite {
 public:
  explicit bare_sqlite(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK)
      throw failure("sqlite open " + path);
    sqlite3_busy_handler(db_, busy_handler, nullptr);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    look_ = prep(
        "SELECT expires_at - CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS "
        "INTEGER) FROM sqlock_locks WHERE name = ?1");
    begin_ = prep("BEGIN IMMEDIATE");
    commit_ = prep("COMMIT");
    now_ = prep("SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)");
    cur_ = prep("SELECT token, expires_at FROM sqlock_locks WHERE name = ?1");
    next_ = prep(
        "UPDATE sqlock_counters SET value = max(value + 1, ?1) WHERE name = 'token' "
        "RETURNING value");
    up_ = prep(
        "INSERT INTO sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, metadata) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
        "token = excluded.token, acquired_at = excluded.acquired_at, "
        "expires_at = excluded.expires_at, metadata = excluded.metadata");
    rel_ = prep(
        "UPDATE sqlock_locks SET expires_at = ?1 "
        "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1");
    // Semaphores (src/backends/sqlite/statements.cpp; semaphores.cpp: semaphore_view,
    // try_acquire_semaphore; locks.cpp: release, of a semaphore lease too).
    sem_ = prep("SELECT sem_limit, token FROM sqlock_semaphores WHERE name = ?1");
    sem_used_ = prep(
        "SELECT coalesce(sum(units), 0), min(expires_at) FROM "
        "sqlock_semaphore_holders WHERE name = ?1 AND expires_at > ?2");
    sem_tickets_ = prep(
        "SELECT min(CASE WHEN nonce <> ?3 THEN ticket END), min(CASE WHEN nonce = ?3 THEN "
        "ticket END), min(CASE WHEN nonce <> ?3 THEN expires_at END) FROM "
        "sqlock_semaphore_tickets WHERE name = ?1 AND expires_at > ?2");
    sem_gone_ = prep(
        "SELECT max(e) FROM (SELECT max(expires_at) AS e FROM sqlock_semaphore_holders "
        "WHERE name = ?1 AND expires_at <= ?2 UNION ALL SELECT min(max(expires_at), ?2) "
        "FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3))");
    sem_del_holders_ =
        prep("DELETE FROM sqlock_semaphore_holders WHERE name = ?1 AND expires_at <= ?2");
    sem_del_tickets_ = prep(
        "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND "
        "(expires_at <= ?2 OR nonce = ?3)");
    sem_add_ = prep(
        "INSERT INTO sqlock_semaphore_holders "
        "(name, nonce, owner, token, units, acquired_at, expires_at, metadata) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    sem_up_ = prep(
        "INSERT INTO sqlock_semaphores (name, sem_limit, token, changed_at) VALUES (?1, ?2, ?3, "
        "?4) ON CONFLICT (name) DO UPDATE SET sem_limit = excluded.sem_limit, token = "
        "excluded.token, changed_at = max(changed_at, ?5)");
    sem_rel_ = prep(
        "UPDATE sqlock_semaphore_holders SET expires_at = ?1 "
        "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1");
  }
  ~bare_sqlite() {
    for (auto* s :
         {look_, begin_, commit_, now_, cur_, next_, up_, rel_, sem_, sem_used_, sem_tickets_,
          sem_gone_, sem_del_holders_, sem_del_tickets_, sem_add_, sem_up_, sem_rel_})
      sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  /// A semaphore grant of `count` units of `limit` (not waiting, not fair): the look-first
  /// view, then BEGIN IMMEDIATE, the view again, the cleanup of ended rows, the token, the
  /// holder row, the semaphore row, COMMIT. Returns the token, or 0 when there is no room.
  std::int64_t sem_acquire(const std::string& name, const std::string& nonce, std::int64_t limit,
                           std::int64_t count, std::int64_t ttl) {
    std::int64_t now = clock();
    sem_view v = view(name, nonce, now);
    if (v.exists && v.used + count > limit) return 0;
    step_done(begin_);
    now = clock();
    v = view(name, nonce, now);
    if (v.exists && (v.used + count > limit || (v.used > 0 && v.limit != limit))) {
      step_done(commit_);
      return 0;
    }
    std::int64_t ended = 0;
    bind_text(sem_gone_, 1, name);
    sqlite3_bind_int64(sem_gone_, 2, now);
    bind_text(sem_gone_, 3, nonce);
    if (step(sem_gone_) && sqlite3_column_type(sem_gone_, 0) != SQLITE_NULL)
      ended = sqlite3_column_int64(sem_gone_, 0);
    done(sem_gone_);
    bind_text(sem_del_holders_, 1, name);
    sqlite3_bind_int64(sem_del_holders_, 2, now);
    step_done(sem_del_holders_);
    bind_text(sem_del_tickets_, 1, name);
    sqlite3_bind_int64(sem_del_tickets_, 2, now);
    bind_text(sem_del_tickets_, 3, nonce);
    step_done(sem_del_tickets_);
    std::int64_t token = next_token(v.token + 1);
    bind_text(sem_add_, 1, name);
    bind_text(sem_add_, 2, nonce);
    bind_text(sem_add_, 3, "bench-bare");
    sqlite3_bind_int64(sem_add_, 4, token);
    sqlite3_bind_int64(sem_add_, 5, count);
    sqlite3_bind_int64(sem_add_, 6, now);
    sqlite3_bind_int64(sem_add_, 7, now + ttl);
    bind_text(sem_add_, 8, "");
    step_done(sem_add_);
    bind_text(sem_up_, 1, name);
    sqlite3_bind_int64(sem_up_, 2, limit);
    sqlite3_bind_int64(sem_up_, 3, token);
    sqlite3_bind_int64(sem_up_, 4, now);
    sqlite3_bind_int64(sem_up_, 5, ended);
    step_done(sem_up_);
    step_done(commit_);
    return token;
  }

  void sem_release(const std::string& name, const std::string& nonce, std::int64_t token) {
    end_lease(sem_rel_, name, nonce, token);
  }

  /// Returns the token, or 0 when held.
  std::int64_t acquire(const std::string& name, const std::string& nonce, std::int64_t ttl) {
    bind_text(look_, 1, name);
    bool held = step(look_) && sqlite3_column_int64(look_, 0) > 0;
    done(look_);
    if (held) return 0;
    step_done(begin_);
    std::int64_t now = clock();
    std::int64_t floor = 1;
    bind_text(cur_, 1, name);
    if (step(cur_)) {
      if (sqlite3_column_int64(cur_, 1) > now) {
        done(cur_);
        step_done(commit_);
        return 0;
      }
      floor = sqlite3_column_int64(cur_, 0) + 1;
    }
    done(cur_);
    std::int64_t token = next_token(floor);
    bind_text(up_, 1, name);
    bind_text(up_, 2, "bench-bare");
    bind_text(up_, 3, nonce);
    sqlite3_bind_int64(up_, 4, token);
    sqlite3_bind_int64(up_, 5, now);
    sqlite3_bind_int64(up_, 6, now + ttl);
    bind_text(up_, 7, "");
    step_done(up_);
    step_done(commit_);
    return token;
  }

  void release(const std::string& name, const std::string& nonce, std::int64_t token) {
    end_lease(rel_, name, nonce, token);
  }

 private:
  struct sem_view {
    bool exists = false;
    std::int64_t limit = 0, token = 0, used = 0;
  };
  std::int64_t clock() {
    step(now_);
    std::int64_t now = sqlite3_column_int64(now_, 0);
    done(now_);
    return now;
  }
  // The next token from the counter, at least `floor`.
  std::int64_t next_token(std::int64_t floor) {
    sqlite3_bind_int64(next_, 1, floor);
    if (!step(next_)) throw failure("bare sqlite: counter row missing");
    std::int64_t token = sqlite3_column_int64(next_, 0);
    done(next_);
    return token;
  }
  // A release of a lock or of a semaphore holder: `s` (?1 now, ?2 name, ?3 nonce, ?4 token) in
  // a transaction of its own.
  void end_lease(sqlite3_stmt* s, const std::string& name, const std::string& nonce,
                 std::int64_t token) {
    step_done(begin_);
    std::int64_t now = clock();
    sqlite3_bind_int64(s, 1, now);
    bind_text(s, 2, name);
    bind_text(s, 3, nonce);
    sqlite3_bind_int64(s, 4, token);
    step_done(s);
    step_done(commit_);
  }
  // The three reads of the backend's semaphore_view (the ticket figures are read and, for a
  // non-fair attempt without tickets in the way, not needed).
  sem_view view(const std::string& name, const std::string& nonce, std::int64_t now) {
    sem_view v;
    bind_text(sem_, 1, name);
    if (!step(sem_)) {
      done(sem_);
      return v;
    }
    v.exists = true;
    v.limit = sqlite3_column_int64(sem_, 0);
    v.token = sqlite3_column_int64(sem_, 1);
    done(sem_);
    bind_text(sem_used_, 1, name);
    sqlite3_bind_int64(sem_used_, 2, now);
    step(sem_used_);
    v.used = sqlite3_column_int64(sem_used_, 0);
    done(sem_used_);
    bind_text(sem_tickets_, 1, name);
    sqlite3_bind_int64(sem_tickets_, 2, now);
    bind_text(sem_tickets_, 3, nonce);
    step(sem_tickets_);
    if (sqlite3_column_type(sem_tickets_, 0) != SQLITE_NULL) v.used = limit_blocked;
    done(sem_tickets_);
    return v;
  }
  // A live ticket of another waiter: a non-fair attempt waits behind it (treated as no room).
  static constexpr std::int64_t limit_blocked = std::int64_t{1} << 60;
  void exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
      throw failure(std::string("bare sqlite: ") + sqlite3_errmsg(db_));
  }
  sqlite3_stmt* prep(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
      throw failure(std::string("bare sqlite prepare: ") + sqlite3_errmsg(db_));
    return s;
  }
  void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  bool step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_reset(s);
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw failure("bare sqlite: " + msg);
  }
  void done(sqlite3_stmt* s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  void step_done(sqlite3_stmt* s) {
    step(s);
    done(s);
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt *look_, *begin_, *commit_, *now_, *cur_, *next_, *up_, *rel_;
  sqlite3_stmt *sem_, *sem_used_, *sem_tickets_, *sem_gone_, *sem_del_holders_, *sem_del_tickets_,
      *sem_add_, *sem_up_, *sem_rel_;
};

}  // namespace

int sqlite_worker_main(int argc, char** argv) {
  // sqlite-worker IMPL FILE INDEX START_NS DURATION_MS
  // IMPL: sqlock | bare (lock cycles), sqlock-sem | bare-sem (semaphore cycles: limit 4, count 1)
  if (argc != 7) {
    std::cerr << "usage: sqlock_bench sqlite-worker sqlock|bare|sqlock-sem|bare-sem FILE INDEX "
                 "START_NS MS\n";
    return 64;
  }
  std::string impl = argv[2], file = argv[3];
  int index = std::stoi(argv[4]);
  std::int64_t start = std::stoll(argv[5]);
  milliseconds duration{std::stoll(argv[6])};
  std::vector<std::string> names;
  for (int i = 0; i < names_per_process; ++i)
    names.push_back("p" + std::to_string(index) + "-" + std::to_string(i));
  std::vector<double> lat;
  lat.reserve(1 << 16);
  std::uint64_t ops = 0;
  auto wait_start = [&] {
    while (now_ns() < start) std::this_thread::sleep_for(std::chrono::microseconds{200});
  };
  clk::time_point t0, end;
  // From the start on, `cycle(name)` (one acquire and release) back to back over the names
  // until `duration` is over, each one timed.
  auto run = [&](const auto& cycle) {
    wait_start();
    t0 = clk::now();
    end = t0 + duration;
    for (std::size_t i = 0; clk::now() < end; ++i) {
      auto a = clk::now();
      cycle(names[i % names.size()]);
      lat.push_back(us_between(a, clk::now()));
      ++ops;
    }
  };
  try {
    if (impl == "sqlock-sem") {
      sqlock::client c("sqlite:" + file);
      sqlock::semaphore_options o;
      o.keepalive = false;
      o.limit = sem_limit;
      o.count = 1;
      for (auto& n : names) n = "s" + n;
      { auto warm = c.try_acquire_semaphore(names[0], o); }
      run([&](const std::string& name) {
        auto l = c.try_acquire_semaphore(name, o);
        if (!l) throw failure("sqlock sqlite: uncontended semaphore acquire refused");
        l->release();
      });
    } else if (impl == "bare-sem") {
      bare_sqlite b(file);
      for (auto& n : names) n = "s" + n;
      run([&](const std::string& name) {
        auto nonce = random_hex(16);
        auto token = b.sem_acquire(name, nonce, sem_limit, 1, 30000);
        if (!token) throw failure("bare sqlite: uncontended semaphore acquire refused");
        b.sem_release(name, nonce, token);
      });
    } else if (impl == "sqlock") {
      sqlock::client c("sqlite:" + file);
      sqlock::lock_options o;
      o.keepalive = false;
      { auto warm = c.try_acquire(names[0], o); }
      run([&](const std::string& name) {
        auto l = c.try_acquire(name, o);
        if (!l) throw failure("sqlock sqlite: uncontended acquire refused");
        l->release();
      });
    } else {
      bare_sqlite b(file);
      run([&](const std::string& name) {
        auto nonce = random_hex(16);
        auto token = b.acquire(name, nonce, 30000);
        if (!token) throw failure("bare sqlite: uncontended acquire refused");
        b.release(name, nonce, token);
      });
    }
  } catch (const std::exception& e) {
    std::cout << "error " << e.what() << std::endl;
    return 1;
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  auto p50 = percentile(lat, 50), p99 = percentile(lat, 99);
  std::cout << "ops=" << ops << " seconds=" << secs << " p50=" << p50 << " p99=" << p99
            << std::endl;
  return 0;
}

}  // namespace bench
