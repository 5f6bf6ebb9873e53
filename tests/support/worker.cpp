// SPDX-License-Identifier: Apache-2.0
// A separate process for the multi-process tests (started with posix_spawn, never by forking a
// threaded test process). Three modes:
//
// --mode lock (default): contends for one lock. Inside each critical section it proves
//   exclusion with an O_EXCL marker file, increments a counter kept in a plain file (a lost
//   update shows as a short count) and appends its fencing token to DIR/tokens.
//
// --mode semaphore: acquires --count units of the semaphore --name (limit --limit; --fair 1 for
//   fair waiting; --exclusive 1 for every unit), --iterations times. Under an flock on DIR/flock
//   it keeps the units held by all workers in DIR/units and the number of grants so far in
//   DIR/grants, and appends to DIR/log, in this order:
//     "enter TOKEN COUNT GRANTS_BEFORE UNITS_AFTER PID" after each grant, where GRANTS_BEFORE is
//       how many grants were logged before this acquisition was STARTED (every one of them
//       happened before this grant, so its token must exceed all of theirs);
//     "exit TOKEN COUNT PID" before each release.
//   With --iterations 1 and a long --hold-us it is a waiter for a test to kill.
//
// --mode elect: campaigns in the election --name --iterations times, publishing its pid; under
//   the flock it keeps the current leader's pid in DIR/leader and appends to DIR/log
//     "start TERM PID PREVIOUS_LEADER" when it became leader (PREVIOUS_LEADER 0 = office empty);
//     "end TERM PID" before it resigns.
//
// --mode sqlite-release-hang: URL is an SQLite file path. Opens it with sqlite3, registers
//   sqlock's SQL functions, and in one BEGIN IMMEDIATE transaction inserts 'job 1' into
//   jobs_done and calls sqlock_release(NAME, --token); then creates DIR/ready and sleeps until
//   killed (the transaction never commits).
//
// usage: sqlock_test_worker --url URL [--schema S] --name NAME --iterations N --dir DIR
//                           [--mode lock|semaphore|elect] [--ttl-ms T] [--hold-us U]
//                           [--limit L] [--count C] [--fair 0|1] [--exclusive 0|1] [--owner O]
// exit: 0 ok, 2 usage, 3 overlap seen (lock: marker exists; semaphore: units over the limit;
//       elect: another leader recorded), 4 lease lost inside the critical section, 5 error

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

namespace {

/// An exclusive flock on a file, held for the object's life.
class file_lock {
 public:
  explicit file_lock(const std::string& path) : fd_(::open(path.c_str(), O_CREAT | O_RDWR, 0600)) {
    if (fd_ < 0 || ::flock(fd_, LOCK_EX) != 0) throw std::runtime_error("flock " + path);
  }
  ~file_lock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  file_lock(const file_lock&) = delete;
  file_lock& operator=(const file_lock&) = delete;

 private:
  int fd_;
};

long read_number(const std::string& path) {
  long value = 0;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    if (std::fscanf(f, "%ld", &value) != 1) value = 0;
    std::fclose(f);
  }
  return value;
}

void write_number(const std::string& path, long value) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "%ld\n", value);
  std::fclose(f);
}

void append(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_CREAT | O_APPEND | O_WRONLY, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  std::string l = line + "\n";
  bool ok = ::write(fd, l.data(), l.size()) == static_cast<ssize_t>(l.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot append to " + path);
}

struct args {
  std::string url, schema, name, dir, mode = "lock", owner;
  long iterations = 0, ttl_ms = 5000, hold_us = 200, limit = 1, count = 1;
  bool fair = false, exclusive = false;
  long long token = 0;
};

int run_lock(sqlock::client& c, const args& a) {
  sqlock::lock_options lo;
  lo.ttl = std::chrono::milliseconds{a.ttl_ms};
  const std::string marker = a.dir + "/inside", counter = a.dir + "/counter",
                    log = a.dir + "/tokens";
  for (long i = 0; i < a.iterations; ++i) {
    auto l = c.acquire(a.name, lo);
    int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) {
      std::cerr << "overlap: marker exists at iteration " << i << "\n";
      return 3;
    }
    ::close(fd);
    long value = read_number(counter);
    std::this_thread::sleep_for(std::chrono::microseconds{a.hold_us});
    write_number(counter, value + 1);
    append(log, std::to_string(l.token()));
    if (!l) {
      std::cerr << "lease lost inside the critical section\n";
      return 4;
    }
    ::unlink(marker.c_str());
    l.release();
  }
  return 0;
}

int run_semaphore(sqlock::client& c, const args& a) {
  sqlock::semaphore_options so;
  so.ttl = std::chrono::milliseconds{a.ttl_ms};
  so.limit = a.limit;
  so.count = a.count;
  so.fair = a.fair;
  so.exclusive = a.exclusive;
  const std::string flock_path = a.dir + "/flock", units = a.dir + "/units",
                    grants = a.dir + "/grants", log = a.dir + "/log";
  const std::string pid = std::to_string(::getpid());
  int status = 0;
  for (long i = 0; i < a.iterations; ++i) {
    long before = 0;
    {
      file_lock fl(flock_path);
      before = read_number(grants);
    }
    auto l = c.acquire_semaphore(a.name, so);
    {
      file_lock fl(flock_path);
      long now_held = read_number(units) + l.count();
      write_number(units, now_held);
      write_number(grants, read_number(grants) + 1);
      append(log, "enter " + std::to_string(l.token()) + " " + std::to_string(l.count()) + " " +
                      std::to_string(before) + " " + std::to_string(now_held) + " " + pid);
      if (now_held > a.limit) {
        std::cerr << "overlap: " << now_held << " units held, limit " << a.limit << "\n";
        status = 3;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds{a.hold_us});
    if (!l) {
      std::cerr << "lease lost inside the critical section\n";
      return 4;
    }
    {
      file_lock fl(flock_path);
      write_number(units, read_number(units) - l.count());
      append(log,
             "exit " + std::to_string(l.token()) + " " + std::to_string(l.count()) + " " + pid);
    }
    l.release();
  }
  return status;
}

int run_elect(sqlock::client& c, const args& a) {
  sqlock::lock_options lo;
  lo.ttl = std::chrono::milliseconds{a.ttl_ms};
  sqlock::election e(c, a.name, lo);
  const std::string flock_path = a.dir + "/flock", leader = a.dir + "/leader", log = a.dir + "/log";
  const long pid = static_cast<long>(::getpid());
  int status = 0;
  for (long i = 0; i < a.iterations; ++i) {
    std::int64_t term = e.campaign(std::to_string(pid));
    {
      file_lock fl(flock_path);
      long previous = read_number(leader);
      append(log, "start " + std::to_string(term) + " " + std::to_string(pid) + " " +
                      std::to_string(previous));
      write_number(leader, pid);
      if (previous != 0) {
        std::cerr << "overlap: " << previous << " was still leader when " << pid << " won term "
                  << term << "\n";
        status = 3;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds{a.hold_us});
    if (!e.is_leader() || e.term() != term) {
      std::cerr << "leadership lost inside the term\n";
      return 4;
    }
    {
      file_lock fl(flock_path);
      write_number(leader, 0);
      append(log, "end " + std::to_string(term) + " " + std::to_string(pid));
    }
    e.resign();
  }
  return status;
}

int run_sqlite_release_hang(const args& a) {
  sqlite3* db = nullptr;
  if (sqlite3_open(a.url.c_str(), &db) != SQLITE_OK) return 5;
  sqlite3_busy_timeout(db, 5000);
  if (sqlock::sqlite::register_functions(db) != SQLITE_OK) return 5;
  sqlite3_stmt* s = nullptr;
  const std::string sql = "SELECT sqlock_release(?1, ?2)";
  if (sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO jobs_done VALUES ('job 1')", nullptr, nullptr,
                   nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    return 5;
  sqlite3_bind_text(s, 1, a.name.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 2, a.token);
  if (sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int(s, 0) != 1) return 5;
  sqlite3_finalize(s);
  int fd = ::open((a.dir + "/ready").c_str(), O_CREAT | O_WRONLY, 0644);
  if (fd < 0) return 5;
  ::close(fd);
  std::this_thread::sleep_for(std::chrono::seconds{600});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url")
      a.url = v;
    else if (k == "--schema")
      a.schema = v;
    else if (k == "--name")
      a.name = v;
    else if (k == "--dir")
      a.dir = v;
    else if (k == "--mode")
      a.mode = v;
    else if (k == "--owner")
      a.owner = v;
    else if (k == "--iterations")
      a.iterations = std::stol(v);
    else if (k == "--ttl-ms")
      a.ttl_ms = std::stol(v);
    else if (k == "--hold-us")
      a.hold_us = std::stol(v);
    else if (k == "--limit")
      a.limit = std::stol(v);
    else if (k == "--count")
      a.count = std::stol(v);
    else if (k == "--fair")
      a.fair = v == "1";
    else if (k == "--exclusive")
      a.exclusive = v == "1";
    else if (k == "--token")
      a.token = std::stoll(v);
    else
      return 2;
  }
  if (a.url.empty() || a.name.empty() || a.dir.empty() || a.iterations <= 0) return 2;
  try {
    if (a.mode == "sqlite-release-hang") return run_sqlite_release_hang(a);
    sqlock::client_options o;
    if (!a.schema.empty()) o.backend.schema = a.schema;
    if (!a.owner.empty()) o.owner = a.owner;
    sqlock::client c(a.url, o);
    if (a.mode == "lock") return run_lock(c, a);
    if (a.mode == "semaphore") return run_semaphore(c, a);
    if (a.mode == "elect") return run_elect(c, a);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "worker: " << e.what() << "\n";
    return 5;
  }
}
