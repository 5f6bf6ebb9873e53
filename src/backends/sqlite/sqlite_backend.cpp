// The SQLite backend: the only code that includes <sqlite3.h>.
//
// Concurrency: every write is one short BEGIN IMMEDIATE transaction (WAL mode), so writers
// serialise on SQLite's write lock, across threads and processes alike; readers never block.
// A refused acquire is a plain read that takes no write lock. Connections come from a small
// pool and are used by one thread at a time (opened NOMUTEX). Waiting for the write lock uses
// our own busy handler: short random sleeps bounded by the call's deadline, because SQLite's
// stock handler starved one of two contending processes in half of the measured runs.
//
// Clock: SQLite's, i.e. the host's wall clock, read once per transaction in SQL as epoch
// milliseconds and bound as a parameter to every statement of that transaction, so a
// transaction sees one instant. All processes on one file must share that host clock.

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>

#include "backends/common/backend_common.hpp"
#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"
#include "util/util.hpp"
#include "backends/common/watch_registry.hpp"

namespace sqlock::detail {
namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

constexpr const char* kind_name = "sqlite";

std::string code_name(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ERROR: return "SQLITE_ERROR";
    default: return "SQLITE_" + std::to_string(rc & 0xff);
  }
}

// Chooses the errc by what the caller should do next. `db`, when known, tells a transient
// open failure (out of file descriptors) from a configuration one (a directory, no such
// directory, no permission).
[[noreturn]] void fail(int rc, const std::string& what, const char* detail_msg,
                       sqlite3* db = nullptr) {
  std::string msg = what + " on sqlite: " + (detail_msg ? detail_msg : sqlite3_errstr(rc));
  errc code = errc::unavailable;
  switch (rc & 0xff) {
    case SQLITE_NOTADB: code = errc::invalid_argument; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISUSE:
    case SQLITE_RANGE: code = errc::internal; break;
    case SQLITE_CANTOPEN: {
      int e = db ? sqlite3_system_errno(db) : 0;
      if (e == EMFILE || e == ENFILE || e == ENOMEM || e == EAGAIN || e == EINTR) break;
      code = errc::invalid_argument;
      msg += " (is the path a regular file in an existing directory that this process may "
             "write to?)";
      break;
    }
    case SQLITE_READONLY:
      // A recovery another connection must finish is transient; every other read-only case
      // (mode=ro, a read-only file, directory or mount) needs the setup fixed.
      if (rc == SQLITE_READONLY_RECOVERY) break;
      code = errc::invalid_argument;
      msg += " (sqlock writes to the database file, its -wal and -shm files and their "
             "directory: open it read-write)";
      break;
    case SQLITE_PERM:
    case SQLITE_AUTH: code = errc::invalid_argument; break;
    case SQLITE_ERROR:
      if (detail_msg && std::strstr(detail_msg, "no such table")) {
        code = errc::schema_mismatch;
        msg += " (run `sqlock migrate up`)";
      } else if (detail_msg && std::strstr(detail_msg, "no such column")) {
        code = errc::schema_mismatch;
      }
      break;
    default: break;
  }
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    msg += " (the database stayed locked until the call's deadline)";
  throw error(code, msg, kind_name, code_name(rc));
}

struct db_closer {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};

class connection;

// A prepared statement in use: resets and clears its bindings when done, so the cached
// statement holds no read snapshot and no stale values.
class statement {
 public:
  statement(connection& c, sqlite3_stmt* s, const std::string& what) : c_(c), s_(s), what_(what) {}
  ~statement() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  statement& bind_null(int i) {
    check(sqlite3_bind_null(s_, i));
    return *this;
  }
  /// true: a row is available; false: done.
  bool step();
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  bool is_integer(int col) const { return sqlite3_column_type(s_, col) == SQLITE_INTEGER; }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col))) : std::string();
  }

 private:
  void check(int rc);
  connection& c_;
  sqlite3_stmt* s_;
  const std::string& what_;
};

class connection {
 public:
  connection(const std::string& location, bool uri, bool create,
             backend_options::sqlite_sync sync) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (create) flags |= SQLITE_OPEN_CREATE;
    if (uri) flags |= SQLITE_OPEN_URI;
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(location.c_str(), &raw, flags, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) {
      std::string why = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
      fail(rc, "open " + quoted(location), why.c_str(), raw);
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_handler(raw, &connection::on_busy, this);
    deadline_ = steady::now() + milliseconds{5000};
    // synchronous is per connection and writes nothing.
    exec(sync == backend_options::sqlite_sync::full ? "PRAGMA synchronous=FULL"
                                                    : "PRAGMA synchronous=NORMAL",
         "open " + quoted(location));
    // journal_mode=WAL is persistent: it rewrites the file header. Only a database already
    // recognised as sqlock's gets it here (migrate sets it before creating the schema);
    // someone else's database is left exactly as it was.
    if (has_sqlock_schema("open " + quoted(location))) use_wal("open " + quoted(location));
  }

  /// WAL: readers never block the writer and a refused acquire never waits for one.
  /// Switching a file to WAL needs it to itself: while another connection holds a write
  /// transaction (a concurrent migrator's first step, still in rollback-journal mode), SQLite
  /// refuses at once without calling the busy handler (waiting could deadlock), so the switch
  /// is retried here with the busy handler's sleeps until the deadline.
  void use_wal(const std::string& what) {
    for (int attempt = 0;; ++attempt) {
      int rc = sqlite3_exec(db_.get(), "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
      if (rc == SQLITE_OK) return;
      if ((rc & 0xff) != SQLITE_BUSY || on_busy(this, attempt) == 0)
        fail(rc, what, sqlite3_errmsg(db_.get()), db_.get());
    }
  }

  bool has_sqlock_schema(const std::string& what) {
    auto t = prepare(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlock_schema_version'",
        what);
    t.step();
    return t.integer(0) != 0;
  }

  sqlite3* get() const noexcept { return db_.get(); }
  void set_deadline(deadline d) noexcept { deadline_ = d; }

  statement prepare(const char* sql, const std::string& what) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* s = nullptr;
      int rc = sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
      if (rc != SQLITE_OK) fail(rc, what, sqlite3_errmsg(db_.get()), db_.get());
      it = cache_.emplace(sql, std::unique_ptr<sqlite3_stmt, stmt_finalizer>(s)).first;
    }
    return statement(*this, it->second.get(), what);
  }

  void exec(const char* sql, const std::string& what) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errmsg(db_.get());
      sqlite3_free(err);
      fail(rc, what, msg.c_str(), db_.get());
    }
  }

  /// The database clock: epoch milliseconds.
  std::int64_t now_ms(const std::string& what) {
    auto s = prepare("SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)",
                     what);
    s.step();
    return s.integer(0);
  }

  bool broken = false;

 private:
  // Our own busy wait: short random sleeps (so contending processes interleave fairly), never
  // past the call's deadline.
  static int on_busy(void* self, int count) {
    auto* c = static_cast<connection*>(self);
    auto now = steady::now();
    if (now >= c->deadline_) return 0;
    auto cap = milliseconds{std::min(1 << std::min(count, 4), 16)};
    auto sleep = std::min<steady::duration>(jitter(milliseconds{0}, cap) + std::chrono::microseconds{200},
                                            c->deadline_ - now);
    std::this_thread::sleep_for(sleep);
    return 1;
  }

  std::unique_ptr<sqlite3, db_closer> db_;
  std::unordered_map<const char*, std::unique_ptr<sqlite3_stmt, stmt_finalizer>> cache_;
  deadline deadline_;
};

bool statement::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(rc, what_, sqlite3_errmsg(c_.get()), c_.get());
}

void statement::check(int rc) {
  if (rc != SQLITE_OK) fail(rc, what_, sqlite3_errmsg(c_.get()), c_.get());
}

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
class write_transaction {
 public:
  // Prepared once per connection: sqlite3_exec would parse them for every transaction.
  write_transaction(connection& c, const std::string& what) : c_(c), what_(what) {
    c_.prepare("BEGIN IMMEDIATE", what_).step();
  }
  ~write_transaction() {
    if (!done_) sqlite3_exec(c_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    c_.prepare("COMMIT", what_).step();
    done_ = true;
  }

 private:
  connection& c_;
  const std::string& what_;
  bool done_ = false;
};

// Releases by any backend of this process on the same file wake the waiters of all of them:
// registries are shared per file identity (device, inode).
std::shared_ptr<watch_registry> registry_for(const std::string& key) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<watch_registry>> registries;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = registries[key];
  auto r = slot.lock();
  if (!r) {
    r = std::make_shared<watch_registry>();
    slot = r;
  }
  return r;
}

std::string path_of(const std::string& location, bool uri) {
  if (!uri) return location;
  std::string p = location.substr(5);  // after "file:"
  if (p.rfind("//", 0) == 0) {
    p = p.substr(2);
    auto slash = p.find('/');
    p = slash == std::string::npos ? std::string() : p.substr(slash);
  }
  return p.substr(0, p.find_first_of("?#"));
}

lock_record read_record(const statement& s) {
  lock_record r;
  r.name = s.text(0);
  r.owner = s.text(1);
  r.metadata = s.text(2);
  r.token = s.integer(3);
  r.acquired_at = from_epoch_ms(s.integer(4));
  r.expires_at = from_epoch_ms(s.integer(5));
  r.expires_in = milliseconds{s.integer(6)};
  r.held = r.expires_in > milliseconds::zero();
  return r;
}

class sqlite_backend final : public backend {
 public:
  sqlite_backend(std::string location, bool uri, backend_options options)
      : location_(std::move(location)), uri_(uri), options_(std::move(options)) {
    if (sqlite3_libversion_number() < 3035000)
      throw error(errc::invalid_argument,
                  std::string("sqlock needs SQLite 3.35 or newer; this process has ") +
                      sqlite3_libversion(),
                  kind_name);
  }

  std::string_view kind() const noexcept override { return kind_name; }
  std::string describe() const override { return quoted(location_); }
  int latest_schema_version() const noexcept override { return latest_migration(kind_name); }
  bool wakes_other_processes() const noexcept override { return false; }

  std::shared_ptr<release_watch> watch(std::string_view name) override {
    return registry()->watch(name);
  }

  int schema_version(deadline until) override {
    const std::string what = "read schema version";
    if (!uri_) {
      struct stat st{};
      if (::stat(location_.c_str(), &st) != 0) return 0;  // only migrate creates the file
    }
    auto c = checkout(until, false, what);
    return read_version(*c, what);
  }

  int migrate(int target, deadline until) override { return migrate_with(target, {}, until); }

  int migrate_with(int target, const migrate_options& options, deadline until) override {
    const std::string what = "migrate";
    const auto& all = embedded_migrations(kind_name);
    if (target < 0 || target > latest_migration(kind_name))
      throw error(errc::invalid_argument, "migrate: no schema version " + std::to_string(target),
                  kind_name);
    auto c = checkout(until, true, what);
    c->use_wal(what);  // a new or foreign file: the connection did not set it
    // One transaction per migration; concurrent runners serialise on BEGIN IMMEDIATE and
    // re-read the version inside it.
    for (;;) {
      write_transaction tx(*c, what);
      int v = read_version(*c, what);
      if (v == target) {
        tx.commit();
        return v;
      }
      if (v > latest_migration(kind_name))
        throw error(errc::schema_mismatch,
                    "migrate: the database has schema version " + std::to_string(v) +
                        ", newer than this sqlock knows (" +
                        std::to_string(latest_migration(kind_name)) + ")",
                    kind_name);
      if (v < target) {
        const auto& m = all.at(static_cast<std::size_t>(v));  // versions are 1..N in order
        c->exec(m.up, "migrate up to " + std::to_string(m.version) + " (" + m.up_file + ")");
      } else {
        const auto& m = all.at(static_cast<std::size_t>(v - 1));
        refuse_live_leases(*c, v, target, options);
        c->exec(m.down, "migrate down from " + std::to_string(m.version) + " (" + m.down_file + ")");
        if (m.version > 1) {
          auto s = c->prepare("DELETE FROM sqlock_schema_version WHERE version = ?1", what);
          s.bind(1, std::int64_t{m.version});
          s.step();
        }
      }
      tx.commit();
    }
  }

  // Inside a down step's write transaction (BEGIN IMMEDIATE: no grant can commit until it
  // ends), from schema `v` towards `target`: the live lock leases (when the steps to `target`
  // drop the lock table) and semaphore holders (when they drop the semaphore tables). Dropping
  // them would let the next grant after `migrate up` reuse small tokens while their holders
  // still work. Throws unless `options.force`, which only warns.
  void refuse_live_leases(connection& c, int v, int target, const migrate_options& options) {
    const std::string what = "migrate down: count live leases";
    const bool locks = target < 1, holders = target < 2 && v >= 2;
    live_leases live;
    auto count = [&](const char* sql, const char* label) {
      auto s = c.prepare(sql, what);
      s.bind(1, c.now_ms(what));
      std::int64_t total = 0;
      while (s.step()) {
        total = s.integer(0);
        live.add(label, s.text(1), s.integer(2), s.text(3));
      }
      live.total(total);
    };
    if (locks)
      count("SELECT count(*) OVER (), name, token, owner FROM sqlock_locks "
            "WHERE expires_at > ?1 ORDER BY token LIMIT 3",
            "lock");
    if (holders)
      count("SELECT count(*) OVER (), name, token, owner FROM sqlock_semaphore_holders "
            "WHERE expires_at > ?1 ORDER BY token LIMIT 3",
            "semaphore");
    auto warning = live.verdict(kind_name, v, options.force);
    if (warning.empty() || !options_.log) return;
    try {
      options_.log(log_level::warn, warning);
    } catch (...) {
    }
  }

  acquire_result try_acquire(const acquire_request& r, deadline until) override {
    const std::string what = "acquire " + quoted(r.name);
    auto c = checkout(until, false, what);
    // Look first, without the write lock: under contention most attempts stop here, and a
    // refused attempt never writes.
    {
      auto look = c->prepare(
          "SELECT expires_at - CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) "
          "FROM sqlock_locks WHERE name = ?1",
          what);
      look.bind(1, r.name);
      if (look.step() && look.integer(0) > 0) return {std::nullopt, milliseconds{look.integer(0)}};
    }
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    std::int64_t floor = 1;
    {
      auto cur = c->prepare("SELECT token, expires_at FROM sqlock_locks WHERE name = ?1", what);
      cur.bind(1, r.name);
      if (cur.step()) {
        if (cur.integer(1) > now) return {std::nullopt, milliseconds{cur.integer(1) - now}};
        floor = cur.integer(0) + 1;
      }
    }
    std::int64_t token = next_token(*c, floor, what);
    std::int64_t expires = now + r.ttl.count();
    {
      auto up = c->prepare(
          "INSERT INTO sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, metadata) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
          "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
          "token = excluded.token, acquired_at = excluded.acquired_at, "
          "expires_at = excluded.expires_at, metadata = excluded.metadata",
          what);
      up.bind(1, r.name).bind(2, r.owner).bind(3, r.nonce).bind(4, token).bind(5, now);
      up.bind(6, expires).bind(7, r.metadata);
      up.step();
    }
    tx.commit();
    return {grant{token, from_epoch_ms(now), from_epoch_ms(expires)}, milliseconds::zero()};
  }

  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override {
    std::vector<renew_result> out;
    if (requests.empty()) return out;
    const std::string what = describe_renewal(requests);
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    out.reserve(requests.size());
    for (const auto& r : requests) {
      if (r.key.kind == lease_kind::semaphore) {
        out.push_back(renew_holder(*c, now, r, what));
        continue;
      }
      auto up = c->prepare(
          "UPDATE sqlock_locks SET expires_at = max(expires_at, ?1 + ?2) "
          "WHERE name = ?3 AND nonce = ?4 AND token = ?5 AND expires_at > ?1 RETURNING expires_at",
          what);
      up.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count())).bind(3, r.key.name);
      up.bind(4, r.key.nonce).bind(5, r.key.token);
      if (up.step()) {
        out.push_back({renew_outcome::renewed, from_epoch_ms(up.integer(0))});
        continue;
      }
      auto cur = c->prepare("SELECT nonce, token FROM sqlock_locks WHERE name = ?1", what);
      cur.bind(1, r.key.name);
      // One write transaction at a time: nothing else can hold the row, so never busy.
      renew_outcome o = renew_outcome::missing;
      if (cur.step()) o = refused_renewal(r.key, cur.text(0), cur.integer(1), false);
      out.push_back({o, {}});
    }
    tx.commit();
    return out;
  }

  bool release(const lease_key& key, deadline until) override {
    const std::string what = "release " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
    if (key.kind == lease_kind::semaphore)
      return end_lease(
          "UPDATE sqlock_semaphore_holders SET expires_at = ?1 "
          "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1",
          key.name, key.nonce, &key.token, until, what);
    return end_lease(
        "UPDATE sqlock_locks SET expires_at = ?1 "
        "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1",
        key.name, key.nonce, &key.token, until, what);
  }

  bool abandon(const lease_key& key, deadline until) override {
    const std::string what = "clean up acquire " + quoted(key.name);
    if (key.kind == lease_kind::semaphore) {
      // A fair waiter that leaves gives up its ticket: the next one may be first now.
      // (?1 = ?1: end_lease binds the clock as ?1, which a ticket's deletion does not need.)
      end_lease("DELETE FROM sqlock_semaphore_tickets WHERE ?1 = ?1 AND name = ?2 AND nonce = ?3",
                key.name, key.nonce, nullptr, until, what);
      return end_lease(
          "UPDATE sqlock_semaphore_holders SET expires_at = ?1 "
          "WHERE name = ?2 AND nonce = ?3 AND expires_at > ?1",
          key.name, key.nonce, nullptr, until, what);
    }
    return end_lease(
        "UPDATE sqlock_locks SET expires_at = ?1 WHERE name = ?2 AND nonce = ?3 AND expires_at > ?1",
        key.name, key.nonce, nullptr, until, what);
  }

  acquire_result try_acquire_semaphore(const semaphore_request& r, deadline until) override {
    const std::string what = "acquire semaphore " + quoted(r.name);
    auto c = checkout(until, false, what);
    // Look first, without the write lock: a certain refusal of a non-queueing attempt writes
    // nothing. Everything is decided again inside the write transaction.
    if (!(r.waiting && r.fair)) {
      std::int64_t now = c->now_ms(what);
      auto v = semaphore_view(*c, r.name, r.nonce, now, what);
      if (v.exists && !v.grantable(r)) return {std::nullopt, v.retry_in(now)};
    }
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    auto v = semaphore_view(*c, r.name, r.nonce, now, what);
    if (v.exists && v.used > 0 && v.limit != r.limit)
      throw error(errc::invalid_argument,
                  what + ": the semaphore has limit " + std::to_string(v.limit) +
                      " (its live holders use it); this acquisition asks for limit " +
                      std::to_string(r.limit),
                  kind_name);
    if (v.exists && !v.grantable(r)) {
      if (r.waiting && r.fair) {
        auto keep = c->prepare(
            "UPDATE sqlock_semaphore_tickets SET expires_at = ?1 + ?2 "
            "WHERE name = ?3 AND nonce = ?4 AND expires_at > ?1",
            what);
        keep.bind(1, now).bind(2, static_cast<std::int64_t>(r.ticket_ttl.count()));
        keep.bind(3, r.name).bind(4, r.nonce).step();
        if (sqlite3_changes(c->get()) == 0) {
          // First refusal, or our ticket lapsed: a new place at the end of the queue.
          auto drop = c->prepare("DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND nonce = ?2", what);
          drop.bind(1, r.name).bind(2, r.nonce).step();
          std::int64_t ticket = next_token(*c, 1, what);
          auto add = c->prepare(
              "INSERT INTO sqlock_semaphore_tickets (name, nonce, owner, ticket, units, expires_at) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
              what);
          add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, ticket).bind(5, r.count);
          add.bind(6, now + r.ticket_ttl.count()).step();
        }
        tx.commit();
      }
      return {std::nullopt, v.retry_in(now)};
    }
    // Granted: drop ended holders and lapsed tickets (and ours); changed_at remembers when the
    // last of them ended, for purge.
    std::int64_t ended_upto = 0;
    {
      auto gone = c->prepare(
          "SELECT max(e) FROM (SELECT max(expires_at) AS e FROM sqlock_semaphore_holders "
          "WHERE name = ?1 AND expires_at <= ?2 UNION ALL SELECT min(max(expires_at), ?2) "
          "FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3))",
          what);
      gone.bind(1, r.name).bind(2, now).bind(3, r.nonce);
      if (gone.step() && !gone.is_null(0)) ended_upto = gone.integer(0);
      auto d1 = c->prepare("DELETE FROM sqlock_semaphore_holders WHERE name = ?1 AND expires_at <= ?2", what);
      d1.bind(1, r.name).bind(2, now).step();
      auto d2 = c->prepare(
          "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3)", what);
      d2.bind(1, r.name).bind(2, now).bind(3, r.nonce).step();
    }
    std::int64_t token = next_token(*c, v.token + 1, what);
    std::int64_t expires = now + r.ttl.count();
    {
      auto add = c->prepare(
          "INSERT INTO sqlock_semaphore_holders "
          "(name, nonce, owner, token, units, acquired_at, expires_at, metadata) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
          what);
      add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, token).bind(5, r.count);
      add.bind(6, now).bind(7, expires).bind(8, r.metadata).step();
      auto sem = c->prepare(
          "INSERT INTO sqlock_semaphores (name, sem_limit, token, changed_at) VALUES (?1, ?2, ?3, ?4) "
          "ON CONFLICT (name) DO UPDATE SET sem_limit = excluded.sem_limit, token = excluded.token, "
          "changed_at = max(changed_at, ?5)",
          what);
      sem.bind(1, r.name).bind(2, r.limit).bind(3, token).bind(4, now).bind(5, ended_upto).step();
    }
    tx.commit();
    // Room left and others queued: the next waiter in this process may fit too.
    if (v.others_queued && v.used + r.count < r.limit) registry()->notify(r.name);
    return {grant{token, from_epoch_ms(now), from_epoch_ms(expires)}, milliseconds::zero()};
  }

  std::optional<semaphore_record> inspect_semaphore(std::string_view name, deadline until) override {
    const std::string what = "inspect semaphore " + quoted(name);
    auto c = checkout(until, false, what);
    auto s = c->prepare("SELECT name, sem_limit FROM sqlock_semaphores WHERE name = ?1", what);
    s.bind(1, name);
    if (!s.step()) return std::nullopt;
    std::int64_t now = c->now_ms(what);
    return read_semaphore(*c, s.text(0), s.integer(1), now, what);
  }

  std::vector<semaphore_record> list_semaphores(const list_filter& f, deadline until) override {
    const std::string what = "list semaphores";
    auto c = checkout(until, false, what);
    // One read transaction: every row of the list comes from the same snapshot.
    auto begin = c->prepare("BEGIN", what);
    begin.step();
    struct end_read {
      connection& c;
      ~end_read() { sqlite3_exec(c.get(), "COMMIT", nullptr, nullptr, nullptr); }
    } done{*c};
    std::int64_t now = c->now_ms(what);
    auto s = c->prepare(
        "SELECT s.name, s.sem_limit FROM sqlock_semaphores s WHERE s.name >= ?1 "
        "AND (?2 IS NULL OR s.name < ?2) AND (?3 = 0 OR (?3 = 1) = EXISTS (SELECT 1 FROM "
        "sqlock_semaphore_holders h WHERE h.name = s.name AND h.expires_at > ?4)) "
        "ORDER BY s.name LIMIT ?5",
        what);
    s.bind(1, f.prefix);
    auto upper = prefix_upper_bound(f.prefix);
    if (f.prefix.empty() || upper.empty())
      s.bind_null(2);
    else
      s.bind(2, upper);
    s.bind(3, std::int64_t{f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2});
    s.bind(4, now);
    s.bind(5, f.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(f.limit));
    std::vector<std::pair<std::string, std::int64_t>> names;
    while (s.step()) names.emplace_back(s.text(0), s.integer(1));
    std::vector<semaphore_record> out;
    out.reserve(names.size());
    for (auto& [name, limit] : names) out.push_back(read_semaphore(*c, name, limit, now, what));
    return out;
  }

  std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                      deadline until) override {
    const std::string what = "force release semaphore " + quoted(name);
    std::size_t ended;
    {
      auto c = checkout(until, false, what);
      write_transaction tx(*c, what);
      std::int64_t now = c->now_ms(what);
      auto s = c->prepare(
          "UPDATE sqlock_semaphore_holders SET expires_at = ?1, forced = 1 "
          "WHERE name = ?2 AND (?3 = 0 OR token = ?3) AND expires_at > ?1",
          what);
      s.bind(1, now).bind(2, name).bind(3, token).step();
      ended = static_cast<std::size_t>(sqlite3_changes(c->get()));
      tx.commit();
    }
    for (std::size_t i = 0; i < ended; ++i) registry()->notify(name);
    return ended;
  }

  bool force_release(std::string_view name, deadline until) override {
    const std::string what = "force release " + quoted(name);
    // nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
    return end_lease(
        "UPDATE sqlock_locks SET expires_at = ?1, nonce = '' WHERE name = ?2 AND expires_at > ?1",
        name, {}, nullptr, until, what);
  }

  std::optional<lock_record> inspect(std::string_view name, deadline until) override {
    const std::string what = "inspect " + quoted(name);
    auto c = checkout(until, false, what);
    auto s = c->prepare(
        "SELECT name, owner, metadata, token, acquired_at, expires_at, "
        "expires_at - CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) "
        "FROM sqlock_locks WHERE name = ?1",
        what);
    s.bind(1, name);
    if (!s.step()) return std::nullopt;
    return read_record(s);
  }

  std::vector<lock_record> list(const list_filter& f, deadline until) override {
    const std::string what = "list";
    auto c = checkout(until, false, what);
    std::int64_t now = c->now_ms(what);
    auto s = c->prepare(
        "SELECT name, owner, metadata, token, acquired_at, expires_at, expires_at - ?1 "
        "FROM sqlock_locks WHERE name >= ?2 AND (?3 IS NULL OR name < ?3) "
        "AND (?4 = 0 OR (?4 = 1 AND expires_at > ?1) OR (?4 = 2 AND expires_at <= ?1)) "
        "ORDER BY name LIMIT ?5",
        what);
    s.bind(1, now).bind(2, f.prefix);
    auto upper = prefix_upper_bound(f.prefix);
    if (f.prefix.empty() || upper.empty())
      s.bind_null(3);
    else
      s.bind(3, upper);
    s.bind(4, std::int64_t{f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2});
    s.bind(5, f.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(f.limit));
    std::vector<lock_record> out;
    while (s.step()) out.push_back(read_record(s));
    return out;
  }

  std::size_t purge(milliseconds free_for, deadline until) override {
    const std::string what = "purge";
    // Tokens come from the counter row, never from a deleted lock row, so deleting rows can
    // never let a later grant take a smaller token; no minimum horizon is needed here.
    // Small batches keep each write transaction (and so acquirers' wait) short.
    constexpr std::int64_t batch = 500;
    std::size_t total = 0;
    std::string after;  // batches walk the key in name order; names are never empty
    auto c = checkout(until, false, what);
    for (;;) {
      write_transaction tx(*c, what);
      std::int64_t now = c->now_ms(what);
      std::string first, last;
      std::int64_t n = 0;
      {
        auto pick = c->prepare(
            "SELECT min(name), max(name), count(*) FROM (SELECT name FROM sqlock_locks "
            "WHERE name > ?1 AND expires_at <= ?2 ORDER BY name LIMIT ?3)",
            what);
        pick.bind(1, after).bind(2, now - free_for.count()).bind(3, batch);
        pick.step();
        n = pick.integer(2);
        if (n > 0) {
          first = pick.text(0);
          last = pick.text(1);
        }
      }
      if (n > 0) {
        // Within one write transaction the range [first, last] holds exactly the rows picked.
        auto del = c->prepare(
            "DELETE FROM sqlock_locks WHERE name >= ?1 AND name <= ?2 AND expires_at <= ?3", what);
        del.bind(1, first).bind(2, last).bind(3, now - free_for.count());
        del.step();
        after = last;
      }
      tx.commit();
      total += static_cast<std::size_t>(n);
      if (n < batch || steady::now() >= until) break;
    }
    // Semaphores idle for free_for: no holder or ticket row ended later, and none of the rows
    // already deleted (changed_at) either.
    for (;;) {
      write_transaction tx(*c, what);
      std::int64_t horizon = c->now_ms(what) - free_for.count();
      std::vector<std::string> names;
      {
        auto pick = c->prepare(
            "SELECT s.name FROM sqlock_semaphores s WHERE s.changed_at <= ?1 "
            "AND NOT EXISTS (SELECT 1 FROM sqlock_semaphore_holders h WHERE h.name = s.name "
            "AND h.expires_at > ?1) AND NOT EXISTS (SELECT 1 FROM sqlock_semaphore_tickets k "
            "WHERE k.name = s.name AND k.expires_at > ?1) ORDER BY s.name LIMIT ?2",
            what);
        pick.bind(1, horizon).bind(2, batch);
        while (pick.step()) names.push_back(pick.text(0));
      }
      for (const auto& name : names) {
        for (const char* sql : {"DELETE FROM sqlock_semaphore_holders WHERE name = ?1",
                                "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1",
                                "DELETE FROM sqlock_semaphores WHERE name = ?1"}) {
          auto del = c->prepare(sql, what);
          del.bind(1, name).step();
        }
      }
      tx.commit();
      total += names.size();
      if (static_cast<std::int64_t>(names.size()) < batch || steady::now() >= until) return total;
    }
  }

 private:
  // A pooled connection: back to the pool when done, dropped if it broke.
  struct pooled_deleter {
    sqlite_backend* owner;
    void operator()(connection* c) const noexcept { owner->give_back(c); }
  };
  using pooled = std::unique_ptr<connection, pooled_deleter>;

  pooled checkout(deadline until, bool create, const std::string& what) {
    std::unique_ptr<connection> c;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!idle_.empty()) {
        c = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (!c) {
      try {
        c = std::make_unique<connection>(location_, uri_, create, options_.sqlite_synchronous);
      } catch (const error& e) {
        throw error(e.code(), what + ": " + e.what(), kind_name, e.sqlstate());
      }
    }
    c->set_deadline(until);
    return pooled(c.release(), pooled_deleter{this});
  }

  void give_back(connection* raw) noexcept {
    std::unique_ptr<connection> c(raw);
    if (sqlite3_get_autocommit(c->get()) == 0) return;  // left mid-transaction: drop it
    try {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (idle_.size() < 8) idle_.push_back(std::move(c));
    } catch (...) {
    }
  }

  static int read_version(connection& c, const std::string& what) {
    auto t = c.prepare(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlock_schema_version'",
        what);
    t.step();
    if (t.integer(0) == 0) return 0;
    auto v = c.prepare("SELECT coalesce(max(version), 0) FROM sqlock_schema_version", what);
    v.step();
    return static_cast<int>(v.integer(0));
  }

  // The next token (or fair-waiting ticket), at least `floor`. Drawn inside the write
  // transaction that grants: no other grant can interleave, and max(counter + 1, row.token + 1)
  // keeps a name's tokens increasing even if the counter was ever reset by hand.
  static std::int64_t next_token(connection& c, std::int64_t floor, const std::string& what) {
    auto next = c.prepare(
        "UPDATE sqlock_counters SET value = max(value + 1, ?1) WHERE name = 'token' "
        "RETURNING value",
        what);
    next.bind(1, floor);
    if (!next.step())
      throw error(errc::schema_mismatch, what + " on sqlite: the token counter row is missing",
                  kind_name);
    // Past 2^63 - 1 SQLite turns value + 1 into a REAL, which reads back clamped to the
    // maximum: the same token twice. The caller's write transaction rolls back on the throw.
    if (!next.is_integer(0))
      throw error(errc::schema_mismatch,
                  what + " on sqlite: the fencing token counter (sqlock_counters, name 'token') "
                         "is exhausted: no lock or semaphore can be granted until an operator "
                         "sets it below 9223372036854775807, above every token already issued "
                         "if any remain; it only gets there if it was set by hand",
                  kind_name);
    return next.integer(0);
  }

  // A semaphore as one attempt sees it (inside or outside the write transaction).
  struct semaphore_state {
    bool exists = false;
    std::int64_t limit = 0, token = 0, used = 0;
    std::optional<std::int64_t> head, mine;  // oldest other live ticket; this nonce's ticket
    bool others_queued = false;
    std::int64_t soonest = 0;  // first lapse of a holder or another ticket (epoch ms); 0: none

    bool grantable(const semaphore_request& r) const {
      if (used > 0 && limit != r.limit) return true;  // let the write transaction report it
      if (used + r.count > r.limit) return false;
      return !head || (mine && *mine < *head);  // no older live ticket
    }
    milliseconds retry_in(std::int64_t now) const {
      return soonest == 0 ? milliseconds::zero() : milliseconds{std::max<std::int64_t>(soonest - now, 1)};
    }
  };

  static semaphore_state semaphore_view(connection& c, const std::string& name,
                                        const std::string& nonce, std::int64_t now,
                                        const std::string& what) {
    semaphore_state v;
    auto sem = c.prepare("SELECT sem_limit, token FROM sqlock_semaphores WHERE name = ?1", what);
    sem.bind(1, name);
    if (!sem.step()) return v;
    v.exists = true;
    v.limit = sem.integer(0);
    v.token = sem.integer(1);
    auto h = c.prepare(
        "SELECT coalesce(sum(units), 0), min(expires_at) FROM sqlock_semaphore_holders "
        "WHERE name = ?1 AND expires_at > ?2",
        what);
    h.bind(1, name).bind(2, now);
    h.step();
    v.used = h.integer(0);
    if (!h.is_null(1)) v.soonest = h.integer(1);
    auto t = c.prepare(
        "SELECT min(CASE WHEN nonce <> ?3 THEN ticket END), min(CASE WHEN nonce = ?3 THEN ticket END), "
        "min(CASE WHEN nonce <> ?3 THEN expires_at END) FROM sqlock_semaphore_tickets "
        "WHERE name = ?1 AND expires_at > ?2",
        what);
    t.bind(1, name).bind(2, now).bind(3, nonce);
    t.step();
    if (!t.is_null(0)) v.head = t.integer(0);
    if (!t.is_null(1)) v.mine = t.integer(1);
    v.others_queued = v.head.has_value();
    if (!t.is_null(2)) v.soonest = v.soonest == 0 ? t.integer(2) : std::min(v.soonest, t.integer(2));
    return v;
  }

  static renew_result renew_holder(connection& c, std::int64_t now, const renew_request& r,
                                   const std::string& what) {
    auto up = c.prepare(
        "UPDATE sqlock_semaphore_holders SET expires_at = max(expires_at, ?1 + ?2) "
        "WHERE name = ?3 AND nonce = ?4 AND token = ?5 AND expires_at > ?1 RETURNING expires_at",
        what);
    up.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count())).bind(3, r.key.name);
    up.bind(4, r.key.nonce).bind(5, r.key.token);
    if (up.step()) return {renew_outcome::renewed, from_epoch_ms(up.integer(0))};
    // A holder row ends by expiry, release or an admin, and is deleted by a later grant:
    // missing is an ordinary end here.
    auto cur = c.prepare(
        "SELECT forced FROM sqlock_semaphore_holders WHERE name = ?1 AND nonce = ?2 AND token = ?3", what);
    cur.bind(1, r.key.name).bind(2, r.key.nonce).bind(3, r.key.token);
    if (cur.step() && cur.integer(0) != 0) return {renew_outcome::force_released, {}};
    return {renew_outcome::expired, {}};
  }

  static semaphore_record read_semaphore(connection& c, std::string name, std::int64_t limit,
                                         std::int64_t now, const std::string& what) {
    semaphore_record rec;
    rec.name = std::move(name);
    rec.limit = limit;
    auto h = c.prepare(
        "SELECT owner, metadata, token, units, acquired_at, expires_at FROM sqlock_semaphore_holders "
        "WHERE name = ?1 AND expires_at > ?2 ORDER BY token",
        what);
    h.bind(1, rec.name).bind(2, now);
    while (h.step()) {
      semaphore_holder x;
      x.owner = h.text(0);
      x.metadata = h.text(1);
      x.token = h.integer(2);
      x.count = h.integer(3);
      x.acquired_at = from_epoch_ms(h.integer(4));
      x.expires_at = from_epoch_ms(h.integer(5));
      x.expires_in = milliseconds{h.integer(5) - now};
      rec.used += x.count;
      rec.holders.push_back(std::move(x));
    }
    auto t = c.prepare(
        "SELECT owner, ticket, units, expires_at FROM sqlock_semaphore_tickets "
        "WHERE name = ?1 AND expires_at > ?2 ORDER BY ticket",
        what);
    t.bind(1, rec.name).bind(2, now);
    while (t.step())
      rec.waiters.push_back({t.text(0), t.integer(1), t.integer(2), milliseconds{t.integer(3) - now}});
    return rec;
  }

  // Runs one UPDATE that ends a lease (binding ?1 = now), then wakes local waiters.
  bool end_lease(const char* sql, std::string_view name, std::string_view nonce,
                 const std::int64_t* token, deadline until, const std::string& what) {
    bool ended;
    {
      auto c = checkout(until, false, what);
      write_transaction tx(*c, what);
      std::int64_t now = c->now_ms(what);
      auto s = c->prepare(sql, what);
      s.bind(1, now).bind(2, name);
      if (!nonce.empty()) s.bind(3, nonce);
      if (token) s.bind(4, *token);
      s.step();
      ended = sqlite3_changes(c->get()) > 0;
      tx.commit();
    }
    if (ended) registry()->notify(name);
    return ended;
  }

  std::shared_ptr<watch_registry> registry() {
    std::lock_guard<std::mutex> lock(registry_mu_);
    if (!registry_) {
      struct stat st{};
      auto path = path_of(location_, uri_);
      if (::stat(path.c_str(), &st) == 0)
        registry_ = registry_for(std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
      else
        return registry_for("path:" + path);  // not created yet: do not pin this key
    }
    return registry_;
  }

  const std::string location_;
  const bool uri_;
  const backend_options options_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::mutex registry_mu_;
  std::shared_ptr<watch_registry> registry_;
};

}  // namespace

std::shared_ptr<backend> make_sqlite_backend(const std::string& location, bool uri,
                                             const backend_options& options) {
  return std::make_shared<sqlite_backend>(location, uri, options);
}

}  // namespace sqlock::detail
