// SPDX-License-Identifier: Apache-2.0
// The SQL text of the SQLite backend's statements (declared in statements.hpp). Every
// statement that reads the clock takes it from SQLOCK_SQLITE_NOW_MS.

#include "backends/sqlite/statements.hpp"

namespace sqlock::detail::sqlite::sql {

// A renewal's new expiry (?1 now, ?2 ttl ms): later, never earlier, than the one it had; and
// for a lease with a pending release request (schema 9: revoke_token is its token), never
// past that request's deadline. Every statement that extends a lease uses it.
#define SQLOCK_RENEWED_EXPIRY                                                     \
  "CASE WHEN revoke_token = token THEN max(expires_at, min(?1 + ?2, revoke_by)) " \
  "ELSE max(expires_at, ?1 + ?2) END"

// Connection and transactions.
const char pragma_synchronous_full[] = "PRAGMA synchronous=FULL";
const char pragma_synchronous_normal[] = "PRAGMA synchronous=NORMAL";
const char pragma_journal_mode_wal[] = "PRAGMA journal_mode=WAL";
const char has_schema_table[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlock_schema_version'";
const char now[] = "SELECT " SQLOCK_SQLITE_NOW_MS;
const char begin[] = "BEGIN";
const char begin_immediate[] = "BEGIN IMMEDIATE";
const char commit[] = "COMMIT";
const char rollback[] = "ROLLBACK";

// Schema administration.
const char read_schema_version[] = "SELECT coalesce(max(version), 0) FROM sqlock_schema_version";
const char delete_schema_version[] = "DELETE FROM sqlock_schema_version WHERE version = ?1";
const char count_live_locks[] =
    "SELECT count(*) OVER (), name, token, owner FROM sqlock_locks "
    "WHERE expires_at > ?1 ORDER BY token LIMIT 3";
const char count_live_holders[] =
    "SELECT count(*) OVER (), name, token, owner FROM sqlock_semaphore_holders "
    "WHERE expires_at > ?1 ORDER BY token LIMIT 3";
const char next_token[] =
    "UPDATE sqlock_counters SET value = max(value + 1, ?1) WHERE name = 'token' "
    "RETURNING value";

// Locks.
const char lock_look[] = "SELECT expires_at - " SQLOCK_SQLITE_NOW_MS
                         ", nonce "
                         "FROM sqlock_locks WHERE name = ?1";
const char lock_current[] = "SELECT token, expires_at, nonce FROM sqlock_locks WHERE name = ?1";
const char lock_upsert[] =
    "INSERT INTO sqlock_locks (name, owner, nonce, token, acquired_at, expires_at, metadata) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
    "token = excluded.token, acquired_at = excluded.acquired_at, "
    "expires_at = excluded.expires_at, metadata = excluded.metadata";
// A lock a release handed to this attempt's nonce: extended as a renewal would be.
const char lock_extend[] =
    "UPDATE sqlock_locks SET expires_at = " SQLOCK_RENEWED_EXPIRY
    " "
    "WHERE name = ?3 AND nonce = ?4 AND expires_at > ?1 RETURNING token, acquired_at, expires_at";
const char lock_hand_off[] =
    "UPDATE sqlock_locks SET owner = ?2, nonce = ?3, token = ?4, acquired_at = ?5, "
    "expires_at = ?6, metadata = ?7 WHERE name = ?1";
const char lock_renew[] = "UPDATE sqlock_locks SET expires_at = " SQLOCK_RENEWED_EXPIRY
                          " "
                          "WHERE name = ?3 AND nonce = ?4 AND token = ?5 AND expires_at > ?1 "
                          "RETURNING expires_at, CASE WHEN revoke_token = token THEN revoke_by END";
const char lock_nonce_token[] =
    "SELECT nonce, token, coalesce(revoke_token = token, 0) FROM sqlock_locks WHERE name = ?1";
const char lock_release[] =
    "UPDATE sqlock_locks SET expires_at = ?1 "
    "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1 RETURNING token";
// Without a nonce (?5 NULL) only a lease these functions granted ('sql:...'): tokens are easy
// to guess, so another client's lease must be named by its nonce too.
const char lock_renew_by_token[] =
    "UPDATE sqlock_locks SET expires_at = " SQLOCK_RENEWED_EXPIRY
    " "
    "WHERE name = ?3 AND token = ?4 AND expires_at > ?1 "
    "AND (CASE WHEN ?5 IS NULL THEN substr(nonce, 1, 4) = 'sql:' ELSE nonce = ?5 END)";
const char lock_release_by_token[] =
    "UPDATE sqlock_locks SET expires_at = ?1 WHERE name = ?2 AND token = ?3 AND expires_at > ?1 "
    "AND (CASE WHEN ?4 IS NULL THEN substr(nonce, 1, 4) = 'sql:' ELSE nonce = ?4 END)";
const char lock_abandon[] =
    "UPDATE sqlock_locks SET expires_at = ?1 WHERE name = ?2 AND nonce = ?3 AND expires_at > ?1 "
    "RETURNING token";
// Schema 9, a release request (?1 now, ?2 name, ?3 the deadline: now + grace, ?4 token or 0 for
// any): marks the live lease with its token and a deadline never later than an earlier
// request's on this lease, and caps its expiry there (see migrations/sqlite/009_revocation).
#define SQLOCK_REQUEST_RELEASE(table)                                                              \
  "UPDATE " table                                                                                  \
  " SET revoke_by = min(coalesce(CASE WHEN revoke_token = token THEN revoke_by END, ?3), ?3), "    \
  "expires_at = min(expires_at, coalesce(CASE WHEN revoke_token = token THEN revoke_by END, ?3), " \
  "?3), revoke_token = token WHERE name = ?2 AND (?4 = 0 OR token = ?4) AND expires_at > ?1"
const char lock_request_release[] = SQLOCK_REQUEST_RELEASE("sqlock_locks");
const char holder_request_release[] = SQLOCK_REQUEST_RELEASE("sqlock_semaphore_holders");
// A live lease's metadata (an election's proclaim): never an ended lease's, which would not revive
// it anyway but would change what `show` reports of a lease that is over.
const char lock_set_metadata[] =
    "UPDATE sqlock_locks SET metadata = ?1 "
    "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?5";
// nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
const char lock_force_release[] =
    "UPDATE sqlock_locks SET expires_at = ?1, nonce = '' WHERE name = ?2 AND expires_at > ?1";
const char lock_inspect[] =
    "SELECT name, owner, metadata, token, acquired_at, expires_at, "
    "expires_at - " SQLOCK_SQLITE_NOW_MS
    " "
    "FROM sqlock_locks WHERE name = ?1";
// A lock's queue: live tickets, oldest first. ?2: the database's now (ms).
const char lock_waiters[] =
    "SELECT owner, ticket, fair, since, expires_at - ?2 FROM sqlock_lock_waiters "
    "WHERE name = ?1 AND expires_at > ?2 ORDER BY ticket";
// The last column counts the live tickets of the lock's queue.
const char lock_list[] =
    "SELECT name, owner, metadata, token, acquired_at, expires_at, expires_at - ?1, "
    "(SELECT count(*) FROM sqlock_lock_waiters w WHERE w.name = sqlock_locks.name "
    "AND w.expires_at > ?1) "
    "FROM sqlock_locks WHERE name >= ?2 AND (?3 IS NULL OR name < ?3) "
    "AND (?4 = 0 OR (?4 = 1 AND expires_at > ?1) OR (?4 = 2 AND expires_at <= ?1)) "
    "ORDER BY name LIMIT ?5";

// The lock queue. A fair attempt is refused while a live ticket of another nonce is older than
// its own live ticket (than any, when it has none); the count and the first lapse of those.
const char waiters_ahead[] =
    "SELECT count(*), min(expires_at) FROM sqlock_lock_waiters "
    "WHERE name = ?1 AND expires_at > ?2 AND nonce <> ?3 AND coalesce(ticket < (SELECT ticket "
    "FROM sqlock_lock_waiters WHERE name = ?1 AND nonce = ?3 AND expires_at > ?2), 1)";
// Keeps the ticket's number and `since`, even when it had lapsed (and was not deleted yet).
const char waiter_refresh[] =
    "UPDATE sqlock_lock_waiters SET expires_at = ?1 + ?2, attempt = ?3 WHERE name = ?4 AND nonce = "
    "?5";
const char waiter_add[] =
    "INSERT INTO sqlock_lock_waiters "
    "(name, nonce, owner, metadata, ttl_ms, fair, ticket, attempt, since, expires_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9 + ?10)";
const char waiter_head[] =
    "SELECT nonce, owner, metadata, ttl_ms, attempt FROM sqlock_lock_waiters "
    "WHERE name = ?1 AND expires_at > ?2 ORDER BY ticket LIMIT 1";
const char waiter_drop[] = "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND nonce = ?2";
// After a grant or a handoff to ?2: its ticket, and the lapsed ones of the name.
const char waiters_drop_taken[] =
    "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND (nonce = ?2 OR expires_at <= ?3)";
const char waiters_drop_lapsed[] =
    "DELETE FROM sqlock_lock_waiters WHERE name = ?1 AND expires_at <= ?2";

// Semaphores.
const char holder_release[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = ?1 "
    "WHERE name = ?2 AND nonce = ?3 AND token = ?4 AND expires_at > ?1";
const char holder_abandon[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = ?1 "
    "WHERE name = ?2 AND nonce = ?3 AND expires_at > ?1";
const char holder_renew[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = " SQLOCK_RENEWED_EXPIRY
    " "
    "WHERE name = ?3 AND nonce = ?4 AND token = ?5 AND expires_at > ?1 "
    "RETURNING expires_at, CASE WHEN revoke_token = token THEN revoke_by END";
// The SQL functions' (sql_api.cpp): a holder named by its token, and by its nonce unless these
// functions granted it ('sql:...', ?4 NULL), as lock_renew_by_token.
const char holder_renew_by_token[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = " SQLOCK_RENEWED_EXPIRY
    " "
    "WHERE name = ?3 AND token = ?4 AND expires_at > ?1 AND forced = 0 "
    "AND (CASE WHEN ?5 IS NULL THEN substr(nonce, 1, 4) = 'sql:' ELSE nonce = ?5 END)";
const char holder_by_token[] =
    "SELECT nonce FROM sqlock_semaphore_holders WHERE name = ?1 AND token = ?2 AND expires_at > ?3 "
    "AND (CASE WHEN ?4 IS NULL THEN substr(nonce, 1, 4) = 'sql:' ELSE nonce = ?4 END)";
const char holder_forced[] =
    "SELECT forced, coalesce(revoke_token = token, 0) FROM sqlock_semaphore_holders "
    "WHERE name = ?1 AND nonce = ?2 AND token = ?3";
const char ticket_keep[] =
    "UPDATE sqlock_semaphore_tickets SET expires_at = ?1 + ?2, attempt = ?5 "
    "WHERE name = ?3 AND nonce = ?4 AND expires_at > ?1";
const char ticket_drop[] = "DELETE FROM sqlock_semaphore_tickets WHERE name = ?1 AND nonce = ?2";
const char ticket_add[] =
    "INSERT INTO sqlock_semaphore_tickets "
    "(name, nonce, owner, ticket, units, expires_at, metadata, ttl_ms, attempt) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
// Schema 6: a later attempt of a wait finds units a release handed to its nonce, and takes them
// as a renewal would (never shortening the lease).
const char holder_handed[] =
    "UPDATE sqlock_semaphore_holders SET expires_at = " SQLOCK_RENEWED_EXPIRY
    " "
    "WHERE name = ?3 AND nonce = ?4 AND expires_at > ?1 RETURNING token, acquired_at, expires_at";
// The queue a release hands room to, oldest first (ttl_ms 0: a ticket from before schema 6).
const char tickets_to_hand[] =
    "SELECT nonce, owner, units, metadata, ttl_ms, attempt FROM sqlock_semaphore_tickets "
    "WHERE name = ?1 AND expires_at > ?2 AND ttl_ms > 0 ORDER BY ticket";
const char holder_exists[] =
    "SELECT 1 FROM sqlock_semaphore_holders WHERE name = ?1 AND nonce = ?2";
const char semaphore_token[] = "UPDATE sqlock_semaphores SET token = ?2 WHERE name = ?1";
const char semaphore_ended_upto[] =
    "SELECT max(e) FROM (SELECT max(expires_at) AS e FROM sqlock_semaphore_holders "
    "WHERE name = ?1 AND expires_at <= ?2 UNION ALL SELECT min(max(expires_at), ?2) "
    "FROM sqlock_semaphore_tickets WHERE name = ?1 AND (expires_at <= ?2 OR nonce = ?3))";
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
    "ON CONFLICT (name) DO UPDATE SET sem_limit = excluded.sem_limit, token = excluded.token, "
    "changed_at = max(changed_at, ?5)";
const char semaphore_inspect[] = "SELECT name, sem_limit FROM sqlock_semaphores WHERE name = ?1";
const char semaphore_list[] =
    "SELECT s.name, s.sem_limit FROM sqlock_semaphores s WHERE s.name >= ?1 "
    "AND (?2 IS NULL OR s.name < ?2) AND (?3 = 0 OR (?3 = 1) = EXISTS (SELECT 1 FROM "
    "sqlock_semaphore_holders h WHERE h.name = s.name AND h.expires_at > ?4)) "
    "ORDER BY s.name LIMIT ?5";
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
    "WHERE name > ?1 AND expires_at <= ?2 ORDER BY name LIMIT ?3)";
const char purge_delete_locks[] =
    "DELETE FROM sqlock_locks WHERE name >= ?1 AND name <= ?2 AND expires_at <= ?3";
// Tickets lapsed for `free_for` (of names no grant or release has touched since).
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
// `since` (epoch ms; NULL: no bound), ?3 limit (-1: none), ?4 now. The recorded leases and the
// current rows' leases not recorded, in one read transaction (as PostgreSQL's one statement),
// newest grants first so that LIMIT keeps the latest.
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
    ") ORDER BY granted_at DESC, token DESC LIMIT ?3";
const char history_enabled[] =
    "SELECT coalesce((SELECT value = 'on' FROM sqlock_settings WHERE key = 'history'), 0)";
// The triggers read this row in their WHEN clause: no DDL, so no other connection must
// re-prepare its statements.
const char history_set[] =
    "INSERT INTO sqlock_settings (key, value) VALUES ('history', ?1) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const char history_purge[] =
    "DELETE FROM sqlock_history WHERE (name, kind, token) IN (SELECT name, kind, token "
    "FROM sqlock_history WHERE ended_at <= ?1 LIMIT ?2)";
// Written and deleted inside an abandon's write transaction (of a grant the client never learnt
// of), around the UPDATE that ends the lease: the trigger records it as 'lost'. Never committed.
const char history_mark_lost[] =
    "INSERT OR REPLACE INTO sqlock_settings (key, value) VALUES ('ending', 'lost')";
const char history_unmark[] = "DELETE FROM sqlock_settings WHERE key = 'ending'";

}  // namespace sqlock::detail::sqlite::sql
