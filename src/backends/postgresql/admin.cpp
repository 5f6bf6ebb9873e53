// SPDX-License-Identifier: Apache-2.0
// Administration in the PostgreSQL backend: schema_version, migrate (one transaction per
// migration, serialised by an advisory lock), the live-lease check of a down step, and purge.

#include <thread>

#include "backends/common/backend_common.hpp"
#include "backends/common/migrations.hpp"
#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/errors.hpp"
#include "backends/postgresql/json.hpp"

namespace sqlock::detail::pg {

int postgresql_backend::schema_version(deadline until) {
  const std::string what = "read schema version";
  auto c = checkout(until, what);
  auto r = run(*c, what, nullptr, sql().version, {options_.schema}, until);
  if (r.text(0, 0) == "off" && !warned_sync_.exchange(true))
    log(log_level::warn,
        "postgresql: the server runs with synchronous_commit=off: a crash can lose the last "
        "grants and hand out their fencing tokens again; set synchronous_commit=on for "
        "sqlock's role or database");
  if (!r.boolean(0, 1)) return 0;
  auto v = run(*c, what, nullptr, sql().read_version, {}, until);
  int version = static_cast<int>(v.integer(0, 0));
  if (version > 0) {
    std::string seq = r.null(0, 2) ? "" : r.text(0, 2);
    if (seq != "bigint false 1")
      throw error(errc::schema_mismatch,
                  "postgresql: sequence " + sql().schema_ident +
                      ".sqlock_token_seq must be bigint, NO CYCLE, CACHE 1 (found: " +
                      (seq.empty() ? std::string("none") : seq) +
                      "); fencing tokens would not be monotonic",
                  kind_name);
  }
  return version;
}

int postgresql_backend::migrate(int target, deadline until) {
  return migrate_with(target, {}, until);
}

int postgresql_backend::migrate_with(int target, const migrate_options& options, deadline until) {
  const std::string what = "migrate";
  check_migration_target(kind_name, target);
  auto c = checkout(until, what);
  const auto& s = sql();
  for (;;) {
    // One transaction per migration; concurrent runners serialise on a transaction-scoped
    // advisory lock and re-read the version inside it.
    struct rollback_guard {
      connection& c;
      deadline until;
      bool done = false;
      ~rollback_guard() {
        if (done || c.broken()) return;
        try {
          c.exec_simple("rollback", "ROLLBACK", until);
        } catch (...) {
        }
      }
    } guard{*c, until};
    c->exec_simple(what, s.migrate_begin, until);
    auto exists = run(*c, what, nullptr, s.schema_exists, {options_.schema}, until);
    if (!exists.boolean(0, 0)) c->exec_simple(what, s.create_schema, until);
    c->exec_simple(what, s.set_search_path, until);
    auto st = run(*c, what, nullptr, s.version, {options_.schema}, until);
    int v = 0;
    if (st.boolean(0, 1))
      v = static_cast<int>(run(*c, what, nullptr, s.read_version, {}, until).integer(0, 0));
    if (const auto step = next_migration_step(kind_name, v, target)) {
      if (!step->up) refuse_live_leases(*c, *step, target, options, until);
      c->exec_simple(step->describe(), step->sql(), until);
      if (step->deletes_version())
        run(*c, what, nullptr, s.delete_version, {std::to_string(step->m->version)}, until);
    }
    c->exec_simple(what, "COMMIT", until);
    guard.done = true;
    if (v == target) return v;
  }
}

// Inside a down step's transaction, on the way to `target`: the live lock leases
// (when the steps to `target` drop the lock table) and semaphore holders (when they drop the
// semaphore tables). Dropping them would let the next grant after `migrate up` reuse small
// tokens while their holders still work. Throws unless `options.force`, which only warns.
void postgresql_backend::refuse_live_leases(connection& c, const migration_step& step, int target,
                                            const migrate_options& options, deadline until) {
  const std::string what = "migrate down: count live leases";
  const bool locks = step.drops_locks(target), holders = step.drops_holders(target);
  if (!locks && !holders) return;
  // The tables' strongest lock before counting: no grant can commit between the count and
  // the drop. ACCESS EXCLUSIVE (not SHARE ROW EXCLUSIVE) because the DROP needs it anyway,
  // and upgrading a weaker lock later could deadlock with a fenced transaction that holds a
  // row lock and then renews. Released with the transaction, also when refused.
  c.exec_simple(what, lock_for_drop(locks, holders), until);
  live_leases live;
  auto count = [&](const char* table, const char* label) {
    auto r = run(c, what, nullptr, count_live(table), {}, until);
    for (int i = 0; i < r.rows(); ++i) live.add(label, r.text(i, 1), r.integer(i, 2), r.text(i, 3));
    live.total(r.rows() ? r.integer(0, 0) : 0);
  };
  if (locks) count("sqlock_locks", "lock");
  if (holders) count("sqlock_semaphore_holders", "semaphore");
  if (auto warning = live.verdict(kind_name, step.m->version, options.force); !warning.empty())
    log(log_level::warn, warning);
}

std::size_t postgresql_backend::purge(milliseconds free_for, deadline until) {
  const std::string what = "purge";
  // Tokens stay monotonic across purge: a fresh INSERT draws its token before its conflict
  // check, so an insert stalled between drawing and inserting could otherwise land, after
  // the row was deleted, with a token smaller than the deleted row's. Each batch therefore
  // first takes SHARE ROW EXCLUSIVE on the table, which conflicts with the ROW EXCLUSIVE lock
  // every INSERT/UPDATE takes before evaluating anything: it waits until every in-flight
  // writer (including any insert that already drew a token) has committed, and new writers
  // wait for the batch (a few ms). lock_timeout keeps acquirers from queueing behind us for
  // long: if the lock is not granted quickly we retry later. Rows locked by a fenced
  // transaction are skipped.
  constexpr int batch = purge_batch;
  auto c = checkout(until, what);
  const std::string& lock_table = sql().purge_begin;
  // Batches walk the primary key in name order from where the last one stopped (see
  // statements::purge_delete).
  const std::string& delete_batch = sql().purge_delete;
  const std::string ms = std::to_string(free_for.count());
  // One batch in its own transaction; lock timeouts, serialization failures and deadlocks
  // roll it back and retry it (bounded), anything else throws.
  int attempt = 0;
  auto in_transaction = [&](const std::string& begin, const auto& body) -> std::size_t {
    for (;;) {
      try {
        c->exec_simple(what, begin, until);
        std::size_t n = body();
        c->exec_simple(what, "COMMIT", until);
        return n;
      } catch (const error& e) {
        if (!c->broken() && c->in_transaction()) {
          try {
            c->exec_simple(what, "ROLLBACK", until);
          } catch (...) {
          }
        }
        bool busy = e.sqlstate() == "55P03" || retryable(e.sqlstate());
        if (!busy || ++attempt > 20 || steady::now() + milliseconds{50} >= until) throw;
        std::this_thread::sleep_for(jitter(milliseconds{5}, milliseconds{50}));
      }
    }
  };
  std::string after;  // names are never empty: '' precedes them all
  std::size_t total = 0;
  for (;;) {
    std::size_t n = in_transaction(lock_table, [&] {
      auto rs = run(*c, what, nullptr, delete_batch, {ms, after}, until);
      auto k = static_cast<std::size_t>(rs.integer(0, 0));
      if (k > 0) after = rs.text(0, 1);
      return k;
    });
    total += n;
    if (steady::now() >= until) return total;
    if (n < static_cast<std::size_t>(batch)) break;
  }

  // Semaphores. No table lock and no horizon beyond free_for are needed here: a
  // semaphore's tokens are drawn inside sqlock_semaphore_acquire AFTER it locked the
  // semaphore row (FOR UPDATE), never before, and a deleted row is re-created by the next
  // grant with GREATEST(nextval, 0 + 1), a value the sequence never handed out before. So a
  // grant either finished before our row lock (and its live holder keeps the semaphore), or
  // waits for our commit and then draws a fresh token. Each batch locks its candidates
  // (SKIP LOCKED: a grant in progress keeps its semaphore), then checks them again in a new
  // snapshot and deletes them with their lapsed holder and ticket rows.
  after.clear();
  const std::string& begin_sem = sql().sem_purge_begin;
  for (;;) {
    std::size_t locked = 0;
    std::size_t n = in_transaction(begin_sem, [&] {
      auto cand =
          run(*c, what, nullptr, sql().sem_purge_lock, {ms, after, std::to_string(batch)}, until);
      locked = static_cast<std::size_t>(cand.rows());
      if (locked == 0) return std::size_t{0};
      std::string names = "[";
      for (int i = 0; i < cand.rows(); ++i) {
        if (i) names += ',';
        append_json_string(names, cand.text(i, 0));
      }
      names += ']';
      auto d = run(*c, what, nullptr, sql().sem_purge_delete, {ms, names}, until);
      after = cand.text(cand.rows() - 1, 0);
      return static_cast<std::size_t>(d.integer(0, 0));
    });
    total += n;
    if (steady::now() >= until) return total;
    if (locked < static_cast<std::size_t>(batch)) break;
  }
  // Lapsed holder and ticket rows left without their semaphore row (not counted: they are
  // not semaphores).
  for (;;) {
    auto rs = run(*c, what, nullptr, sql().sem_purge_orphans, {ms, std::to_string(batch)}, until);
    if (rs.integer(0, 0) < batch && rs.integer(0, 1) < batch) break;
    if (steady::now() >= until) break;
  }
  return total;
}

}  // namespace sqlock::detail::pg
