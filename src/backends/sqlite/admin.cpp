// SPDX-License-Identifier: Apache-2.0
// The SQLite backend's schema administration (schema_version, migrate, with the check that a
// down step drops no live lease) and purge.

#include <sys/stat.h>

#include "backends/common/backend_common.hpp"
#include "backends/common/migrations.hpp"
#include "backends/common/rows.hpp"
#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/statements.hpp"

namespace sqlock::detail::sqlite {

int sqlite_backend::schema_version(deadline until) {
  const std::string what = "read schema version";
  if (!uri_) {
    struct stat st {};
    if (::stat(location_.c_str(), &st) != 0) return 0;  // only migrate creates the file
  }
  auto c = checkout(until, false, what);
  return read_version(*c, what);
}

int sqlite_backend::migrate(int target, deadline until) { return migrate_with(target, {}, until); }

int sqlite_backend::migrate_with(int target, const migrate_options& options, deadline until) {
  const std::string what = "migrate";
  check_migration_target(kind_name, target);
  auto c = checkout(until, true, what);
  c->use_wal(what);  // a new or foreign file: the connection did not set it
  // One transaction per migration; concurrent runners serialise on BEGIN IMMEDIATE and
  // re-read the version inside it.
  for (;;) {
    write_transaction tx(*c, what);
    const int v = read_version(*c, what);
    const auto step = next_migration_step(kind_name, v, target);
    if (!step) {
      tx.commit();
      return v;
    }
    if (!step->up) refuse_live_leases(*c, *step, target, options);
    c->exec(step->sql(), step->describe());
    if (step->deletes_version()) {
      auto s = c->prepare(sql::delete_schema_version, what);
      s.bind(1, std::int64_t{step->m->version});
      s.step();
    }
    tx.commit();
  }
}

// Inside a down step's write transaction (BEGIN IMMEDIATE: no grant can commit until it
// ends), on the way to `target`: the live lock leases (when the steps to `target`
// drop the lock table) and semaphore holders (when they drop the semaphore tables). Dropping
// them would let the next grant after `migrate up` reuse small tokens while their holders
// still work. Throws unless `options.force`, which only warns.
void sqlite_backend::refuse_live_leases(connection& c, const migration_step& step, int target,
                                        const migrate_options& options) {
  const std::string what = "migrate down: count live leases";
  const bool locks = step.drops_locks(target), holders = step.drops_holders(target);
  live_leases live;
  const std::int64_t now = c.now_ms(what);
  if (locks) count_live_leases(c, sql::count_live_locks, now, "lock", live, what);
  if (holders) count_live_leases(c, sql::count_live_holders, now, "semaphore", live, what);
  auto warning = live.verdict(kind_name, step.m->version, options.force);
  if (warning.empty() || !options_.log) return;
  try {
    options_.log(log_level::warn, warning);
  } catch (...) {
  }
}

int sqlite_backend::read_version(connection& c, const std::string& what) {
  auto t = c.prepare(sql::has_schema_table, what);
  t.step();
  if (t.integer(0) == 0) return 0;
  auto v = c.prepare(sql::read_schema_version, what);
  v.step();
  return static_cast<int>(v.integer(0));
}

std::size_t sqlite_backend::purge(milliseconds free_for, deadline until) {
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
      auto pick = c->prepare(sql::purge_pick_locks, what);
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
      auto del = c->prepare(sql::purge_delete_locks, what);
      del.bind(1, first).bind(2, last).bind(3, now - free_for.count());
      del.step();
      after = last;
    }
    tx.commit();
    total += static_cast<std::size_t>(n);
    if (n < batch || steady::now() >= until) break;
  }
  // Lock tickets lapsed that long: a grant or release of their name drops them, but a name
  // nobody touches again keeps them. Not counted (they are no lock rows).
  {
    write_transaction tx(*c, what);
    auto del = c->prepare(sql::purge_delete_waiters, what);
    del.bind(1, c->now_ms(what) - free_for.count());
    del.step();
    tx.commit();
  }
  // Semaphores idle for free_for: no holder or ticket row ended later, and none of the rows
  // already deleted (changed_at) either.
  for (;;) {
    write_transaction tx(*c, what);
    std::int64_t horizon = c->now_ms(what) - free_for.count();
    std::vector<std::string> names;
    {
      auto pick = c->prepare(sql::purge_pick_semaphores, what);
      pick.bind(1, horizon).bind(2, batch);
      while (pick.step()) names.push_back(pick.text(0));
    }
    for (const auto& name : names) {
      for (const char* text :
           {sql::purge_delete_holders, sql::purge_delete_tickets, sql::purge_delete_semaphore}) {
        auto del = c->prepare(text, what);
        del.bind(1, name).step();
      }
    }
    tx.commit();
    total += names.size();
    if (static_cast<std::int64_t>(names.size()) < batch || steady::now() >= until) return total;
  }
}

}  // namespace sqlock::detail::sqlite
