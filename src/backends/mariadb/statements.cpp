// SPDX-License-Identifier: Apache-2.0
// The SQL text of the MariaDB backend's statements (declared in statements.hpp). Unlike SQLite's
// and PostgreSQL's, no statement here computes a renewed expiry: the write transaction holds the
// counter row and the lease's row, reads them, and writes the result it computed
// (renewed_expiry in rows.hpp), so one rule serves every path. MariaDB's UPDATE has no
// RETURNING, and MySQL's has neither.

#include "backends/mariadb/statements.hpp"

#include <functional>

#define NOW SQLOCK_MARIADB_NOW_US

namespace sqlock::detail::mariadb::sql {

// Connection and transactions. READ COMMITTED: every plain read sees the latest commit (a
// writer re-reads after taking the counter row's lock). The lock wait timeout is a backstop:
// rows other transactions may hold are locked with NOWAIT or SKIP LOCKED.
const char session_setup[] =
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; "
    "SET time_zone = '+00:00', innodb_lock_wait_timeout = 5, "
    "sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'";
// MariaDB only (MySQL has no such variable): a session left inside a transaction for 3 s (a
// client paused or cut off half way through a write) is ended by the server, which rolls it back
// and frees the token counter's row: without it, one frozen client would stop every writer on the
// database until its connection timed out (wait_timeout, 8 hours by default). sqlock's own
// transactions send their statements back to back.
const char session_setup_mariadb[] = "SET SESSION idle_transaction_timeout = 3";
const char now[] = "SELECT " NOW;
const char commit[] = "COMMIT";
const char rollback[] = "ROLLBACK";
// A write transaction's first round trip: it starts, locks the counter row and reads the clock
// once the lock is granted: SYSDATE(6) is the time it is evaluated (the session's time zone is
// UTC), where NOW() and UTC_TIMESTAMP() are the statement's start, which may be long before the
// lock was granted: a later writer would then write an earlier instant than the one before it
// (a release ending before its grant). A text query of two statements (no parameters).
const char write_lock[] =
    "START TRANSACTION; SELECT value, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', SYSDATE(6)) "
    "FROM sqlock_counters WHERE name = 'token' FOR UPDATE";
const char set_counter[] = "UPDATE sqlock_counters SET value = ?1 WHERE name = 'token'";

// Schema administration.
const char has_schema_table[] =
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
    "AND table_name = 'sqlock_schema_version'";
const char read_schema_version[] = "SELECT coalesce(max(version), 0) FROM sqlock_schema_version";
const char delete_schema_version[] = "DELETE FROM sqlock_schema_version WHERE version = ?1";
// Per database: GET_LOCK names are server-wide and at most 64 characters.
const char migrate_lock[] = "SELECT GET_LOCK(CONCAT('sqlock_migrate_', MD5(DATABASE())), ?1)";
const char migrate_unlock[] = "SELECT RELEASE_LOCK(CONCAT('sqlock_migrate_', MD5(DATABASE())))";
const char count_live_locks[] =
    "SELECT count(*) OVER (), name, token, owner FROM sqlock_locks "
    "WHERE expires_at > ?1 ORDER BY token LIMIT 3";
const char count_live_holders[] =
    "SELECT count(*) OVER (), name, token, owner FROM sqlock_semaphore_holders "
    "WHERE expires_at > ?1 ORDER BY token LIMIT 3";

// Locks.
const char lock_look[] = "SELECT expires_at - " NOW ", nonce FROM sqlock_locks WHERE name = ?1";
// Locked with NOWAIT: a fenced transaction (sqlock_assert_held) may hold the row; the writer
// holds the counter row and must not wait for it.
const char lock_row[] =
    "SELECT token, expires_at, nonce, revoke_token, revoke_by, acquired_at FROM sqlock_locks "
    "WHERE name = ?1 FOR UPDATE NOWAIT";
const char lock_upsert[] =
    "INSERT INTO sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, metadata) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON DUPLICATE KEY UPDATE owner = ?2, nonce = ?3, "
    "token = ?4, acquired_at = ?5, expires_at = ?6, metadata = ?7";
const char lock_set_expiry[] = "UPDATE sqlock_locks SET expires_at = ?1 WHERE name = ?2";
const char lock_hand_off[] =
    "UPDATE sqlock_locks SET owner = ?2, nonce = ?3, token = ?4, acquired_at = ?5, "
    "expires_at = ?6, metadata = ?7 WHERE name = ?1";
// Schema 9, a release request (?1 now, ?2 name, ?3 the deadline: now + grace, ?4 token or 0 for
// any): marks the live lease with its token and a deadline never later than an earlier
// request's on this lease, and caps its expiry there. The assignments read only columns not
// assigned before them, so MySQL's left-to-right SET and standard SQL agree.
#define SQLOCK_REQUEST_RELEASE(table)                                                        \
  "UPDATE " table                                                                            \
  " SET expires_at = LEAST(expires_at, ?3, "                                                 \
  "coalesce(CASE WHEN revoke_token = token THEN revoke_by END, ?3)), "                       \
  "revoke_by = LEAST(?3, coalesce(CASE WHEN revoke_token = token THEN revoke_by END, ?3)), " \
  "revoke_token = token WHERE name = ?2 AND (?4 = 0 OR token = ?4) AND expires_at > ?1"
const char lock_request_release[] = SQLOCK_REQUEST_RELEASE("sqlock_locks");
const char holder_request_release[] = SQLOCK_REQUEST_RELEASE("sqlock_semaphore_holders");
const char lock_set_metadata[] =
    "UPDATE sqlock_locks SET metadata = ?1 "
    "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?5";
const char lock_force_release[] =
    "UPDATE sqlock_locks SET expires_at = ?1, nonce = '' WHERE name = ?2 AND expires_at > ?1";
const char lock_inspect[] =
    "SELECT name, owner, metadata, token, acquired_at, expires_at, expires_at - " NOW
    " FROM sqlock_locks WHERE name = ?1";
const char lock_waiters[] =
    "SELECT owner, ticket, fair, since, expires_at - ?2 FROM sqlock_lock_waiters "
    "WHERE name = ?1 AND expires_at > ?2 ORDER BY ticket";
const char lock_list[] =
    "SELECT name, owner, metadata, token, acquired_at, expires_at, expires_at - ?1, "
    "(SELECT count(*) FROM sqlock_lock_waiters w WHERE w.name = l.name AND w.expires_at > ?1) "
    "FROM sqlock_locks l WHERE name >= ?2 AND (?3 IS NULL OR name < ?3) "
    "AND (?4 = 0 OR (?4 = 1 AND expires_at > ?1) OR (?4 = 2 AND expires_at <= ?1)) "
    "ORDER BY name LIMIT ?5";

namespace {
// "?a, ?b, ..." for n items of `per` parameters each, numbered from 1, each rendered by `item`.
std::string items(std::size_t n, std::size_t per,
                  const std::function<std::string(std::size_t)>& item, const char* sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out += sep;
    out += item(i * per + 1);
  }
  return out;
}
std::string p(std::size_t k) { return "?" + std::to_string(k); }
}  // namespace

// Renewal: the rows of n names (?1..?n), or of n (name, nonce) pairs. `locking`: rows locked by
// another transaction (a fenced one) are skipped, and the caller reads those again without
// locking to report them busy. The updates bind (name, expiry) or (name, nonce, expiry) tuples.
std::string renew_lock_rows(std::size_t n, bool locking) {
  return "SELECT name, nonce, token, expires_at, revoke_token, revoke_by, 0 FROM sqlock_locks "
         "WHERE name IN (" +
         items(n, 1, p) + ")" + (locking ? " FOR UPDATE SKIP LOCKED" : "");
}
std::string renew_lock_update(std::size_t n) {
  return "UPDATE sqlock_locks SET expires_at = CASE name " +
         items(
             n, 2, [](std::size_t k) { return "WHEN " + p(k) + " THEN " + p(k + 1); }, " ") +
         " END WHERE name IN (" + items(n, 2, p) + ")";
}
std::string renew_holder_rows(std::size_t n, bool locking) {
  return "SELECT name, nonce, token, expires_at, revoke_token, revoke_by, forced "
         "FROM sqlock_semaphore_holders WHERE (name, nonce) IN (" +
         items(n, 2, [](std::size_t k) { return "(" + p(k) + ", " + p(k + 1) + ")"; }) + ")" +
         (locking ? " FOR UPDATE SKIP LOCKED" : "");
}
std::string renew_holder_update(std::size_t n) {
  return "UPDATE sqlock_semaphore_holders SET expires_at = CASE " +
         items(
             n, 3,
             [](std::size_t k) {
               return "WHEN name = " + p(k) + " AND nonce = " + p(k + 1) + " THEN " + p(k + 2);
             },
             " ") +
         " END WHERE (name, nonce) IN (" +
         items(n, 3, [](std::size_t k) { return "(" + p(k) + ", " + p(k + 1) + ")"; }) + ")";
}

// The lock queue.
const char waiters_ahead[] =
    "SELECT count(*), min(expires_at) FROM sqlock_lock_waiters "
    "WHERE name = ?1 AND expires_at > ?2 AND nonce <> ?3 AND coalesce(ticket < (SELECT ticket "
    "FROM sqlock_lock_waiters WHERE name = ?1 AND nonce = ?3 AND expires_at > ?2), 1)";
const char waiter_refresh[] =
    "UPDATE sqlock_lock_waiters SET expires_at = ?1 + ?2, attempt = ?3 WHERE name = ?4 "
    "AND nonce = ?5";
const char waiter_add[] =
    "INSERT INTO sqlock_lock_waiters "
    "(name, nonce, owner, metadata, ttl_us, fair, ticket, attempt, since, expires_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9 + ?10)";
// The oldest live ticket (last column 1), else a lapsed one (0: there is something to drop),
// else no row: one statement where a release usually finds an empty queue.
const char waiter_head[] =
    "SELECT nonce, owner, metadata, ttl_us, attempt, expires_at > ?2 FROM sqlock_lock_waiters "
    "WHERE name = ?1 ORDER BY expires_at > ?2 DESC, ticket LIMIT 1";
const char waiter_drop[] = "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND nonce = ?2";
const char waiters_drop_taken[] =
    "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND (nonce = ?2 OR expires_at <= ?3)";
const char waiters_drop_lapsed[] =
    "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND expires_at <= ?2";

// Semaphores.
const char holder_row[] =
    "SELECT token, expires_at, forced, revoke_token, revoke_by, acquired_at "
    "FROM sqlock_semaphore_holders WHERE name = ?1 AND nonce = ?2 FOR UPDATE NOWAIT";
const char holder_set_expiry[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = ?1 WHERE name = ?2 AND nonce = ?3";
const char ticket_keep[] =
    "UPDATE sqlock_semaphore_tickets SET expires_at = ?1 + ?2, attempt = ?5 "
    "WHERE name = ?3 AND nonce = ?4 AND expires_at > ?1";
const char ticket_drop[] = "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND nonce = ?2";
const char ticket_add[] =
    "INSERT INTO sqlock_semaphore_tickets "
    "(name, nonce, owner, ticket, units, expires_at, metadata, ttl_us, attempt) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const char tickets_to_hand[] =
    "SELECT nonce, owner, units, metadata, ttl_us, attempt FROM sqlock_semaphore_tickets "
    "WHERE name = ?1 AND expires_at > ?2 AND ttl_us > 0 ORDER BY ticket";
const char holder_exists[] =
    "SELECT 1 FROM sqlock_semaphore_holders WHERE name = ?1 AND nonce = ?2";
const char semaphore_token[] = "UPDATE sqlock_semaphores SET token = ?2 WHERE name = ?1";
const char semaphore_ended_upto[] =
    "SELECT max(e) FROM (SELECT max(expires_at) AS e FROM sqlock_semaphore_holders "
    "WHERE name = ?1 AND expires_at <= ?2 UNION ALL SELECT LEAST(max(expires_at), ?2) "
    "FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3)) AS t";
const char holders_delete_ended[] =
    "DELETE FROM sqlock_semaphore_holders WHERE name = ?1 AND expires_at <= ?2";
const char tickets_delete_ended[] =
    "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3)";
const char holder_add[] =
    "INSERT INTO sqlock_semaphore_holders "
    "(name, nonce, owner, token, units, acquired_at, expires_at, metadata) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const char semaphore_upsert[] =
    "INSERT INTO sqlock_semaphores (name, sem_limit, token, changed_at) VALUES (?1, ?2, ?3, ?4) "
    "ON DUPLICATE KEY UPDATE sem_limit = ?2, token = ?3, changed_at = GREATEST(changed_at, ?5)";
const char semaphore_inspect[] = "SELECT name, sem_limit FROM sqlock_semaphores WHERE name = ?1";
const char semaphore_list[] =
    "SELECT s.name, s.sem_limit FROM sqlock_semaphores s WHERE s.name >= ?1 "
    "AND (?2 IS NULL OR s.name < ?2) AND (?3 = 0 OR (?3 = 1) = EXISTS (SELECT 1 FROM "
    "sqlock_semaphore_holders h WHERE h.name = s.name AND h.expires_at > ?4)) "
    "ORDER BY s.name LIMIT ?5";
// The live holders an admin call ends, locked first with NOWAIT (a fenced transaction may hold
// one): the caller retries until its deadline.
const char semaphore_lock_holders[] =
    "SELECT nonce FROM sqlock_semaphore_holders WHERE name = ?1 AND (?2 = 0 OR token = ?2) "
    "AND expires_at > ?3 FOR UPDATE NOWAIT";
const char semaphore_force_release[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = ?1, forced = 1 "
    "WHERE name = ?2 AND (?3 = 0 OR token = ?3) AND expires_at > ?1";
const char semaphore_row[] = "SELECT sem_limit, token FROM sqlock_semaphores WHERE name = ?1";
const char semaphore_usage[] =
    "SELECT coalesce(sum(units), 0), min(expires_at) FROM sqlock_semaphore_holders "
    "WHERE name = ?1 AND expires_at > ?2";
const char semaphore_queue[] =
    "SELECT min(CASE WHEN nonce <> ?3 THEN ticket END), min(CASE WHEN nonce = ?3 THEN ticket END), "
    "min(CASE WHEN nonce <> ?3 THEN expires_at END) FROM sqlock_semaphore_tickets "
    "WHERE name = ?1 AND expires_at > ?2";
const char semaphore_holders[] =
    "SELECT owner, metadata, token, units, acquired_at, expires_at FROM sqlock_semaphore_holders "
    "WHERE name = ?1 AND expires_at > ?2 ORDER BY token";
const char semaphore_tickets[] =
    "SELECT owner, ticket, units, expires_at FROM sqlock_semaphore_tickets "
    "WHERE name = ?1 AND expires_at > ?2 ORDER BY ticket";

// Purge.
const char purge_pick_locks[] =
    "SELECT min(name), max(name), count(*) FROM (SELECT name FROM sqlock_locks "
    "WHERE name > ?1 AND expires_at <= ?2 ORDER BY name LIMIT ?3) AS t";
const char purge_delete_locks[] =
    "DELETE FROM sqlock_locks WHERE name >= ?1 AND name <= ?2 AND expires_at <= ?3";
const char purge_delete_waiters[] = "DELETE FROM sqlock_lock_waiters WHERE expires_at <= ?1";
const char purge_pick_semaphores[] =
    "SELECT s.name FROM sqlock_semaphores s WHERE s.changed_at <= ?1 "
    "AND NOT EXISTS (SELECT 1 FROM sqlock_semaphore_holders h WHERE h.name = s.name "
    "AND h.expires_at > ?1) AND NOT EXISTS (SELECT 1 FROM sqlock_semaphore_tickets k "
    "WHERE k.name = s.name AND k.expires_at > ?1) ORDER BY s.name LIMIT ?2";
const char purge_delete_holders[] = "DELETE FROM sqlock_semaphore_holders WHERE name = ?1";
const char purge_delete_tickets[] = "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1";
const char purge_delete_semaphore[] = "DELETE FROM sqlock_semaphores WHERE name = ?1";

// History (schema 10, 010_history.up.sql). ?1 name ('' = every name), ?2 the horizon of
// `since` (epoch µs; NULL: no bound), ?3 limit, ?4 now. The recorded leases and the current
// rows' leases not recorded, newest grants first so that LIMIT keeps the latest.
const char history_read[] =
    "SELECT kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how FROM ("
    "SELECT h.kind, h.name, h.token, h.owner, h.metadata, h.units, h.granted_at, h.ended_at, "
    "h.ended_how FROM sqlock_history h WHERE (?1 = '' OR h.name = ?1) "
    "AND (?2 IS NULL OR h.ended_at > ?2) "
    "UNION ALL SELECT 'lock', c.name, c.token, c.owner, c.metadata, 1, c.acquired_at, "
    "c.expires_at, CASE WHEN c.expires_at > ?4 THEN 'live' WHEN c.nonce = '' THEN "
    "'force-released' WHEN c.revoke_token = c.token THEN 'revoked' ELSE 'expired' END "
    "FROM sqlock_locks c WHERE (?1 = '' OR c.name = ?1) AND (?2 IS NULL OR c.expires_at > ?2) "
    "AND NOT EXISTS (SELECT 1 FROM sqlock_history x WHERE x.name = c.name AND x.kind = 'lock' "
    "AND x.token = c.token) "
    "UNION ALL SELECT 'semaphore', c.name, c.token, c.owner, c.metadata, c.units, "
    "c.acquired_at, c.expires_at, CASE WHEN c.expires_at > ?4 THEN 'live' WHEN c.forced THEN "
    "'force-released' WHEN c.revoke_token = c.token THEN 'revoked' ELSE 'expired' END "
    "FROM sqlock_semaphore_holders c WHERE (?1 = '' OR c.name = ?1) "
    "AND (?2 IS NULL OR c.expires_at > ?2) AND NOT EXISTS (SELECT 1 FROM sqlock_history x "
    "WHERE x.name = c.name AND x.kind = 'semaphore' AND x.token = c.token)"
    ") AS t ORDER BY granted_at DESC, token DESC LIMIT ?3";
const char history_enabled[] =
    "SELECT coalesce((SELECT value = 'on' FROM sqlock_settings WHERE name = 'history'), 0)";
const char history_set[] =
    "INSERT INTO sqlock_settings (name, value) VALUES ('history', ?1) "
    "ON DUPLICATE KEY UPDATE value = ?1";
const char history_purge[] =
    "DELETE FROM sqlock_history WHERE ended_at <= ?1 ORDER BY ended_at LIMIT ?2";
// Set and cleared by an abandon's write transaction (of a grant the client never learnt of)
// around the UPDATE that ends the lease: the trigger records it as 'lost'.
const char history_mark_lost[] = "SET @sqlock_ending = 'lost'";
const char history_unmark[] = "SET @sqlock_ending = NULL";

}  // namespace sqlock::detail::mariadb::sql
