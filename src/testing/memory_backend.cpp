// SPDX-License-Identifier: Apache-2.0
// The memory backend's clock, its construction (anonymous and named databases, the factory
// behind `memory:NAME`), what it says about itself, its schema administration (migrate, with
// the check that a down step drops no live lease) and purge.

#include <algorithm>
#include <limits>
#include <map>
#include <tuple>
#include <vector>

#include "backends/common/backend_common.hpp"
#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"
#include "testing/memory_database.hpp"
#include "util/util.hpp"

namespace sqlock::testing {

using std::chrono::milliseconds;
using std::chrono::system_clock;

// ---- clock ----

system_clock::time_point clock::now() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (frozen_at_) return *frozen_at_;
  return system_clock::now() + offset_;
}

void clock::advance(milliseconds d) {
  if (d < milliseconds::zero())
    throw error(errc::invalid_argument, "clock::advance: the clock only goes forward",
                detail::kind_name);
  system_clock::time_point before, after;
  std::vector<std::shared_ptr<const advance_hook>> hooks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (frozen_at_) {
      before = *frozen_at_;
      *frozen_at_ += d;
      after = *frozen_at_;
    } else {
      before = system_clock::now() + offset_;
      offset_ += d;
      after = before + d;
    }
    for (auto it = hooks_.begin(); it != hooks_.end();) {
      if (auto h = it->lock()) {
        hooks.push_back(std::move(h));
        ++it;
      } else {
        it = hooks_.erase(it);
      }
    }
  }
  for (const auto& h : hooks) (*h)(before, after);
}

void clock::freeze() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!frozen_at_) frozen_at_ = system_clock::now() + offset_;
}

void clock::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!frozen_at_) return;
  // Never back: a reading taken while frozen stays in the past.
  offset_ = std::max(offset_, std::chrono::duration_cast<milliseconds>(
                                  *frozen_at_ - system_clock::now() + milliseconds{1}));
  frozen_at_.reset();
}

bool clock::frozen() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frozen_at_.has_value();
}

milliseconds clock::offset() const {
  std::lock_guard<std::mutex> lock(mu_);
  return offset_;
}

std::shared_ptr<const clock::advance_hook> clock::on_advance(advance_hook hook) {
  auto h = std::make_shared<const advance_hook>(std::move(hook));
  std::lock_guard<std::mutex> lock(mu_);
  hooks_.push_back(h);
  return h;
}

// ---- the database ----

namespace detail {

memory_database::memory_database(std::string n, std::shared_ptr<testing::clock> c, int v)
    : name(std::move(n)),
      clock(c ? std::move(c) : std::make_shared<testing::clock>()),
      version(v) {}

std::int64_t memory_database::now_ms() const {
  return std::chrono::duration_cast<milliseconds>(clock->now().time_since_epoch()).count();
}

std::int64_t memory_database::next_token(std::int64_t floor, const std::string& what) {
  if (counter == std::numeric_limits<std::int64_t>::max())
    throw error(errc::schema_mismatch, what + " on memory: the fencing token counter is exhausted",
                kind_name);
  counter = std::max(counter + 1, floor);
  return counter;
}

void memory_database::require(int needed, const std::string& what) const {
  if (version >= needed) return;
  throw error(errc::schema_mismatch,
              what + " on memory: " + describe() + " has schema version " +
                  std::to_string(version) + ", which lacks its tables (run `sqlock migrate up`)",
              kind_name);
}

std::string memory_database::describe() const {
  return name.empty() ? std::string("anonymous memory database")
                      : "memory database " + sqlock::detail::quoted(name);
}

namespace {

int latest_version() { return latest_migration("sqlite"); }

// Releases are the main wake-up; this one is for leases and tickets that a clock jump made
// lapse, which nobody releases: their waiters would otherwise sleep until the expiry they
// computed before the jump (or their backoff).
void wake_lapsed(const std::weak_ptr<memory_database>& weak, std::int64_t from, std::int64_t to) {
  auto db = weak.lock();
  if (!db) return;
  std::map<std::string, int> names;  // name -> wake-ups to send
  {
    std::lock_guard<std::mutex> lock(db->mu);
    auto lapsed = [&](std::int64_t expires_at) { return expires_at > from && expires_at <= to; };
    for (const auto& [name, row] : db->locks) {
      int n = lapsed(row.expires_at) ? 1 : 0, queued = 0;
      if (auto q = db->lock_queues.find(name); q != db->lock_queues.end()) {
        for (const auto& [nonce, t] : q->second) n += lapsed(t.expires_at) ? 1 : 0;
        queued = static_cast<int>(q->second.size());
      }
      // One per queued waiter too: a fair waiter woken out of turn leaves it to the next.
      if (n > 0) names[name] += n + queued;
    }
    for (const auto& [name, sem] : db->semaphores) {
      int n = 0;
      for (const auto& [nonce, h] : sem.holders) n += lapsed(h.expires_at) ? 1 : 0;
      for (const auto& [nonce, t] : sem.tickets) n += lapsed(t.expires_at) ? 1 : 0;
      if (n > 0) names[name] += n + static_cast<int>(sem.tickets.size());
    }
  }
  for (const auto& [name, n] : names)
    for (int i = 0; i < n; ++i) db->registry.notify(name);
}

std::shared_ptr<memory_database> make_database(std::string name, const memory_options& options) {
  auto db = std::make_shared<memory_database>(std::move(name), options.clock,
                                              options.migrated ? latest_version() : 0);
  std::weak_ptr<memory_database> weak = db;
  auto ms = [](system_clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
  };
  db->advance_hook =
      db->clock->on_advance([weak, ms](system_clock::time_point from, system_clock::time_point to) {
        wake_lapsed(weak, ms(from), ms(to));
      });
  return db;
}

}  // namespace
}  // namespace detail

// ---- the backend ----

memory_backend::memory_backend(const memory_options& options, backend_options backend)
    : memory_backend(detail::make_database({}, options), std::move(backend)) {}

memory_backend::memory_backend(std::shared_ptr<detail::memory_database> db, backend_options backend)
    : db_(std::move(db)), options_(std::move(backend)) {}

memory_backend::~memory_backend() = default;

std::shared_ptr<memory_backend> memory_backend::open(const std::string& name,
                                                     const memory_options& options,
                                                     backend_options backend) {
  if (name.empty())
    throw error(errc::invalid_argument, "a memory database needs a name (memory:NAME)",
                detail::kind_name);
  // Weak: a named database lives while a backend on it does, as SQLite's shared-cache
  // in-memory databases live while a connection is open, so tests do not leak into each other.
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<detail::memory_database>> databases;
  std::shared_ptr<detail::memory_database> db;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = databases.begin(); it != databases.end();)
      it = it->second.expired() ? databases.erase(it) : std::next(it);
    auto& slot = databases[name];
    db = slot.lock();
    if (!db) {
      db = detail::make_database(name, options);
      slot = db;
    }
  }
  return std::shared_ptr<memory_backend>(new memory_backend(std::move(db), std::move(backend)));
}

const std::shared_ptr<clock>& memory_backend::clock() const noexcept { return db_->clock; }
void memory_backend::advance(milliseconds d) { db_->clock->advance(d); }
const std::string& memory_backend::name() const noexcept { return db_->name; }

std::string_view memory_backend::kind() const noexcept { return detail::kind_name; }
std::string memory_backend::describe() const { return db_->describe(); }
int memory_backend::latest_schema_version() const noexcept { return detail::latest_version(); }
bool memory_backend::wakes_other_processes() const noexcept { return true; }

std::shared_ptr<release_watch> memory_backend::watch(std::string_view name) {
  return db_->registry.watch(name);
}

void memory_backend::warn(const std::string& text) const {
  if (!options_.log || text.empty()) return;
  try {
    options_.log(log_level::warn, text);
  } catch (...) {
  }
}

int memory_backend::schema_version(deadline) {
  std::lock_guard<std::mutex> lock(db_->mu);
  return db_->version;
}

int memory_backend::migrate(int target, deadline until) { return migrate_with(target, {}, until); }

// Steps as the SQL backends do, one migration at a time, each checked as SQLite checks it
// inside its transaction: a down step that drops the lock table (to 0) or the semaphore tables
// (below 2) refuses while live leases would go with them, unless forced. What each down step
// drops follows migrations/sqlite/NNN_*.down.sql.
int memory_backend::migrate_with(int target, const migrate_options& options, deadline) {
  using sqlock::detail::next_migration_step;
  using row = std::tuple<std::string, std::int64_t, std::string>;  // name, token, owner
  if (target < 0 || target > detail::latest_version())
    throw error(errc::invalid_argument, "migrate: no schema version " + std::to_string(target),
                detail::kind_name);
  for (;;) {
    std::string warning;
    {
      std::lock_guard<std::mutex> lock(db_->mu);
      auto step = next_migration_step("sqlite", db_->version, target);
      if (!step) return db_->version;
      const int v = step->m->version;
      if (!step->up) {
        const std::int64_t now = db_->now_ms();
        sqlock::detail::live_leases live;
        // The first three by token, and how many in all (as SQLite's count_live_* read them).
        auto count = [&](const char* label, std::vector<row> rows) {
          std::sort(rows.begin(), rows.end(),
                    [](const row& a, const row& b) { return std::get<1>(a) < std::get<1>(b); });
          for (std::size_t i = 0; i < rows.size() && i < 3; ++i)
            live.add(label, std::get<0>(rows[i]), std::get<1>(rows[i]), std::get<2>(rows[i]));
          live.total(static_cast<std::int64_t>(rows.size()));
        };
        if (step->drops_locks(target)) {
          std::vector<row> rows;
          for (const auto& [name, r] : db_->locks)
            if (r.expires_at > now) rows.emplace_back(name, r.token, r.owner);
          count("lock", std::move(rows));
        }
        if (step->drops_holders(target)) {
          std::vector<row> rows;
          for (const auto& [name, s] : db_->semaphores)
            for (const auto& [nonce, h] : s.holders)
              if (h.expires_at > now) rows.emplace_back(name, h.token, h.owner);
          count("semaphore", std::move(rows));
        }
        warning = live.verdict(detail::kind_name, v, options.force);
        // The tables the down script drops.
        if (v == detail::schema_locks) {
          db_->locks.clear();
          db_->counter = 0;
        }
        if (v == detail::schema_semaphores) db_->semaphores.clear();
        if (v == detail::schema_lock_queue) db_->lock_queues.clear();
        if (v == detail::schema_semaphore_handoff)
          for (auto& [name, s] : db_->semaphores)
            for (auto& [nonce, t] : s.tickets) t.ttl_ms = t.attempt = 0, t.metadata.clear();
        db_->version = v - 1;
      } else {
        db_->version = v;
      }
    }
    warn(warning);
  }
}

std::size_t memory_backend::purge(milliseconds free_for, deadline) {
  const std::string what = "purge";
  std::lock_guard<std::mutex> lock(db_->mu);
  db_->require(detail::schema_locks, what);
  // Tokens come from the counter, never from a deleted row: deleting rows can never let a
  // later grant take a smaller token, so no minimum horizon is needed (as on SQLite).
  const std::int64_t horizon = db_->now_ms() - free_for.count();
  std::size_t total = 0;
  for (auto it = db_->locks.begin(); it != db_->locks.end();) {
    if (it->second.expires_at <= horizon) {
      it = db_->locks.erase(it);
      ++total;
    } else {
      ++it;
    }
  }
  // Lock tickets lapsed that long (not counted: they are no lock rows).
  for (auto q = db_->lock_queues.begin(); q != db_->lock_queues.end();) {
    for (auto t = q->second.begin(); t != q->second.end();)
      t = t->second.expires_at <= horizon ? q->second.erase(t) : std::next(t);
    q = q->second.empty() ? db_->lock_queues.erase(q) : std::next(q);
  }
  // Semaphores idle that long: no holder or ticket ended later, nor any deleted before.
  for (auto it = db_->semaphores.begin(); it != db_->semaphores.end();) {
    const auto& s = it->second;
    bool idle = s.changed_at <= horizon;
    for (const auto& [nonce, h] : s.holders) idle = idle && h.expires_at <= horizon;
    for (const auto& [nonce, t] : s.tickets) idle = idle && t.expires_at <= horizon;
    if (idle) {
      it = db_->semaphores.erase(it);
      ++total;
    } else {
      ++it;
    }
  }
  return total;
}

}  // namespace sqlock::testing

namespace sqlock::detail {

std::shared_ptr<backend> make_memory_backend(const std::string& name,
                                             const backend_options& options) {
  return testing::memory_backend::open(name, {}, options);
}

}  // namespace sqlock::detail
