// Scenario 5: SQLite, sqlock against the same statements through the bare sqlite3 API, in one
// process and in two processes on one file. Each process is this program re-executed
// (`sqlock_bench sqlite-worker ...`): posix_spawn, never a fork of a threaded process.

#include <sqlite3.h>

#include <algorithm>
#include <iostream>
#include <sqlock/sqlock.hpp>
#include <sstream>
#include <thread>

#include "bench.hpp"
#include "util.hpp"

namespace bench {
namespace {

const char* s5 = "s5";
constexpr int names_per_process = 32;

// The same busy policy as sqlock's SQLite backend (short random sleeps), so both sides wait for
// the write lock the same way and only the statements differ.
int busy_handler(void*, int count) {
  if (count > 20000) return 0;
  auto cap = 1 << std::min(count, 4);
  std::uniform_int_distribution<int> d(0, std::min(cap, 16) * 1000);
  std::this_thread::sleep_for(std::chrono::microseconds{d(rng()) + 200});
  return 1;
}

// sqlock's statements for a grant and a release (src/sqlite/sqlite_backend.cpp), prepared once.
class bare_sqlite {
 public:
  explicit bare_sqlite(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK)
      throw failure("sqlite open " + path);
    sqlite3_busy_handler(db_, busy_handler, nullptr);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    look_ = prep("SELECT expires_at - CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS "
                 "INTEGER) FROM sqlock_locks WHERE name = ?1");
    begin_ = prep("BEGIN IMMEDIATE");
    commit_ = prep("COMMIT");
    now_ = prep("SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)");
    cur_ = prep("SELECT token, expires_at FROM sqlock_locks WHERE name = ?1");
    next_ = prep("UPDATE sqlock_counters SET value = max(value + 1, ?1) WHERE name = 'token' "
                 "RETURNING value");
    up_ = prep(
        "INSERT INTO sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, metadata) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
        "token = excluded.token, acquired_at = excluded.acquired_at, "
        "expires_at = excluded.expires_at, metadata = excluded.metadata");
    rel_ = prep("UPDATE sqlock_locks SET expires_at = ?1 "
                "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1");
  }
  ~bare_sqlite() {
    for (auto* s : {look_, begin_, commit_, now_, cur_, next_, up_, rel_}) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  /// Returns the token, or 0 when held.
  std::int64_t acquire(const std::string& name, const std::string& nonce, std::int64_t ttl) {
    bind_text(look_, 1, name);
    bool held = step(look_) && sqlite3_column_int64(look_, 0) > 0;
    done(look_);
    if (held) return 0;
    step_done(begin_);
    step(now_);
    std::int64_t now = sqlite3_column_int64(now_, 0);
    done(now_);
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
    sqlite3_bind_int64(next_, 1, floor);
    if (!step(next_)) throw failure("bare sqlite: counter row missing");
    std::int64_t token = sqlite3_column_int64(next_, 0);
    done(next_);
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
    step_done(begin_);
    step(now_);
    std::int64_t now = sqlite3_column_int64(now_, 0);
    done(now_);
    sqlite3_bind_int64(rel_, 1, now);
    bind_text(rel_, 2, name);
    bind_text(rel_, 3, nonce);
    sqlite3_bind_int64(rel_, 4, token);
    step_done(rel_);
    step_done(commit_);
  }

 private:
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
};

}  // namespace

int sqlite_worker_main(int argc, char** argv) {
  // sqlite-worker IMPL FILE INDEX START_NS DURATION_MS
  if (argc != 7) {
    std::cerr << "usage: sqlock_bench sqlite-worker sqlock|bare FILE INDEX START_NS MS\n";
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
  try {
    if (impl == "sqlock") {
      sqlock::client c("sqlite:" + file);
      sqlock::lock_options o;
      o.keepalive = false;
      { auto warm = c.try_acquire(names[0], o); }
      wait_start();
      t0 = clk::now();
      end = t0 + duration;
      for (std::size_t i = 0; clk::now() < end; ++i) {
        auto a = clk::now();
        auto l = c.try_acquire(names[i % names.size()], o);
        if (!l) throw failure("sqlock sqlite: uncontended acquire refused");
        l->release();
        lat.push_back(us_between(a, clk::now()));
        ++ops;
      }
    } else {
      bare_sqlite b(file);
      wait_start();
      t0 = clk::now();
      end = t0 + duration;
      for (std::size_t i = 0; clk::now() < end; ++i) {
        auto a = clk::now();
        auto nonce = random_hex(16);
        const auto& name = names[i % names.size()];
        auto token = b.acquire(name, nonce, 30000);
        if (!token) throw failure("bare sqlite: uncontended acquire refused");
        b.release(name, nonce, token);
        lat.push_back(us_between(a, clk::now()));
        ++ops;
      }
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

void run_sqlite(const config& cfg, report& rep) {
  rep.section(s5, "5. SQLite: acquire+release cycles (WAL, synchronous=FULL)",
              "Each process cycles acquire+release over its own 32 names in one database "
              "file. Baseline: sqlock's statements (look-first SELECT; BEGIN IMMEDIATE, now, "
              "row, counter UPDATE ... RETURNING, upsert, COMMIT; release: BEGIN IMMEDIATE, "
              "now, UPDATE, COMMIT) prepared once and stepped through the bare sqlite3 API, "
              "with the same busy-wait policy.");
  const std::string file = cfg.sqlite_dir + "/bench.db";
  for (auto suffix : {"", "-wal", "-shm"}) std::remove((file + suffix).c_str());
  {
    // Only migrate creates a missing file (by design): let it.
    sqlock::client c("sqlite:" + file);
    c.migrate();
  }
  const std::string how_tp =
      "cycles summed over the processes / each process's own timed window (all start at one "
      "CLOCK_MONOTONIC instant)";
  const std::string how_lat =
      "per cycle, steady_clock around acquire+release; the median of the processes' p50";
  for (int r = 0; r < cfg.repeats; ++r) {
    for (int procs : {1, 2}) {
      for (std::string impl : {"sqlock", "bare"}) {
        auto start = now_ns() + 400'000'000;
        std::vector<child> kids;
        for (int i = 0; i < procs; ++i)
          kids.push_back(spawn({cfg.self_exe, "sqlite-worker", impl, file, std::to_string(i),
                                std::to_string(start), std::to_string(cfg.run.count())}));
        double tput = 0;
        std::vector<double> p50s, p99s;
        for (auto& k : kids) {
          auto kv = parse_kv(k.finish());
          tput += std::stod(kv.at("ops")) / std::stod(kv.at("seconds"));
          p50s.push_back(std::stod(kv.at("p50")));
          p99s.push_back(std::stod(kv.at("p99")));
        }
        std::string v = impl == "sqlock" ? "sqlock" : "bare sqlite3, same statements";
        std::string what = std::to_string(procs) + (procs == 1 ? " process" : " processes");
        rep.add(s5, "cycles/s, " + what, v, "cycles/s", how_tp, tput);
        rep.add(s5, "cycle latency p50, " + what, v, "ms", how_lat, median_of(p50s) / 1000);
        rep.add(s5, "cycle latency p99, " + what, v, "ms",
                "per cycle, steady_clock; the worst process's p99", 
                *std::max_element(p99s.begin(), p99s.end()) / 1000);
        std::cerr << "  s5 rep " << r + 1 << " " << what << " " << v << ": "
                  << report::fmt(tput) << " cycles/s\n";
      }
    }
  }
}

}  // namespace bench
