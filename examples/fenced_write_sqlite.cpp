// SPDX-License-Identifier: Apache-2.0
// Same-database fencing on SQLite: the protected table lives in the same file as the lock rows,
// and the application's own write transaction checks the lease with sqlock::sqlite::assert_held.
// While that BEGIN IMMEDIATE transaction is open no takeover can commit, so "the lease is live"
// and "the write happened" are one atomic fact. A write with a stale token is rejected.
//
// usage: fenced_write_sqlite PATH_TO_SQLITE_FILE

#include <cstdio>
#include <string>
#include <thread>

#include <sqlock/sqlite.hpp>
#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {
void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(msg);
  }
}

// The application's write: everything in one transaction, the lease checked inside it.
bool fenced_append(sqlite3* db, std::int64_t token, const std::string& entry) {
  exec(db, "BEGIN IMMEDIATE");
  try {
    sqlock::sqlite::assert_held(db, "ledger", token);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO ledger (entry, token) VALUES (?1, ?2)", -1, &s, nullptr);
    sqlite3_bind_text(s, 1, entry.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, token);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db));
    exec(db, "COMMIT");
    std::printf("appended \"%s\" with token %lld\n", entry.c_str(), static_cast<long long>(token));
    return true;
  } catch (const sqlock::error& e) {
    exec(db, "ROLLBACK");
    std::printf("rejected \"%s\": %s\n", entry.c_str(), e.what());
    return false;
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PATH_TO_SQLITE_FILE\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client locks(std::string("sqlite:") + argv[1]);
    locks.migrate();
    sqlite3* app = nullptr;
    if (sqlite3_open(argv[1], &app) != SQLITE_OK) return 1;
    sqlite3_busy_timeout(app, 5000);
    exec(app, "CREATE TABLE IF NOT EXISTS ledger (entry TEXT NOT NULL, token INTEGER NOT NULL)");

    sqlock::lock_options opts;
    opts.ttl = 300ms;
    opts.keepalive = false;
    auto old = locks.try_acquire("ledger", opts);
    if (!old || !fenced_append(app, old->token(), "first entry")) return 1;
    std::this_thread::sleep_for(500ms);  // the holder stalls past its lease
    sqlock::client other(std::string("sqlite:") + argv[1]);
    auto fresh = other.acquire("ledger");
    bool ok = fenced_append(app, fresh.token(), "second entry") &&
              !fenced_append(app, old->token(), "late entry from the stalled holder");
    sqlite3_close(app);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fenced_write_sqlite: %s\n", e.what());
    return 1;
  }
}
