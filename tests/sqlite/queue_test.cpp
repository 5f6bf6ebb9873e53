// SPDX-License-Identifier: Apache-2.0
// SQLite only: the waiting queue of locks (schema 4). A release hands the lock to the oldest
// live ticket, in its own transaction: a waiter of this process receives the grant through its
// release watch, one of another process (a backend whose watches the releasing backend cannot
// reach) takes it at its next attempt. Fair acquisitions are granted in ticket order, a waiter
// that leaves takes its ticket (and any lock handed to it) along, and a dead waiter's ticket
// lapses.

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>

#include "support/fixtures.hpp"
#include "support/poll.hpp"
#include "support/requests.hpp"
#include "support/sqlite.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;
using namespace sqlock_test;

namespace {

/// Counts try_acquire calls; after the first refusal that says "queued", runs `after_queued`
/// once in the caller's thread, before the caller sees that refusal.
class counting_backend : public sqlock::backend_wrapper {
 public:
  using sqlock::backend_wrapper::backend_wrapper;
  std::atomic<int> attempts{0};
  std::function<void()> after_queued;

  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline d) override {
    ++attempts;
    auto out = wrapped().try_acquire(r, d);
    if (!out.granted && out.queued && after_queued) std::exchange(after_queued, nullptr)();
    return out;
  }
};

/// A backend as another process has it: releases by the other backends of this process on the
/// same file do not reach its watches (they share one registry per file otherwise), so it learns
/// of a lock handed to it only at its next attempt.
class other_process_backend : public sqlock::backend_wrapper {
 public:
  using sqlock::backend_wrapper::backend_wrapper;
  std::shared_ptr<sqlock::release_watch> watch(std::string_view name) override {
    return std::make_shared<sqlock::release_watch>(std::string(name));
  }
};

/// Raw reads of the database file beside sqlock.
struct raw_sqlite {
  explicit raw_sqlite(const sqlite_fixture& db) : conn(sqlite_open(db.file())) {}
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(conn.get(), sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  long long number(const std::string& sql) {
    auto t = text(sql);
    return t.empty() ? 0 : std::stoll(t);
  }
  long long tickets(const std::string& name) {
    return number("SELECT count(*) FROM sqlock_lock_waiters WHERE name = '" + name + "'");
  }
  std::string holder_nonce(const std::string& name) {
    return text("SELECT nonce FROM sqlock_locks WHERE name = '" + name + "'");
  }
  long long counter() { return number("SELECT value FROM sqlock_counters WHERE name = 'token'"); }
  sqlite_handle conn;
};

sqlock::lock_options fair(std::chrono::milliseconds ttl = 30s) {
  sqlock::lock_options o;
  o.ttl = ttl;
  o.fair = true;
  return o;
}

/// A waiting, queueing attempt of `nonce`, as a waiting client makes it.
sqlock::acquire_request queued_request(
    std::string name, std::string nonce, std::int64_t attempt, bool is_fair = false,
    std::chrono::milliseconds ticket_ttl = sqlock::fair_ticket_ttl) {
  auto r = request(std::move(name), std::move(nonce), 30s, true);
  r.fair = is_fair;
  r.queue = true;
  r.ticket_ttl = ticket_ttl;
  r.attempt = attempt;
  return r;
}

sqlock::lease_key lock_key(std::string name, std::string nonce, std::int64_t token = 0) {
  return {std::move(name), std::move(nonce), token, sqlock::lease_kind::lock};
}

// A VFS that forwards to the default one and counts the syncs (fsync, fdatasync) of the files
// opened through it: what a commit waits for with synchronous=FULL. Open a database through it
// with the URI parameter vfs=sqlock-test-syncs.
namespace syncs {

std::atomic<int> count{0};
sqlite3_vfs* real = nullptr;
sqlite3_io_methods methods{};

struct file {
  sqlite3_file base;
  sqlite3_file* real;  // the default VFS's file, allocated right after this struct
};
sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<file*>(f)->real; }

int x_close(sqlite3_file* f) { return real_of(f)->pMethods->xClose(real_of(f)); }
int x_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}
int x_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xWrite(real_of(f), p, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
int x_sync(sqlite3_file* f, int flags) {
  ++count;
  return real_of(f)->pMethods->xSync(real_of(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int x_lock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xLock(real_of(f), l); }
int x_unlock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xUnlock(real_of(f), l); }
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int x_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device_characteristics(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int x_shm_unmap(sqlite3_file* f, int del) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

int x_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* mine = reinterpret_cast<file*>(f);
  mine->real = reinterpret_cast<sqlite3_file*>(mine + 1);
  int rc = real->xOpen(real, name, mine->real, flags, out_flags);
  mine->base.pMethods = rc == SQLITE_OK && mine->real->pMethods ? &methods : nullptr;
  return rc;
}

/// Registers the VFS (once; not as the default).
void install() {
  static sqlite3_vfs vfs = [] {
    real = sqlite3_vfs_find(nullptr);
    methods.iVersion = 2;  // up to the shared-memory methods WAL needs; no memory mapping
    methods.xClose = x_close;
    methods.xRead = x_read;
    methods.xWrite = x_write;
    methods.xTruncate = x_truncate;
    methods.xSync = x_sync;
    methods.xFileSize = x_file_size;
    methods.xLock = x_lock;
    methods.xUnlock = x_unlock;
    methods.xCheckReservedLock = x_check_reserved_lock;
    methods.xFileControl = x_file_control;
    methods.xSectorSize = x_sector_size;
    methods.xDeviceCharacteristics = x_device_characteristics;
    methods.xShmMap = x_shm_map;
    methods.xShmLock = x_shm_lock;
    methods.xShmBarrier = x_shm_barrier;
    methods.xShmUnmap = x_shm_unmap;
    sqlite3_vfs v = *real;
    v.szOsFile = static_cast<int>(sizeof(file)) + real->szOsFile;
    v.zName = "sqlock-test-syncs";
    v.pNext = nullptr;
    v.xOpen = x_open;
    return v;
  }();
  static const bool registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
  REQUIRE(registered);
}

}  // namespace syncs

}  // namespace

TEST_SUITE("sqlite") {
  TEST_CASE("lock queue: a release hands the lock to a waiter of this process, no attempt needed") {
    sqlite_fixture db;
    auto counted = std::make_shared<counting_backend>(sqlock::open_backend(db.url(), {}));
    sqlock::client waiter(counted, {});
    sqlock::client holder(db.url());
    auto held = holder.try_acquire("job");
    REQUIRE(held);
    const auto released_token = held->token();

    // The holder releases right after the waiter's first refusal has queued it, before the
    // waiter goes to sleep: only the handoff through its watch can grant it without another
    // attempt.
    int attempts_at_release = -1;
    bool released = false;
    counted->after_queued = [&] {
      attempts_at_release = counted->attempts;
      held->release();
      released = true;
    };
    auto start = steady::now();
    auto got = waiter.try_acquire_for("job", 20s, fair());
    REQUIRE(got);
    CHECK(released);
    CHECK(attempts_at_release == 1);
    CHECK(counted->attempts == attempts_at_release);  // no attempt after the release
    CHECK(ms_since(start) < 5000);
    CHECK(got->token() > released_token);
    auto rec = holder.inspect("job");
    REQUIRE(rec);
    CHECK(rec->held);
    CHECK(rec->token == got->token());
    CHECK(got->renew());  // the handed lease is the waiter's own
    raw_sqlite raw(db);
    CHECK(raw.tickets("job") == 0);
    got->release();
    CHECK_FALSE(holder.inspect("job")->held);  // nobody queued: released for good
  }

  TEST_CASE(
      "lock queue: a waiter of another process finds the lock handed to it at its next "
      "attempt") {
    sqlite_fixture db;
    raw_sqlite raw(db);
    auto a = sqlock::open_backend(db.url(), {});
    auto b = sqlock::open_backend(db.url(), {});
    auto held = a->try_acquire(request("job", "holder"), soon());
    REQUIRE(held.granted);

    SUBCASE("backend calls") {
      auto first = b->try_acquire(queued_request("job", "w", 1), soon());
      CHECK_FALSE(first.granted);
      CHECK(first.queued);
      CHECK(first.holder_expires_in > 20s);
      CHECK(raw.tickets("job") == 1);
      // A refresh keeps the ticket (and its number), and records the attempt.
      const auto ticket = raw.number("SELECT ticket FROM sqlock_lock_waiters");
      auto second = b->try_acquire(queued_request("job", "w", 2), soon());
      CHECK(second.queued);
      CHECK(raw.number("SELECT ticket FROM sqlock_lock_waiters") == ticket);
      CHECK(raw.number("SELECT attempt FROM sqlock_lock_waiters") == 2);
      CHECK(ticket > held.granted->token);

      CHECK(a->release(lock_key("job", "holder", held.granted->token), soon()));
      // Held again at once, by the waiter, with a new token: nobody else can take it.
      auto rec = a->inspect("job", soon());
      REQUIRE(rec);
      CHECK(rec->held);
      CHECK(rec->token > ticket);
      CHECK(rec->owner == "test");
      CHECK(raw.holder_nonce("job") == "w");
      CHECK(raw.tickets("job") == 0);
      CHECK_FALSE(a->try_acquire(request("job", "barger"), soon()).granted);

      // The waiter's next attempt takes it: that token, extended as a renewal would be.
      auto third = b->try_acquire(queued_request("job", "w", 3), soon());
      REQUIRE(third.granted);
      CHECK(third.granted->token == rec->token);
      CHECK(third.granted->expires_at >= rec->expires_at);
      CHECK_FALSE(third.queued);
      CHECK(raw.tickets("job") == 0);
      auto renewed = b->renew({{lock_key("job", "w", third.granted->token), 30s}}, soon());
      CHECK(renewed.at(0).outcome == sqlock::renew_outcome::renewed);
    }

    SUBCASE("a client") {
      auto other = std::make_shared<other_process_backend>(b);
      sqlock::client waiter(other, {});
      std::optional<sqlock::lease> got;
      std::thread t([&] { got = waiter.try_acquire_for("job", 20s, fair()); });
      scope_guard join{[&] {
        if (t.joinable()) t.join();
      }};
      REQUIRE(eventually([&] { return raw.tickets("job") == 1; }));
      CHECK(a->release(lock_key("job", "holder", held.granted->token), soon()));
      // The lock is the waiter's from the release on, before the waiter knows it.
      const auto handed = raw.number("SELECT token FROM sqlock_locks WHERE name = 'job'");
      CHECK(handed > held.granted->token);
      CHECK(a->inspect("job", soon())->held);
      t.join();
      REQUIRE(got);
      CHECK(got->token() == handed);
      CHECK(raw.tickets("job") == 0);
    }
  }

  TEST_CASE("lock queue: fair waiters are granted in arrival order") {
    sqlite_fixture db;
    raw_sqlite raw(db);
    auto admin = sqlock::open_backend(db.url(), {});
    sqlock::client holder(db.url());
    constexpr int n = 4;
    // In one process, a release wakes the waiter it hands the lock to; as separate processes,
    // the waiters poll. Either way, the order is the tickets'.
    for (bool separate : {false, true}) {
      CAPTURE(separate);
      const std::string name = separate ? "job-processes" : "job-threads";
      std::vector<std::unique_ptr<sqlock::client>> ws;
      for (int i = 0; i < n; ++i) {
        std::shared_ptr<sqlock::backend> b = sqlock::open_backend(db.url(), {});
        if (separate) b = std::make_shared<other_process_backend>(b);
        sqlock::client_options o;
        o.owner = "w" + std::to_string(i + 1);
        ws.push_back(std::make_unique<sqlock::client>(b, o));
      }
      auto held = holder.try_acquire(name);
      REQUIRE(held);
      std::mutex mu;
      std::vector<std::pair<std::int64_t, int>> grants;  // token, waiter
      std::atomic<int> failures{0};
      std::vector<std::thread> ts;
      scope_guard cleanup{[&] { join_all(ts); }};
      for (int i = 0; i < n; ++i) {
        ts.emplace_back([&, i] {
          try {
            auto l = ws[static_cast<std::size_t>(i)]->try_acquire_for(name, 60s, fair());
            if (!l) {
              ++failures;
              return;
            }
            {
              std::lock_guard<std::mutex> g(mu);
              grants.emplace_back(l->token(), i);
            }
            std::this_thread::sleep_for(30ms);
            l->release();
          } catch (const std::exception&) {
            ++failures;
          }
        });
        // Queue them one at a time: each is in line before the next starts.
        REQUIRE(eventually([&] { return raw.tickets(name) == i + 1; }, 20s));
      }
      // The first grant comes from a lock left free (no handoff): only the fair check keeps
      // the later waiters from taking it first. The others are handed on by each release.
      CHECK(admin->force_release(name, soon()));
      join_all(ts);
      CHECK(failures == 0);
      std::sort(grants.begin(), grants.end());
      std::vector<int> order;
      for (auto& g : grants) order.push_back(g.second);
      CHECK(order == std::vector<int>{0, 1, 2, 3});
      CHECK(raw.tickets(name) == 0);
    }
  }

  TEST_CASE("lock queue: a waiter that leaves takes its ticket along, and never a lock with it") {
    sqlite_fixture db;
    raw_sqlite raw(db);
    auto b = sqlock::open_backend(db.url(), {});
    auto held = b->try_acquire(request("job", "holder"), soon());
    REQUIRE(held.granted);

    SUBCASE("handed to it as it leaves: abandon hands it on") {
      REQUIRE(b->try_acquire(queued_request("job", "w1", 1), soon()).queued);
      REQUIRE(b->try_acquire(queued_request("job", "w2", 1), soon()).queued);
      CHECK(b->release(lock_key("job", "holder", held.granted->token), soon()));
      CHECK(raw.holder_nonce("job") == "w1");  // the race: handed to a waiter that gives up
      const auto handed = b->inspect("job", soon())->token;
      CHECK(b->abandon(lock_key("job", "w1"), soon()));  // it was live: it ended
      auto rec = b->inspect("job", soon());
      REQUIRE(rec);
      CHECK(rec->held);
      CHECK(rec->token > handed);
      CHECK(raw.holder_nonce("job") == "w2");
      CHECK(raw.tickets("job") == 0);
      // The last one leaves too: the lock is free, nobody holds it.
      CHECK(b->abandon(lock_key("job", "w2"), soon()));
      CHECK_FALSE(b->inspect("job", soon())->held);
      auto next = b->try_acquire(request("job", "next"), soon());
      REQUIRE(next.granted);
      CHECK(next.granted->token > rec->token);
    }

    SUBCASE("only queued: abandon drops the ticket, the lock stays with its holder") {
      REQUIRE(b->try_acquire(queued_request("job", "w1", 1), soon()).queued);
      CHECK_FALSE(b->abandon(lock_key("job", "w1"), soon()));  // no lease, only a ticket
      CHECK(raw.tickets("job") == 0);
      CHECK(raw.holder_nonce("job") == "holder");
      CHECK(b->release(lock_key("job", "holder", held.granted->token), soon()));
      CHECK_FALSE(b->inspect("job", soon())->held);  // nobody to hand it to
    }

    SUBCASE("a client whose wait times out leaves no ticket") {
      sqlock::client waiter(db.url());
      auto start = steady::now();
      CHECK_FALSE(waiter.try_acquire_for("job", 400ms, fair()));
      CHECK(ms_since(start) >= 400);
      CHECK(raw.tickets("job") == 0);  // at once, not after fair_ticket_ttl
      CHECK(b->release(lock_key("job", "holder", held.granted->token), soon()));
      CHECK_FALSE(b->inspect("job", soon())->held);
    }
  }

  TEST_CASE("lock queue: a dead waiter's ticket stops blocking fair acquisitions once it lapses") {
    sqlite_fixture db;
    raw_sqlite raw(db);
    auto b = sqlock::open_backend(db.url(), {});
    auto held = b->try_acquire(request("job", "holder"), soon());
    REQUIRE(held.granted);
    // A waiter that queues once and dies: its ticket is never refreshed. (Its ticket lapses
    // 500 ms after the database read its clock, which is after queued_at.)
    auto queued_at = steady::now();
    REQUIRE(b->try_acquire(queued_request("job", "dead", 1, true, 500ms), soon()).queued);
    // Free without a handoff: the fair check alone holds it for the older ticket.
    CHECK(b->force_release("job", soon()));

    // A fair try is refused while the ticket is live, and writes nothing.
    const auto counter = raw.counter();
    auto refused = b->try_acquire(
        [] {
          auto r = request("job", "try");
          r.fair = true;
          return r;
        }(),
        soon());
    if (ms_since(queued_at) < 400) {
      CHECK_FALSE(refused.granted);
      CHECK_FALSE(refused.queued);
      CHECK(refused.holder_expires_in > 0ms);
      CHECK(refused.holder_expires_in <= 500ms);
      CHECK(raw.counter() == counter);
      CHECK(raw.tickets("job") == 1);
    }

    // A fair waiter gets it once the dead ticket lapses: after its ttl, well before its own
    // wait ends.
    sqlock::client waiter(db.url());
    auto got = waiter.try_acquire_for("job", 10s, fair());
    REQUIRE(got);
    CHECK(ms_since(queued_at) >= 490);  // (the database clock counts whole milliseconds)
    CHECK(ms_since(queued_at) < 5000);
    CHECK(raw.tickets("job") == 0);  // the grant dropped the lapsed one
  }

  TEST_CASE(
      "lock queue: a release that hands nothing over does not wait for the disk; a grant "
      "and a handoff do") {
    sqlite_fixture db;
    raw_sqlite raw(db);
    syncs::install();
    // Durable commits (synchronous=FULL, the default) sync the WAL; one connection, reused.
    auto b = sqlock::open_backend("file:" + db.file() + "?vfs=sqlock-test-syncs", {});
    REQUIRE(b->schema_version(soon()) == b->latest_schema_version());
    // How many syncs `fn` made; `ended` is its result.
    bool ended = false;
    auto synced = [&](const std::function<bool()>& fn) {
      syncs::count = 0;
      ended = fn();
      return syncs::count.load();
    };
    sqlock::acquire_result held;
    auto grant = [&](const std::string& nonce) {
      held = b->try_acquire(request("job", nonce), soon());
      return held.granted.has_value();
    };
    auto release = [&](sqlock::backend& via, const std::string& nonce) {
      return [&via, nonce, token = held.granted->token] {
        return via.release(lock_key("job", nonce, token), soon());
      };
    };
    CHECK(synced([&] { return grant("h1"); }) >= 1);
    REQUIRE(ended);
    CHECK(synced(release(*b, "h1")) == 0);
    CHECK(ended);
    // The connection is back to FULL: the next grant syncs.
    CHECK(synced([&] { return grant("h2"); }) >= 1);
    REQUIRE(ended);

    // With a waiter queued, the release is a grant: durable.
    REQUIRE(b->try_acquire(queued_request("job", "w", 1), soon()).queued);
    CHECK(synced(release(*b, "h2")) >= 1);
    CHECK(ended);
    CHECK(raw.holder_nonce("job") == "w");
    // The waiter leaves with it, and nobody is queued: not durable.
    CHECK(synced([&] { return b->abandon(lock_key("job", "w"), soon()); }) == 0);
    CHECK(ended);
    CHECK_FALSE(b->inspect("job", soon())->held);
    CHECK(synced([&] { return grant("h3"); }) >= 1);
    REQUIRE(ended);

    // Opened with synchronous=NORMAL, nothing syncs, a handoff neither (and still happens).
    sqlock::backend_options normal;
    normal.sqlite_synchronous = sqlock::backend_options::sqlite_sync::normal;
    auto n = sqlock::open_backend("file:" + db.file() + "?vfs=sqlock-test-syncs", normal);
    REQUIRE(n->try_acquire(queued_request("job", "w2", 1), soon()).queued);
    CHECK(synced(release(*n, "h3")) == 0);
    CHECK(ended);
    CHECK(raw.holder_nonce("job") == "w2");
    CHECK(synced([&] { return n->abandon(lock_key("job", "w2"), soon()); }) == 0);
    CHECK(ended);
    CHECK_FALSE(n->inspect("job", soon())->held);
  }
}
