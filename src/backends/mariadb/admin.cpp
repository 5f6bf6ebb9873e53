// SPDX-License-Identifier: Apache-2.0
// The MariaDB backend's schema administration (schema_version, migrate, with the check that a
// down step drops no live lease) and purge.
//
// MariaDB and MySQL commit DDL implicitly: a migration is not one transaction as on the other
// backends. Concurrent runners serialise on a named server lock (GET_LOCK, per database) and
// re-read the version under it; each step's script skips what already exists, so a step
// interrupted half way is completed by the next run.

#include "backends/common/backend_common.hpp"
#include "backends/common/migrations.hpp"
#include "backends/common/rows.hpp"
#include "backends/mariadb/backend.hpp"
#include "backends/mariadb/errors.hpp"
#include "backends/mariadb/rows.hpp"
#include "backends/mariadb/statements.hpp"

namespace sqlock::detail::mariadb {

int mariadb_backend::schema_version(deadline until) {
  const std::string what = "read schema version";
  auto c = checkout(until, what);
  return read_version(*c, what);
}

int mariadb_backend::migrate(int target, deadline until) { return migrate_with(target, {}, until); }

int mariadb_backend::migrate_with(int target, const migrate_options& options, deadline until) {
  const std::string what = "migrate";
  check_migration_target(kind_name, target);
  auto c = checkout(until, what);
  {
    // Waits server-side at most until the deadline (whole seconds, at least 1).
    auto left = std::chrono::duration_cast<std::chrono::seconds>(until - steady::now()).count();
    auto lock = c->prepare(sql::migrate_lock, what);
    lock.bind(1, std::max<std::int64_t>(1, left));
    if (!lock.step() || lock.is_null(0) || lock.integer(0) != 1)
      throw error(errc::unavailable,
                  what + " on mariadb: another migration of this database is still running",
                  kind_name);
  }
  struct unlock {
    connection& c;
    ~unlock() {
      try {
        c.prepare(sql::migrate_unlock, "migrate").step();
      } catch (...) {
        c.mark_broken();  // the server frees the lock with the session
      }
    }
  } release_lock{*c};
  for (;;) {
    const int v = read_version(*c, what);
    const auto step = next_migration_step(kind_name, v, target);
    if (!step) return v;
    if (!step->up) refuse_live_leases(*c, *step, target, options);
    c->exec(step->sql(), step->describe());
    if (step->deletes_version())
      c->prepare(sql::delete_schema_version, what).bind(1, std::int64_t{step->m->version}).run();
  }
}

// Before a down step, on the way to `target`: the live lock leases (when the steps to `target`
// drop the lock table) and semaphore holders (when they drop the semaphore tables). Dropping
// them would let the next grant after `migrate up` reuse small tokens while their holders
// still work. Throws unless `options.force`, which only warns. (DDL commits implicitly, so a
// grant can still slip in between this count and the DROP; the migration lock does not stop
// clients.)
void mariadb_backend::refuse_live_leases(connection& c, const migration_step& step, int target,
                                         const migrate_options& options) {
  const std::string what = "migrate down: count live leases";
  const bool locks = step.drops_locks(target), holders = step.drops_holders(target);
  live_leases live;
  const std::int64_t now = c.now_us(what);
  if (locks) count_live_leases(c, sql::count_live_locks, now, "lock", live, what);
  if (holders) count_live_leases(c, sql::count_live_holders, now, "semaphore", live, what);
  auto warning = live.verdict(kind_name, step.m->version, options.force);
  if (warning.empty() || !options_.log) return;
  try {
    options_.log(log_level::warn, warning);
  } catch (...) {
  }
}

int mariadb_backend::read_version(connection& c, const std::string& what) {
  {
    auto t = c.prepare(sql::has_schema_table, what);
    t.step();
    if (t.integer(0) == 0) return 0;
  }
  auto v = c.prepare(sql::read_schema_version, what);
  v.step();
  return static_cast<int>(v.integer(0));
}

std::size_t mariadb_backend::purge(milliseconds free_for, deadline until) {
  const std::string what = "purge";
  // Tokens come from the counter row, never from a deleted lock row, so deleting rows can never
  // let a later grant take a smaller token. Small batches keep each write transaction (and so
  // every other writer's wait for the counter row) short.
  constexpr std::int64_t batch = 500;
  std::size_t total = 0;
  std::string after;  // batches walk the key in name order; names are never empty
  auto c = checkout(until, what);
  for (;;) {
    write_transaction tx(*c, what);
    const std::int64_t horizon = tx.now() - us(free_for);
    std::string first, last;
    std::int64_t n = 0;
    {
      auto pick = c->prepare(sql::purge_pick_locks, what);
      pick.bind(1, after).bind(2, horizon).bind(3, batch);
      pick.step();
      n = pick.integer(2);
      if (n > 0) {
        first = pick.text(0);
        last = pick.text(1);
      }
    }
    if (n > 0) {
      // Within one write transaction the range [first, last] holds exactly the rows picked.
      c->prepare(sql::purge_delete_locks, what).bind(1, first).bind(2, last).bind(3, horizon).run();
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
    c->prepare(sql::purge_delete_waiters, what).bind(1, tx.now() - us(free_for)).run();
    tx.commit();
  }
  // Semaphores idle for free_for: no holder or ticket row ended later, and none of the rows
  // already deleted (changed_at) either.
  for (;;) {
    write_transaction tx(*c, what);
    const std::int64_t horizon = tx.now() - us(free_for);
    std::vector<std::string> names;
    {
      auto pick = c->prepare(sql::purge_pick_semaphores, what);
      pick.bind(1, horizon).bind(2, batch);
      while (pick.step()) names.push_back(pick.text(0));
    }
    for (const auto& name : names)
      for (const char* text :
           {sql::purge_delete_holders, sql::purge_delete_tickets, sql::purge_delete_semaphore})
        c->prepare(text, what).bind(1, name).run();
    tx.commit();
    total += names.size();
    if (static_cast<std::int64_t>(names.size()) < batch || steady::now() >= until) return total;
  }
}

}  // namespace sqlock::detail::mariadb
