// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend's administrative statements: purge, catalog reads and migrations. A
// part of the constructor of `statements` (statements.cpp).

#include "backends/postgresql/statements.hpp"

namespace sqlock::detail::pg {
namespace {

// Serialises concurrent migrators of every schema of one database (transaction-scoped, so safe
// through PgBouncer). 'sqlock' in ASCII.
constexpr const char* migrate_lock_key = "126905076458347";

}  // namespace

void statements::admin_statements() {
  // ---- Purge (purge() in admin.cpp) ----
  //
  // Of locks: each batch is a transaction that first locks the table (why: see purge()), then
  // deletes up to purge_batch lapsed rows. $1 free_for ms, $2 the last name of the previous
  // batch. Batches walk the primary key in name order from where the last one stopped:
  // rescanning from the start stepped over every dead row of earlier batches (53 ms batches at
  // 10^6 rows, measured), all while holding the table lock.
  purge_begin = "BEGIN; SET LOCAL lock_timeout = '100ms'; LOCK TABLE " + locks +
                " IN SHARE ROW EXCLUSIVE MODE";
  purge_delete = "WITH d AS (DELETE FROM " + locks + " WHERE name IN (SELECT name FROM " + locks +
                 " WHERE name > $2::text AND expires_at <= now() - $1::bigint * "
                 "interval '1 millisecond' ORDER BY name LIMIT " +
                 std::to_string(purge_batch) +
                 " FOR UPDATE SKIP LOCKED) RETURNING name) SELECT count(*), max(name) FROM d";
  sem_purge_begin = "BEGIN; SET LOCAL lock_timeout = '100ms'";
  // Purge of semaphores, in a transaction per batch (see purge()). $1 free_for ms.
  // 1. Lock candidates: no holder or ticket row live within the horizon, changed_at before
  //    it. $2 the last name of the previous batch.
  const std::string horizon = "now() - $1::bigint * interval '1 millisecond'";
  const std::string idle = "s.changed_at <= " + horizon + " AND NOT EXISTS (SELECT 1 FROM " +
                           holders + " h WHERE h.name = s.name AND h.expires_at > " + horizon +
                           ") AND NOT EXISTS "
                           "(SELECT 1 FROM " +
                           tickets + " k WHERE k.name = s.name AND k.expires_at > " + horizon + ")";
  sem_purge_lock = "SELECT s.name FROM " + semaphores + " s WHERE s.name > $2::text AND " + idle +
                   " ORDER BY s.name LIMIT $3::bigint FOR UPDATE OF s SKIP LOCKED";
  // 2. With the candidates locked, check again in a NEW snapshot and delete. The first
  //    statement's FOR UPDATE re-checks a row changed after its snapshot against the newest
  //    row version, but its subqueries still read the old snapshot: a grant that committed
  //    in between could pass that check. The second statement's snapshot is taken after the
  //    locks were granted, so it sees every grant (grants lock the semaphore row until
  //    they commit), and no new grant can start on a locked row. $2: json array of the
  //    locked names. Holder and ticket rows locked by someone else (a fenced transaction on
  //    a lapsed holder) are skipped; the orphan sweep deletes them later.
  sem_purge_delete =
      "WITH d AS (DELETE FROM " + semaphores +
      " s WHERE s.name IN (SELECT "
      "json_array_elements_text($2::json)) AND " +
      idle +
      " RETURNING s.name), "
      "dh AS (DELETE FROM " +
      holders +
      " h WHERE (h.name, h.nonce) IN (SELECT x.name, "
      "x.nonce FROM " +
      holders +
      " x WHERE x.name IN (SELECT name FROM d) "
      "FOR UPDATE SKIP LOCKED) RETURNING 1), "
      "dt AS (DELETE FROM " +
      tickets +
      " k WHERE (k.name, k.nonce) IN (SELECT x.name, "
      "x.nonce FROM " +
      tickets +
      " x WHERE x.name IN (SELECT name FROM d) "
      "FOR UPDATE SKIP LOCKED) RETURNING 1) "
      "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM dh), (SELECT count(*) FROM dt)";
  // 3. Holder and ticket rows lapsed beyond the horizon whose semaphore row is gone (skipped
  //    above, or a ticket taken while its semaphore was purged). Harmless meanwhile: a grant
  //    re-creates the semaphore row and deletes lapsed rows itself. Autocommit.
  sem_purge_orphans = "WITH dh AS (DELETE FROM " + holders +
                      " h WHERE (h.name, h.nonce) IN (SELECT x.name, "
                      "x.nonce FROM " +
                      holders + " x WHERE x.expires_at <= " + horizon +
                      " AND NOT EXISTS (SELECT 1 FROM " + semaphores +
                      " s WHERE s.name = x.name) "
                      "LIMIT $2::bigint FOR UPDATE SKIP LOCKED) RETURNING 1), "
                      "dt AS (DELETE FROM " +
                      tickets +
                      " k WHERE (k.name, k.nonce) IN (SELECT x.name, "
                      "x.nonce FROM " +
                      tickets + " x WHERE x.expires_at <= " + horizon +
                      " AND NOT EXISTS (SELECT 1 FROM " + semaphores +
                      " s WHERE s.name = x.name) "
                      "LIMIT $2::bigint FOR UPDATE SKIP LOCKED) RETURNING 1) "
                      "SELECT (SELECT count(*) FROM dh), (SELECT count(*) FROM dt)";
  notify = "SELECT pg_notify($1::text, $2::text)::text";
  // Catalog reads, independent of search_path and readable by any role.
  version =
      "SELECT current_setting('synchronous_commit'), "
      "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
      "ON n.oid = c.relnamespace WHERE n.nspname = $1::text "
      "AND c.relname = 'sqlock_schema_version'), "
      "(SELECT format_type(s.seqtypid, NULL) || ' ' || s.seqcycle::text || ' ' || "
      "s.seqcache::text FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c "
      "ON c.oid = s.seqrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = $1::text AND c.relname = 'sqlock_token_seq')";
  read_version = "SELECT coalesce(max(version), 0) FROM " + schema_ident + ".sqlock_schema_version";

  // ---- Migrations (migrate_with in admin.cpp), each step in one transaction ----
  migrate_begin = "BEGIN; SELECT pg_advisory_xact_lock(" + std::string(migrate_lock_key) + ")";
  schema_exists =
      "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
      "WHERE nspname = $1::text)";
  create_schema = "CREATE SCHEMA IF NOT EXISTS " + schema_ident;
  // pg_temp last: the SECURITY DEFINER function sqlock_assert_held captures this path
  // (SET search_path FROM CURRENT), and a temp table must never shadow sqlock's tables.
  set_search_path = "SET LOCAL search_path TO " + schema_ident + ", pg_temp";
  delete_version =
      "DELETE FROM " + schema_ident + ".sqlock_schema_version WHERE version = $1::integer";
}

// A down step's check for live leases (refuse_live_leases in admin.cpp). The tables are named
// without their schema: the step's transaction set search_path to it (set_search_path).
std::string lock_for_drop(bool locks, bool holders) {
  return std::string("LOCK TABLE ") + (locks ? "sqlock_locks" : "") +
         (locks && holders ? ", " : "") + (holders ? "sqlock_semaphore_holders" : "") +
         " IN ACCESS EXCLUSIVE MODE";
}

std::string count_live(const char* table) {
  return std::string("SELECT count(*) OVER (), name, token, owner FROM ") + table +
         " WHERE expires_at > clock_timestamp() ORDER BY token LIMIT 3";
}
}  // namespace sqlock::detail::pg
