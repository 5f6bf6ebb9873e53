// The PostgreSQL backend: the only code (with connection.cpp) that talks to PostgreSQL.
//
// One round trip per operation: a grant, a renewal (of one or many leases) and a release are
// each ONE autocommit statement (no BEGIN/COMMIT); a refused attempt is answered by the same
// statement and writes nothing (no row lock, no token drawn, no WAL), except the waiter mark.
// Times are read as integer epoch microseconds computed by the server, never as text.
//
// Connections (bounded): `pool_size` (default 4) for user calls, one dedicated to renew() so
// the keepalive never queues behind user calls (a user renew borrows it when free, else a pool
// connection), and one LISTEN connection started at the first watch(): at most pool_size + 2
// per backend, plus short-lived cancel requests after a missed deadline (at most 4 per process).
//
// Every statement names sqlock's schema explicitly (quoted once with PQescapeIdentifier), so
// nothing depends on the session's search_path; no session state is relied upon, so everything
// works through PgBouncer in transaction mode (with prepared_statements = false before 1.21).

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "backends/common/backend_common.hpp"
#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"
#include "backends/common/url.hpp"
#include "util/util.hpp"
#include "backends/common/watch_registry.hpp"
#include "backends/postgresql/connection.hpp"
#include "backends/postgresql/json.hpp"

namespace sqlock::detail {
namespace {

using namespace pg;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

std::chrono::system_clock::time_point from_epoch_us(std::int64_t us) {
  return std::chrono::system_clock::time_point{
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::microseconds{us})};
}

milliseconds us_to_ms(std::int64_t us) {
  // Round toward zero; a positive remainder below 1 ms still means "held".
  return milliseconds{us / 1000};
}

// Serialises concurrent migrators of every schema of one database (transaction-scoped, so safe
// through PgBouncer). 'sqlock' in ASCII.
constexpr const char* migrate_lock_key = "126905076458347";

// A waiter marks the row for this long; it re-marks when less than half remains. Longer than
// the client's signalled backoff cap (2 s), so a waiting client re-attempts (and re-marks)
// well before its mark lapses, and an abandoned mark costs at most this long of notifying
// releases.
constexpr milliseconds waiter_mark{10000};

// The epoch-microsecond integer of a timestamptz expression, computed by the server.
std::string epoch_us(const std::string& x) {
  return "(extract(epoch from " + x + ") * 1000000)::bigint";
}

// FNV-1a, hex: stable across processes.
std::string fnv_hex(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 15; i >= 0; --i) out.push_back(hex[(h >> (i * 4)) & 0xf]);
  return out;
}

// A stable channel name per schema, short enough for an identifier (63 bytes).
std::string channel_for(const std::string& schema) { return "sqlock_" + fnv_hex(schema); }

// The statements, built once per backend from the schema name quoted by libpq.
struct statements {
  std::string schema_ident;
  std::string acquire, renew, renew_mixed, release, release_waiting, abandon, force, inspect,
      list, notify, version, read_version, inspect_watched;
  // Semaphores.
  std::string sem_acquire, sem_release, sem_release_waiting, sem_abandon, sem_force, sem_inspect,
      sem_list, sem_purge_lock, sem_purge_delete, sem_purge_orphans;
  std::string locks, semaphores, holders, tickets;  // qualified table names

  statements(const connection& c, const std::string& schema) {
    schema_ident = c.escape_identifier(schema);
    locks = schema_ident + ".sqlock_locks";
    semaphores = schema_ident + ".sqlock_semaphores";
    holders = schema_ident + ".sqlock_semaphore_holders";
    tickets = schema_ident + ".sqlock_semaphore_tickets";
    const std::string seq = "nextval(" + c.escape_literal(schema_ident + ".sqlock_token_seq") +
                            "::regclass)";
    // $1 name, $2 owner, $3 nonce, $4 metadata, $5 ttl ms, $6 waiting, $7 waiter mark ms.
    //
    // `cur` reads the row with the statement's snapshot. The INSERT runs only when that row
    // is missing or expired: a refused attempt therefore never reaches ON CONFLICT (which
    // would lock the row, wait for the holder's commit, draw a token and write WAL).
    //
    // Tokens: a fresh INSERT draws its token in the SELECT list, BEFORE the conflict check;
    // when the row exists, that value is discarded and DO UPDATE draws again while holding the
    // row lock, so of two grants of one name the later always draws later. GREATEST(.., token
    // + 1) keeps the row increasing even if the sequence were ever reset. A fresh insert's
    // early token is safe because rows only disappear through purge(), which first waits for
    // every in-flight writer (see purge below): an insert that drew its token before a row was
    // deleted has finished (and met the row) before the deletion.
    //
    // `marked`: a waiting attempt that was refused sets waiters_until, which makes the
    // holder's release notify. It writes only when the mark is missing or half spent. If the
    // row was released between our snapshot and the mark (so no notification will come), the
    // result says so and the caller retries soon.
    //
    // Neither a grant nor a mark ever waits for a row lock (issue 12): a row share-locked by
    // an open fenced transaction (sqlock_assert_held) could otherwise hold the attempt until
    // that transaction ends, and a try that should answer "held" at once would fail with a
    // timeout instead. `free` locks an expired row SKIP LOCKED before the upsert touches it (so
    // ON CONFLICT then finds it already ours), and the mark skips a locked row too. A row so
    // skipped is refused with no known expiry: the caller backs off. (A concurrent grant that
    // holds the row is skipped the same way; it is about to win anyway.)
    acquire =
        "WITH cur AS (SELECT " + epoch_us("expires_at - now()") + " AS left_us, "
        "waiters_until < now() + $7::bigint * interval '500 microseconds' AS mark_due "
        "FROM " + locks + " WHERE name = $1::text), "
        "free AS (SELECT 1 FROM " + locks + " WHERE name = $1::text AND expires_at <= now() "
        "FOR UPDATE SKIP LOCKED), "
        "granted AS (INSERT INTO " + locks + " AS l "
        "(name, owner, nonce, token, acquired_at, expires_at, metadata) "
        "SELECT $1::text, $2::text, $3::text, " + seq + ", now(), "
        "now() + $5::bigint * interval '1 millisecond', $4::text "
        "WHERE NOT EXISTS (SELECT 1 FROM cur WHERE left_us > 0) "
        "AND (NOT EXISTS (SELECT 1 FROM cur) OR EXISTS (SELECT 1 FROM free)) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
        "token = GREATEST(" + seq + ", l.token + 1), acquired_at = excluded.acquired_at, "
        "expires_at = excluded.expires_at, metadata = excluded.metadata "
        "WHERE l.expires_at <= now() "
        "RETURNING l.token, " + epoch_us("l.acquired_at") + " AS acquired_us, " +
        epoch_us("l.expires_at") + " AS expires_us), "
        "marked AS (UPDATE " + locks + " SET waiters_until = now() + $7::bigint * interval "
        "'1 millisecond' WHERE name IN (SELECT name FROM " + locks + " WHERE $6::boolean "
        "AND name = $1::text AND expires_at > now() AND waiters_until < now() + $7::bigint * "
        "interval '500 microseconds' FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT true, token, acquired_us, expires_us FROM granted "
        "UNION ALL SELECT false, cur.left_us, (SELECT count(*) FROM marked), "
        "CASE WHEN cur.mark_due THEN 1 ELSE 0 END FROM cur "
        "WHERE NOT EXISTS (SELECT 1 FROM granted)";
    // $1: json array of {i, k (0 lock, 1 semaphore holder), n (name), o (nonce), t (token),
    // ms (ttl)}. `renew` handles locks only (k is ignored): a batch without semaphore leases
    // touches no semaphore table (no plan over them, no grant on them needed); `renew_mixed`
    // renews both kinds in the same one statement.
    // Rows locked by another open transaction (a fenced transaction's share lock from
    // sqlock_assert_held or sqlock_semaphore_assert_held) are skipped, not waited for, and
    // reported busy. The other outcomes are classified from the statement's snapshot, like the
    // SQLite backend does. Columns: i, new expiry (NULL when not renewed), the row's nonce,
    // token and liveness (NULLs when there is no row), and (renew_mixed) a holder's forced flag.
    // A renewal never shortens a lease: expires_at = GREATEST(expires_at, now() + ttl). The
    // statement may reach the server long after the client gave up on it (a stalled
    // connection, a proxy that flushes late) and after a newer renewal succeeded; if the late
    // one could set a shorter expiry, the lock could pass to another client while its holder
    // still believes in the newer renewal (issue 12). Only extending keeps every successful
    // renewal's `sent + ttl` a lower bound on the row's expiry, whatever arrives later.
    // The current rows are read by LATERAL subqueries (LIMIT 1 keeps them from being flattened
    // into a join): json_to_recordset is estimated at 100 rows, and a plain LEFT JOIN was
    // planned as a hash join over a sequential scan of the whole table (4 ms per renewal at
    // 20,000 lock rows, measured; growing with the table), where this is one index probe per
    // lease.
    renew =
        "WITH req AS (SELECT * FROM json_to_recordset($1::json) "
        "AS r(i integer, n text, o text, t bigint, ms bigint)), "
        "mine AS (SELECT l.name FROM " + locks + " l JOIN req ON l.name = req.n "
        "WHERE l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
        "FOR UPDATE OF l SKIP LOCKED), "
        "renewed AS (UPDATE " + locks + " l SET expires_at = GREATEST(l.expires_at, now() + "
        "req.ms * interval '1 millisecond') FROM req WHERE l.name = req.n AND l.nonce = req.o "
        "AND l.token = req.t AND l.expires_at > now() AND l.name IN (SELECT name FROM mine) "
        "RETURNING req.i, " + epoch_us("l.expires_at") + " AS expires_us) "
        "SELECT req.i, renewed.expires_us, cur.nonce, cur.token, cur.expires_at > now() "
        "FROM req LEFT JOIN renewed ON renewed.i = req.i "
        "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at FROM " + locks +
        " c WHERE c.name = req.n LIMIT 1) cur ON true ORDER BY req.i";
    renew_mixed =
        "WITH req AS (SELECT * FROM json_to_recordset($1::json) "
        "AS r(i integer, k integer, n text, o text, t bigint, ms bigint)), "
        "mine AS (SELECT l.name FROM " + locks + " l JOIN req ON l.name = req.n "
        "WHERE req.k = 0 AND l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
        "FOR UPDATE OF l SKIP LOCKED), "
        "renewed AS (UPDATE " + locks + " l SET expires_at = GREATEST(l.expires_at, now() + "
        "req.ms * interval '1 millisecond') FROM req WHERE req.k = 0 AND l.name = req.n "
        "AND l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
        "AND l.name IN (SELECT name FROM mine) "
        "RETURNING req.i, " + epoch_us("l.expires_at") + " AS expires_us), "
        "hmine AS (SELECT h.name, h.nonce FROM " + holders + " h JOIN req "
        "ON h.name = req.n AND h.nonce = req.o WHERE req.k = 1 AND h.token = req.t "
        "AND h.expires_at > now() FOR UPDATE OF h SKIP LOCKED), "
        "hrenewed AS (UPDATE " + holders + " h SET expires_at = GREATEST(h.expires_at, now() + "
        "req.ms * interval '1 millisecond') FROM req WHERE req.k = 1 AND h.name = req.n "
        "AND h.nonce = req.o AND h.token = req.t AND h.expires_at > now() "
        "AND (h.name, h.nonce) IN (SELECT name, nonce FROM hmine) "
        "RETURNING req.i, " + epoch_us("h.expires_at") + " AS expires_us) "
        "SELECT req.i, coalesce(renewed.expires_us, hrenewed.expires_us), "
        "coalesce(cur.nonce, hcur.nonce), coalesce(cur.token, hcur.token), "
        "coalesce(cur.expires_at, hcur.expires_at) > now(), coalesce(hcur.forced, false) "
        "FROM req LEFT JOIN renewed ON renewed.i = req.i "
        "LEFT JOIN hrenewed ON hrenewed.i = req.i "
        "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at FROM " + locks +
        " c WHERE req.k = 0 AND c.name = req.n LIMIT 1) cur ON true "
        "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at, c.forced FROM " + holders +
        " c WHERE req.k = 1 AND c.name = req.n AND c.nonce = req.o LIMIT 1) hcur ON true "
        "ORDER BY req.i";
    // Release, abandon and force release notify ONLY when a waiter marked the row: a
    // notifying commit takes a server-wide lock and defeats group commit.
    //
    // Release and abandon do not wait for a row locked by another open transaction (a fenced
    // transaction holding sqlock_assert_held's share lock, possibly opened by the very thread
    // that is releasing: waiting would deadlock it). They answer rows of (ended, notified,
    // locked): a row with `locked` reports such a row, and the client then retries the release
    // in the background (backend.hpp, row_locked); `ended` says a lease was live.
    const std::string mine =
        "name = $1::text AND nonce = $2::text AND ($3::bigint IS NULL OR token = $3::bigint) "
        "AND expires_at > now()";
    const std::string notify_select =
        "SELECT true, CASE WHEN waited THEN pg_notify($4::text, $1::text)::text END, false "
        "FROM ended";
    release = "WITH target AS (SELECT name FROM " + locks + " WHERE " + mine +
              " FOR UPDATE SKIP LOCKED), "
              "ended AS (UPDATE " + locks + " SET expires_at = now() "
              "WHERE name IN (SELECT name FROM target) RETURNING waiters_until > now() AS waited) " +
              notify_select + " UNION ALL SELECT false, NULL, true FROM " + locks + " WHERE " +
              mine + " AND NOT EXISTS (SELECT 1 FROM target)";
    abandon = release;  // called with a NULL token: any lease carrying the nonce
    // The user's release first waits for the row like any UPDATE (briefly: see release()):
    // contenders' refused upserts lock it for a moment after every grant, and skipping those
    // cost 25% of grants/s under 8-client contention (A/B measured: 224-228 vs 287-313).
    release_waiting = "WITH ended AS (UPDATE " + locks + " SET expires_at = now() WHERE " + mine +
                      " RETURNING waiters_until > now() AS waited) " + notify_select;
    // nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
    // An admin's force release does wait for an open fenced transaction (bounded by its
    // deadline): that transaction is exactly what it must not break into.
    force = "WITH ended AS (UPDATE " + locks + " SET expires_at = now(), nonce = '' "
            "WHERE name = $1::text AND $2::text IS NULL AND $3::bigint IS NULL "
            "AND expires_at > now() RETURNING waiters_until > now() AS waited) " + notify_select;
    const std::string columns = "name, owner, metadata, token, " + epoch_us("acquired_at") +
                                ", " + epoch_us("expires_at") + ", " +
                                epoch_us("expires_at - now()");
    inspect = "SELECT " + columns + " FROM " + locks + " WHERE name = $1::text";
    // A byte-prefix range on the primary key (COLLATE "C"), not LIKE.
    list = "SELECT " + columns + " FROM " + locks +
           " WHERE name >= $1::text AND ($2::text IS NULL OR name < $2::text) "
           "AND ($3::integer = 0 OR ($3::integer = 1 AND expires_at > now()) "
           "OR ($3::integer = 2 AND expires_at <= now())) ORDER BY name LIMIT $4::bigint";
    // $1 name, $2 mark ms, $3 mark or not. `inspect` plus the waiter mark of the acquire
    // statement: a held row whose mark is missing or half spent is marked, so the holder's
    // release notifies. The last column says whether the snapshot asked for a mark that the
    // UPDATE (which sees the newest row) did not write: the row changed in between (released,
    // typically), and the caller reads it again rather than sleep on a stale "held". Like the
    // acquire's mark, it skips a row locked by a fenced transaction instead of waiting for it.
    inspect_watched =
        "WITH cur AS (SELECT " + columns + ", expires_at > now() AND waiters_until < now() + "
        "$2::bigint * interval '500 microseconds' AS mark_due FROM " + locks +
        " WHERE name = $1::text), "
        "marked AS (UPDATE " + locks + " SET waiters_until = now() + $2::bigint * "
        "interval '1 millisecond' WHERE name IN (SELECT name FROM " + locks + " WHERE "
        "$3::boolean AND name = $1::text AND expires_at > now() AND waiters_until < now() + "
        "$2::bigint * interval '500 microseconds' FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT cur.*, $3::boolean AND cur.mark_due AND NOT EXISTS (SELECT 1 FROM marked) "
        "FROM cur";

    // ---- Semaphores (schema 2) ----
    //
    // A grant is one call of sqlock_semaphore_acquire (002_semaphores.up.sql): it must lock
    // the semaphore row before it counts the holders, in a later snapshot, which one SQL
    // statement cannot do. The function is called with parameters only, schema-qualified; it
    // runs with the search_path fixed at its creation.
    sem_acquire =
        "SELECT granted, token, acquired_us, expires_us, retry_us FROM " + schema_ident +
        ".sqlock_semaphore_acquire($1::text, $2::bigint, $3::bigint, $4::text, $5::text, "
        "$6::text, $7::bigint, $8::boolean, $9::boolean, $10::bigint, $11::text)";
    // Releases end the holder row (expires_at = now()) and keep it: the next grant deletes
    // it, under the semaphore row's lock and skipping rows others hold.
    //
    // The wake-up reads the semaphore's mark under a share lock, taken with SKIP LOCKED. A
    // plain read would race with a waiter that marks the semaphore (another row than the one
    // released) after its own look: each statement would miss the other's uncommitted write,
    // and the waiter would sleep through the release. With the share lock: when the release
    // gets it, a later mark waits for the release's commit and the waiter's second look (in
    // sqlock_semaphore_acquire) then sees the room; when the row is locked (a waiter marking,
    // a grant or a purge batch in progress) the release does not wait but notifies anyway, as
    // it does for a vanished row. Waiting instead queued every release behind contenders'
    // grant attempts on the semaphore row, while they were refused for want of that very
    // release (8 clients, limit 1: 92 -> 118 grants/s, 155 -> 155 at limit 2; with the
    // function's unflushed refusals 147 -> 164 and 220 -> 247; A/B measured, interleaved).
    // Nothing here waits for the semaphore row, so there is no lock-order question with
    // grants (which hold it and only ever skip locked holder rows).
    //
    // $1 name, $2 nonce, $3 token (NULL: abandon, whatever the token; it also drops the
    // nonce's queue ticket), $4 channel. Rows as for locks: (ended, notified, locked).
    const std::string hmine =
        "name = $1::text AND nonce = $2::text AND ($3::bigint IS NULL OR token = $3::bigint) "
        "AND expires_at > now()";
    const std::string sem_notify =
        "sem AS (SELECT waiters_until > now() AS waited FROM " + semaphores +
        " WHERE name = $1::text AND EXISTS (SELECT 1 FROM changed) FOR SHARE SKIP LOCKED), "
        "w AS (SELECT coalesce(bool_or(waited), true) AS waited FROM sem) "
        "SELECT EXISTS (SELECT 1 FROM ended), CASE WHEN w.waited THEN pg_notify($4::text, "
        "$1::text)::text END, false FROM w WHERE EXISTS (SELECT 1 FROM changed)";
    sem_release =
        "WITH target AS (SELECT name, nonce FROM " + holders + " WHERE " + hmine +
        " FOR UPDATE SKIP LOCKED), "
        "ended AS (UPDATE " + holders + " h SET expires_at = now() FROM target "
        "WHERE h.name = target.name AND h.nonce = target.nonce RETURNING 1), "
        "gone AS (DELETE FROM " + tickets + " k WHERE $3::bigint IS NULL AND (k.name, k.nonce) "
        "IN (SELECT x.name, x.nonce FROM " + tickets + " x WHERE x.name = $1::text "
        "AND x.nonce = $2::text FOR UPDATE SKIP LOCKED) RETURNING 1), "
        "changed AS (SELECT 1 FROM ended UNION ALL SELECT 1 FROM gone), " + sem_notify +
        " UNION ALL SELECT false, NULL, true FROM " + holders + " WHERE " + hmine +
        " AND NOT EXISTS (SELECT 1 FROM target)";
    sem_abandon = sem_release;  // called with a NULL token
    sem_release_waiting =
        "WITH ended AS (UPDATE " + holders + " SET expires_at = now() WHERE " + hmine +
        " RETURNING 1), changed AS (SELECT 1 FROM ended), " + sem_notify;
    // $1 name, $2 token (0: every live holder), $3 channel. Waits for a fenced transaction,
    // like the lock's force release. `forced` tells the holder why its renewal failed. The
    // wake-up as for a release (the count, an aggregate, makes every holder row ended first).
    sem_force =
        "WITH ended AS (UPDATE " + holders + " SET expires_at = now(), forced = true "
        "WHERE name = $1::text AND ($2::bigint = 0 OR token = $2::bigint) "
        "AND expires_at > now() RETURNING 1), "
        "n AS (SELECT count(*) AS n FROM ended), "
        "sem AS (SELECT waiters_until > now() AS waited FROM " + semaphores +
        " WHERE name = $1::text AND (SELECT n FROM n) > 0 FOR SHARE SKIP LOCKED) "
        "SELECT n.n, CASE WHEN n.n > 0 AND coalesce((SELECT bool_or(waited) FROM sem), true) "
        "THEN pg_notify($3::text, $1::text)::text END FROM n";
    // One statement (one snapshot) answers a semaphore with its live holders and tickets, as
    // flat rows ordered by name: (part 0: the semaphore, its limit and used units; part 1: a
    // holder; part 2: a waiter's ticket), then token or ticket. Times are epoch microseconds
    // and remaining times are computed by the server.
    auto sem_select = [&](const std::string& which) {
      return "WITH sel AS (SELECT s.name, s.sem_limit, (SELECT coalesce(sum(h.units), 0) FROM " +
             holders + " h WHERE h.name = s.name AND h.expires_at > now()) AS used FROM " +
             semaphores + " s WHERE " + which + ") " +
             "SELECT 0 AS part, sel.name, sel.sem_limit, sel.used, NULL::text, NULL::text, "
             "0::bigint AS ord, 0::bigint, 0::bigint, 0::bigint FROM sel "
             "UNION ALL SELECT 1, h.name, 0, h.units, h.owner, h.metadata, h.token, " +
             epoch_us("h.acquired_at") + ", " + epoch_us("h.expires_at") + ", " +
             epoch_us("h.expires_at - now()") + " FROM " + holders +
             " h JOIN sel ON h.name = sel.name WHERE h.expires_at > now() "
             "UNION ALL SELECT 2, k.name, 0, k.units, k.owner, NULL, k.ticket, 0, " +
             epoch_us("k.expires_at") + ", " + epoch_us("k.expires_at - now()") + " FROM " +
             tickets + " k JOIN sel ON k.name = sel.name WHERE k.expires_at > now() "
             "ORDER BY 2, 1, 7";
    };
    sem_inspect = sem_select("s.name = $1::text");
    // As `list`: a byte-prefix range; held = some live holder, free = none; the limit counts
    // semaphores (the LIMIT sits in a subquery, before holders and tickets join).
    sem_list = sem_select(
        "s.name IN (SELECT f.name FROM (SELECT s2.name, EXISTS (SELECT 1 FROM " + holders +
        " h2 WHERE h2.name = s2.name AND h2.expires_at > now()) AS held FROM " + semaphores +
        " s2 WHERE s2.name >= $1::text AND ($2::text IS NULL OR s2.name < $2::text)) f "
        "WHERE $3::integer = 0 OR ($3::integer = 1 AND f.held) OR ($3::integer = 2 AND NOT "
        "f.held) ORDER BY f.name LIMIT $4::bigint)");
    // Purge of semaphores, in a transaction per batch (see purge()). $1 free_for ms.
    // 1. Lock candidates: no holder or ticket row live within the horizon, changed_at before
    //    it. $2 the last name of the previous batch.
    const std::string horizon = "now() - $1::bigint * interval '1 millisecond'";
    const std::string idle =
        "s.changed_at <= " + horizon + " AND NOT EXISTS (SELECT 1 FROM " + holders +
        " h WHERE h.name = s.name AND h.expires_at > " + horizon + ") AND NOT EXISTS "
        "(SELECT 1 FROM " + tickets + " k WHERE k.name = s.name AND k.expires_at > " + horizon +
        ")";
    sem_purge_lock = "SELECT s.name FROM " + semaphores + " s WHERE s.name > $2::text AND " +
                     idle + " ORDER BY s.name LIMIT $3::bigint FOR UPDATE OF s SKIP LOCKED";
    // 2. With the candidates locked, check again in a NEW snapshot and delete. The first
    //    statement's FOR UPDATE re-checks a row changed after its snapshot against the newest
    //    row version, but its subqueries still read the old snapshot: a grant that committed
    //    in between could pass that check. The second statement's snapshot is taken after the
    //    locks were granted, so it sees every grant (grants lock the semaphore row until
    //    they commit), and no new grant can start on a locked row. $2: json array of the
    //    locked names. Holder and ticket rows locked by someone else (a fenced transaction on
    //    a lapsed holder) are skipped; the orphan sweep deletes them later.
    sem_purge_delete =
        "WITH d AS (DELETE FROM " + semaphores + " s WHERE s.name IN (SELECT "
        "json_array_elements_text($2::json)) AND " + idle + " RETURNING s.name), "
        "dh AS (DELETE FROM " + holders + " h WHERE (h.name, h.nonce) IN (SELECT x.name, "
        "x.nonce FROM " + holders + " x WHERE x.name IN (SELECT name FROM d) "
        "FOR UPDATE SKIP LOCKED) RETURNING 1), "
        "dt AS (DELETE FROM " + tickets + " k WHERE (k.name, k.nonce) IN (SELECT x.name, "
        "x.nonce FROM " + tickets + " x WHERE x.name IN (SELECT name FROM d) "
        "FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM dh), (SELECT count(*) FROM dt)";
    // 3. Holder and ticket rows lapsed beyond the horizon whose semaphore row is gone (skipped
    //    above, or a ticket taken while its semaphore was purged). Harmless meanwhile: a grant
    //    re-creates the semaphore row and deletes lapsed rows itself. Autocommit.
    sem_purge_orphans =
        "WITH dh AS (DELETE FROM " + holders + " h WHERE (h.name, h.nonce) IN (SELECT x.name, "
        "x.nonce FROM " + holders + " x WHERE x.expires_at <= " + horizon +
        " AND NOT EXISTS (SELECT 1 FROM " + semaphores + " s WHERE s.name = x.name) "
        "LIMIT $2::bigint FOR UPDATE SKIP LOCKED) RETURNING 1), "
        "dt AS (DELETE FROM " + tickets + " k WHERE (k.name, k.nonce) IN (SELECT x.name, "
        "x.nonce FROM " + tickets + " x WHERE x.expires_at <= " + horizon +
        " AND NOT EXISTS (SELECT 1 FROM " + semaphores + " s WHERE s.name = x.name) "
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
    read_version =
        "SELECT coalesce(max(version), 0) FROM " + schema_ident + ".sqlock_schema_version";
  }
};

lock_record read_record(const result& r, int row) {
  lock_record out;
  out.name = r.text(row, 0);
  out.owner = r.text(row, 1);
  out.metadata = r.text(row, 2);
  out.token = r.integer(row, 3);
  out.acquired_at = from_epoch_us(r.integer(row, 4));
  out.expires_at = from_epoch_us(r.integer(row, 5));
  std::int64_t left = r.integer(row, 6);
  out.expires_in = us_to_ms(left);
  out.held = left > 0;
  if (out.held && out.expires_in <= milliseconds::zero()) out.expires_in = milliseconds{1};
  return out;
}

// The flat rows of statements::sem_inspect / sem_list, grouped per semaphore.
std::vector<semaphore_record> read_semaphores(const result& r) {
  std::vector<semaphore_record> out;
  for (int row = 0; row < r.rows(); ++row) {
    const auto part = r.integer(row, 0);
    if (part == 0) {
      semaphore_record s;
      s.name = r.text(row, 1);
      s.limit = r.integer(row, 2);
      s.used = r.integer(row, 3);
      out.push_back(std::move(s));
      continue;
    }
    if (out.empty() || out.back().name != r.text(row, 1))
      throw error(errc::internal, "postgresql: semaphore rows out of order", kind_name);
    auto left = us_to_ms(r.integer(row, 9));
    if (left <= milliseconds::zero()) left = milliseconds{1};  // live: by the same snapshot
    if (part == 1) {
      semaphore_holder h;
      h.count = r.integer(row, 3);
      h.owner = r.text(row, 4);
      h.metadata = r.text(row, 5);
      h.token = r.integer(row, 6);
      h.acquired_at = from_epoch_us(r.integer(row, 7));
      h.expires_at = from_epoch_us(r.integer(row, 8));
      h.expires_in = left;
      out.back().holders.push_back(std::move(h));
    } else {
      semaphore_waiter w;
      w.count = r.integer(row, 3);
      w.owner = r.text(row, 4);
      w.ticket = r.integer(row, 6);
      w.expires_in = left;
      out.back().waiters.push_back(std::move(w));
    }
  }
  return out;
}

class postgresql_backend;

// The LISTEN connection: one per backend, started at the first watch(). It dispatches
// notifications (payload = lock name) to the backend's watch registry, checks itself at start
// by notifying itself through the main URL, reconnects with backoff, and pings an idle
// connection so a dead one is noticed.
class listener {
 public:
  // The thread exists from the start but idles until the first watch(): starting it there
  // would put thread creation between a waiter's deadline and its first attempt.
  explicit listener(postgresql_backend& owner) : owner_(owner) {
    if (::pipe(wake_) != 0) throw error(errc::internal, "postgresql: pipe() failed", kind_name);
    thread_ = std::thread([this] { run(); });
  }
  ~listener() { stop(); }

  /// Starts the thread once; waits (bounded) until the self-test reached a verdict.
  void ensure_started(milliseconds wait);
  bool works() const noexcept { return works_.load(); }
  /// The self-test ran and heard nothing (e.g. through PgBouncer in transaction mode).
  bool known_deaf() const noexcept { return deaf_.load(); }
  void stop() noexcept;

 private:
  void run();
  void session(bool first);
  bool sleep_interruptibly(milliseconds d);

  postgresql_backend& owner_;
  int wake_[2] = {-1, -1};
  bool wanted_ = false;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> works_{false};
  std::atomic<bool> deaf_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool verdict_ = false;
};

class postgresql_backend final : public backend {
 public:
  postgresql_backend(const std::string& conn, backend_options options)
      : info_(parse_conninfo(conn)),
        listen_info_(options.listen_url.empty() ? info_ : parse_conninfo(options.listen_url)),
        options_(std::move(options)),
        channel_(channel_for(options_.schema)),
        listener_(*this) {
    if (options_.schema.empty() || options_.schema.find('\0') != std::string::npos ||
        options_.schema.size() > 63)
      throw error(errc::invalid_argument,
                  "postgresql: backend_options::schema must be 1..63 bytes without NUL",
                  kind_name);
    if (options_.pool_size == 0 || options_.pool_size > 64)
      throw error(errc::invalid_argument, "postgresql: backend_options::pool_size must be 1..64",
                  kind_name);
  }

  ~postgresql_backend() override { listener_.stop(); }

  std::string_view kind() const noexcept override { return kind_name; }
  std::string describe() const override {
    return info_.redacted + " (schema " + quoted(options_.schema) + ")";
  }
  int latest_schema_version() const noexcept override { return latest_migration(kind_name); }

  bool wakes_other_processes() const noexcept override {
    return options_.notifications && listener_.works();
  }

  std::shared_ptr<release_watch> watch(std::string_view name) override {
    auto w = registry_.watch(name);
    if (options_.notifications) {
      // Starts the listener without waiting for it: until its LISTEN and self-test are done,
      // wakes_other_processes() is false and waiters use the short backoff.
      listener_.ensure_started(milliseconds{0});
    } else if (!warned_off_.exchange(true)) {
      log(log_level::warn,
          "postgresql: notifications are off (backend_options::notifications): waiters poll "
          "with backoff instead of being woken by releases");
    }
    return w;
  }

  int schema_version(deadline until) override {
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

  int migrate(int target, deadline until) override { return migrate_with(target, {}, until); }

  int migrate_with(int target, const migrate_options& options, deadline until) override {
    const std::string what = "migrate";
    const auto& all = embedded_migrations(kind_name);
    const int latest = latest_migration(kind_name);
    if (target < 0 || target > latest)
      throw error(errc::invalid_argument, "migrate: no schema version " + std::to_string(target),
                  kind_name);
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
      c->exec_simple(what, "BEGIN; SELECT pg_advisory_xact_lock(" + std::string(migrate_lock_key) +
                               ")",
                     until);
      auto exists = run(*c, what, nullptr,
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
                        "WHERE nspname = $1::text)",
                        {options_.schema}, until);
      if (!exists.boolean(0, 0))
        c->exec_simple(what, "CREATE SCHEMA IF NOT EXISTS " + s.schema_ident, until);
      // pg_temp last: the SECURITY DEFINER function sqlock_assert_held captures this path
      // (SET search_path FROM CURRENT), and a temp table must never shadow sqlock's tables.
      c->exec_simple(what, "SET LOCAL search_path TO " + s.schema_ident + ", pg_temp", until);
      auto st = run(*c, what, nullptr, s.version, {options_.schema}, until);
      int v = 0;
      if (st.boolean(0, 1)) v = static_cast<int>(run(*c, what, nullptr, s.read_version, {}, until)
                                                     .integer(0, 0));
      if (v > latest)
        throw error(errc::schema_mismatch,
                    "migrate: the database has schema version " + std::to_string(v) +
                        ", newer than this sqlock knows (" + std::to_string(latest) + ")",
                    kind_name);
      if (v != target) {
        if (v < target) {
          const auto& m = all.at(static_cast<std::size_t>(v));
          c->exec_simple("migrate up to " + std::to_string(m.version) + " (" + m.up_file + ")",
                         m.up, until);
        } else {
          const auto& m = all.at(static_cast<std::size_t>(v - 1));
          refuse_live_leases(*c, v, target, options, until);
          c->exec_simple(
              "migrate down from " + std::to_string(m.version) + " (" + m.down_file + ")",
              m.down, until);
          if (m.version > 1)
            run(*c, what, nullptr,
                "DELETE FROM " + s.schema_ident + ".sqlock_schema_version WHERE version = $1::integer",
                {std::to_string(m.version)}, until);
        }
      }
      c->exec_simple(what, "COMMIT", until);
      guard.done = true;
      if (v == target) return v;
    }
  }

  // Inside a down step's transaction, from schema `v` towards `target`: the live lock leases
  // (when the steps to `target` drop the lock table) and semaphore holders (when they drop the
  // semaphore tables). Dropping them would let the next grant after `migrate up` reuse small
  // tokens while their holders still work. Throws unless `options.force`, which only warns.
  void refuse_live_leases(connection& c, int v, int target, const migrate_options& options,
                          deadline until) {
    const std::string what = "migrate down: count live leases";
    const bool locks = target < 1, holders = target < 2 && v >= 2;
    if (!locks && !holders) return;
    // The tables' strongest lock before counting: no grant can commit between the count and
    // the drop. ACCESS EXCLUSIVE (not SHARE ROW EXCLUSIVE) because the DROP needs it anyway,
    // and upgrading a weaker lock later could deadlock with a fenced transaction that holds a
    // row lock and then renews. Released with the transaction, also when refused.
    c.exec_simple(what,
                  std::string("LOCK TABLE ") + (locks ? "sqlock_locks" : "") +
                      (locks && holders ? ", " : "") + (holders ? "sqlock_semaphore_holders" : "") +
                      " IN ACCESS EXCLUSIVE MODE",
                  until);
    live_leases live;
    auto count = [&](const char* table, const char* label) {
      auto r = run(c, what, nullptr,
                   std::string("SELECT count(*) OVER (), name, token, owner FROM ") + table +
                       " WHERE expires_at > clock_timestamp() ORDER BY token LIMIT 3",
                   {}, until);
      for (int i = 0; i < r.rows(); ++i) live.add(label, r.text(i, 1), r.integer(i, 2), r.text(i, 3));
      live.total(r.rows() ? r.integer(0, 0) : 0);
    };
    if (locks) count("sqlock_locks", "lock");
    if (holders) count("sqlock_semaphore_holders", "semaphore");
    if (auto warning = live.verdict(kind_name, v, options.force); !warning.empty())
      log(log_level::warn, warning);
  }

  acquire_result try_acquire(const acquire_request& r, deadline until) override {
    const std::string what = "acquire " + quoted(r.name);
    auto c = checkout(until, what);
    // A dropped connection or a missed deadline after sending leaves the grant unknown:
    // in_doubt, and the client cleans up by nonce.
    // Mark the row for a wake-up only when a notification can reach us: a marked row makes
    // the release notify, and a notifying commit takes a server-wide lock.
    const bool mark = r.waiting && options_.notifications && !listener_.known_deaf();
    auto res = run(*c, what, "sqlock_acquire", sql().acquire,
                   {r.name, r.owner, r.nonce, r.metadata, std::to_string(r.ttl.count()),
                    std::string(mark ? "true" : "false"),
                    std::to_string(waiter_mark.count())},
                   until, errc::in_doubt);
    acquire_result out;
    if (res.rows() == 0) {
      // Lost a race with a concurrent grant of a missing or expired row: we do not know the
      // winner's expiry; look again shortly.
      out.holder_expires_in = milliseconds{1};
      return out;
    }
    if (res.boolean(0, 0)) {
      out.granted = grant{res.integer(0, 1), from_epoch_us(res.integer(0, 2)),
                          from_epoch_us(res.integer(0, 3))};
      return out;
    }
    // Contention: someone here may soon wait, so have the listener ready by then (started
    // from here rather than from inside the waiter's deadline window).
    if (options_.notifications) listener_.ensure_started(milliseconds{0});
    std::int64_t left = res.integer(0, 1);
    // An expired row that was refused is locked by another transaction (a fenced one, or a
    // concurrent grant); a mark that was due but not written means a release slipped in, or
    // the row is locked. Either way the expiry is unknown: 0 makes the caller back off
    // (2 ms, doubling), so a row pinned for long is not polled in a tight loop.
    bool mark_missed = mark && res.integer(0, 3) == 1 && res.integer(0, 2) == 0;
    out.holder_expires_in =
        left <= 0 || mark_missed ? milliseconds{0} : std::max(milliseconds{1}, us_to_ms(left));
    return out;
  }

  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override {
    std::vector<renew_result> out;
    if (requests.empty()) return out;
    const std::string what = describe_renewal(requests);
    std::string json = "[";
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto& q = requests[i];
      if (i) json += ',';
      json += "{\"i\":" + std::to_string(i) + ",\"k\":" +
              (q.key.kind == lease_kind::semaphore ? "1" : "0") + ",\"n\":";
      append_json_string(json, q.key.name);
      json += ",\"o\":";
      append_json_string(json, q.key.nonce);
      json += ",\"t\":" + std::to_string(q.key.token) + ",\"ms\":" +
              std::to_string(q.ttl.count()) + "}";
    }
    json += ']';
    const bool mixed = std::any_of(requests.begin(), requests.end(), [](const renew_request& q) {
      return q.key.kind == lease_kind::semaphore;
    });
    const char* statement_name = mixed ? "sqlock_renew_mixed" : "sqlock_renew";
    // (Selected by member: the statements exist only once a first connection was made.)
    std::string statements::*statement = mixed ? &statements::renew_mixed : &statements::renew;

    // The keepalive's dedicated connection when free; otherwise (a user renew racing the
    // keepalive) a pool connection.
    std::unique_lock<std::mutex> own(renew_mu_, std::try_to_lock);
    result res;
    if (own.owns_lock()) {
      if (!renew_conn_ || renew_conn_->broken()) {
        renew_conn_.reset();
        // Adopt an idle pool connection when there is one: the keepalive's first renewal
        // has a short budget and must not spend it on a connection handshake (SCRAM through
        // a pooler can take longer than a 100 ms lease's first renewal window).
        {
          std::lock_guard<std::mutex> lock(pool_mu_);
          if (!idle_.empty()) {
            renew_conn_ = std::move(idle_.back());
            idle_.pop_back();
            --open_;
            pool_cv_.notify_one();
          }
        }
        if (!renew_conn_) renew_conn_ = connect(until, what);
      }
      try {
        res = run(*renew_conn_, what, statement_name, sql().*statement, {json}, until);
      } catch (...) {
        if (renew_conn_->broken()) renew_conn_.reset();
        throw;
      }
    } else {
      auto c = checkout(until, what);
      res = run(*c, what, statement_name, sql().*statement, {json}, until);
    }
    if (res.rows() != static_cast<int>(requests.size()))
      throw error(errc::internal, what + " on postgresql: " + std::to_string(res.rows()) +
                                      " results for " + std::to_string(requests.size()),
                  kind_name);
    out.resize(requests.size());
    for (int row = 0; row < res.rows(); ++row) {
      auto i = static_cast<std::size_t>(res.integer(row, 0));
      const auto& key = requests.at(i).key;
      auto& o = out.at(i);
      if (!res.null(row, 1)) {
        o.outcome = renew_outcome::renewed;
        o.expires_at = from_epoch_us(res.integer(row, 1));
      } else if (key.kind == lease_kind::semaphore) {
        // A holder row is this lease alone (its key is name and nonce). Missing is the normal
        // end of a holder row (deleted by a later grant once it ended), so: expired.
        if (res.null(row, 2))
          o.outcome = renew_outcome::expired;
        else if (res.boolean(row, 5))
          o.outcome = renew_outcome::force_released;
        else if (res.integer(row, 3) != key.token)
          o.outcome = renew_outcome::taken_over;  // re-granted to the same nonce (in doubt)
        else
          o.outcome = res.boolean(row, 4) ? renew_outcome::busy : renew_outcome::expired;
      } else if (res.null(row, 2)) {
        o.outcome = renew_outcome::missing;
      } else {
        o.outcome = refused_renewal(key, res.text(row, 2), res.integer(row, 3),
                                    res.boolean(row, 4));
      }
    }
    return out;
  }

  bool release(const lease_key& key, deadline until) override {
    const bool sem = key.kind == lease_kind::semaphore;
    const std::string what = std::string(sem ? "release semaphore " : "release ") +
                             quoted(key.name) + " (token " + std::to_string(key.token) + ")";
    const std::vector<param> params{key.name, key.nonce, std::to_string(key.token), channel_};
    // Wait for the row at most briefly: a lock still held after that is an open fenced
    // transaction (possibly this thread's own), which a release must never wait for. The
    // statement that missed the short deadline is cancelled with its connection; then the
    // non-waiting form decides between "locked" (the client finishes in the background, with
    // abandon()) and a real failure.
    const auto brief = std::min(until, steady::now() + milliseconds{100});
    if (brief < until) {
      try {
        bool ended;
        {
          auto c = checkout(brief, what);
          auto rs = sem ? run(*c, what, "sqlock_sem_release_waiting",
                              sql().sem_release_waiting, params, brief)
                        : run(*c, what, "sqlock_release_waiting", sql().release_waiting,
                              params, brief);
          ended = rs.rows() > 0 && rs.boolean(0, 0);
        }
        if (ended) registry_.notify(key.name);
        return ended;
      } catch (const error& e) {
        if (e.code() != errc::unavailable || steady::now() < brief) throw;
      }
    }
    return sem ? end_lease(what, "sqlock_sem_release", &statements::sem_release, params, until)
               : end_lease(what, "sqlock_release", &statements::release, params, until);
  }

  bool abandon(const lease_key& key, deadline until) override {
    const std::vector<param> params{key.name, key.nonce, std::nullopt, channel_};
    if (key.kind == lease_kind::semaphore)
      return end_lease("clean up semaphore acquire " + quoted(key.name), "sqlock_sem_abandon",
                       &statements::sem_abandon, params, until);
    return end_lease("clean up acquire " + quoted(key.name), "sqlock_abandon",
                     &statements::abandon, params, until);
  }

  bool force_release(std::string_view name, deadline until) override {
    return end_lease("force release " + quoted(name), "sqlock_force", &statements::force,
                     {std::string(name), std::nullopt, std::nullopt, channel_}, until);
  }

  std::optional<lock_record> inspect(std::string_view name, deadline until) override {
    const std::string what = "inspect " + quoted(name);
    auto c = checkout(until, what);
    auto r = run(*c, what, "sqlock_inspect", sql().inspect, {std::string(name)}, until);
    if (r.rows() == 0) return std::nullopt;
    return read_record(r, 0);
  }

  std::vector<lock_record> list(const list_filter& f, deadline until) override {
    const std::string what = "list";
    auto c = checkout(until, what);
    auto upper = prefix_upper_bound(f.prefix);
    param hi = f.prefix.empty() || upper.empty() ? param{} : param{upper};
    int show = f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2;
    param limit = f.limit == 0 ? param{} : param{std::to_string(f.limit)};
    auto r = run(*c, what, "sqlock_list", sql().list, {f.prefix, hi, std::to_string(show), limit},
                 until);
    std::vector<lock_record> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_record(r, i));
    return out;
  }

  std::optional<lock_record> inspect_watched(std::string_view name, milliseconds mark_for,
                                             deadline until) override {
    const std::string what = "inspect " + quoted(name);
    // Mark only when a notification can reach us (as try_acquire does).
    const bool mark =
        mark_for > milliseconds::zero() && options_.notifications && !listener_.known_deaf();
    std::optional<lock_record> out;
    {
      auto c = checkout(until, what);
      auto r = run(*c, what, "sqlock_inspect_watched", sql().inspect_watched,
                   {std::string(name), std::to_string(mark_for.count()), mark ? "true" : "false"},
                   until);
      if (r.rows() == 0) return std::nullopt;
      if (!r.boolean(0, 8)) return read_record(r, 0);
      // The row changed after our snapshot (the mark's UPDATE saw a newer version): it was
      // released or re-marked meanwhile. Look again rather than report a stale holder.
      auto again = run(*c, what, "sqlock_inspect", sql().inspect, {std::string(name)}, until);
      if (again.rows() > 0) out = read_record(again, 0);
    }
    return out;
  }

  acquire_result try_acquire_semaphore(const semaphore_request& r, deadline until) override {
    const std::string what = "acquire semaphore " + quoted(r.name);
    // Mark the semaphore for wake-ups only when a notification can reach us; take a queue
    // ticket only for a fair attempt that will wait.
    const bool mark = r.waiting && options_.notifications && !listener_.known_deaf();
    const bool fair = r.fair && r.waiting;
    // p_ticket_ms sizes the queue ticket and the waiter mark. A fair waiter attempts every
    // third of its ticket's life, so its ticket_ttl also keeps the mark fresh; a waiter
    // without a ticket sleeps up to the signalled backoff cap (2 s) and marks for as long as
    // a lock's waiter does.
    const milliseconds ticket_ms =
        fair ? (r.ticket_ttl > milliseconds::zero() ? r.ticket_ttl : fair_ticket_ttl)
             : std::max(r.ticket_ttl, waiter_mark);
    auto c = checkout(until, what);
    auto res = run(*c, what, "sqlock_sem_acquire", sql().sem_acquire,
                   {r.name, std::to_string(r.limit), std::to_string(r.count), r.owner, r.nonce,
                    r.metadata, std::to_string(r.ttl.count()),
                    std::string(mark ? "true" : "false"), std::string(fair ? "true" : "false"),
                    std::to_string(ticket_ms.count()), channel_},
                   until, errc::in_doubt);
    if (res.rows() != 1)
      throw error(errc::internal,
                  what + " on postgresql: sqlock_semaphore_acquire returned " +
                      std::to_string(res.rows()) + " rows",
                  kind_name);
    acquire_result out;
    if (res.boolean(0, 0)) {
      out.granted = grant{res.integer(0, 1), from_epoch_us(res.integer(0, 2)),
                          from_epoch_us(res.integer(0, 3))};
      return out;
    }
    if (options_.notifications) listener_.ensure_started(milliseconds{0});
    // 1 us: retry at once (room appeared while this attempt marked itself as a waiter, so
    // no release will wake it); 0: unknown (a lapsed holder's fenced transaction is still
    // open), the caller retries with its backoff.
    std::int64_t retry = res.integer(0, 4);
    out.holder_expires_in =
        retry <= 0 ? milliseconds{0} : std::max(milliseconds{1}, us_to_ms(retry));
    return out;
  }

  std::optional<semaphore_record> inspect_semaphore(std::string_view name,
                                                    deadline until) override {
    const std::string what = "inspect semaphore " + quoted(name);
    auto c = checkout(until, what);
    auto r = run(*c, what, "sqlock_sem_inspect", sql().sem_inspect, {std::string(name)}, until);
    auto all = read_semaphores(r);
    if (all.empty()) return std::nullopt;
    return std::move(all.front());
  }

  std::vector<semaphore_record> list_semaphores(const list_filter& f, deadline until) override {
    const std::string what = "list semaphores";
    auto c = checkout(until, what);
    auto upper = prefix_upper_bound(f.prefix);
    param hi = f.prefix.empty() || upper.empty() ? param{} : param{upper};
    int show = f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2;
    param limit = f.limit == 0 ? param{} : param{std::to_string(f.limit)};
    auto r = run(*c, what, "sqlock_sem_list", sql().sem_list,
                 {f.prefix, hi, std::to_string(show), limit}, until);
    return read_semaphores(r);
  }

  std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                      deadline until) override {
    const std::string what = "force release semaphore " + quoted(name);
    std::size_t n;
    {
      auto c = checkout(until, what);
      auto r = run(*c, what, "sqlock_sem_force", sql().sem_force,
                   {std::string(name), std::to_string(token), channel_}, until);
      n = static_cast<std::size_t>(r.integer(0, 0));
    }
    if (n > 0) registry_.notify(name);
    return n;
  }

  std::size_t purge(milliseconds free_for, deadline until) override {
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
    constexpr int batch = 500;
    auto c = checkout(until, what);
    const std::string lock_table = "BEGIN; SET LOCAL lock_timeout = '100ms'; LOCK TABLE " +
                                   sql().locks + " IN SHARE ROW EXCLUSIVE MODE";
    // Batches walk the primary key in name order from where the last one stopped: rescanning
    // from the start stepped over every dead row of earlier batches (53 ms batches at 10^6
    // rows, measured), all while holding the table lock.
    const std::string delete_batch =
        "WITH d AS (DELETE FROM " + sql().locks + " WHERE name IN (SELECT name FROM " +
        sql().locks + " WHERE name > $2::text AND expires_at <= now() - $1::bigint * "
        "interval '1 millisecond' ORDER BY name LIMIT " + std::to_string(batch) +
        " FOR UPDATE SKIP LOCKED) RETURNING name) SELECT count(*), max(name) FROM d";
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
    const std::string begin_sem = "BEGIN; SET LOCAL lock_timeout = '100ms'";
    for (;;) {
      std::size_t locked = 0;
      std::size_t n = in_transaction(begin_sem, [&] {
        auto cand = run(*c, what, nullptr, sql().sem_purge_lock,
                        {ms, after, std::to_string(batch)}, until);
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
      auto rs = run(*c, what, nullptr, sql().sem_purge_orphans, {ms, std::to_string(batch)},
                    until);
      if (rs.integer(0, 0) < batch && rs.integer(0, 1) < batch) break;
      if (steady::now() >= until) break;
    }
    return total;
  }

  // Used by the listener's self-test: notifies through the main URL, as a release would.
  void notify_self(const std::string& payload, deadline until) {
    const std::string what = "notification self-test";
    auto c = checkout(until, what);
    run(*c, what, nullptr, sql().notify, {channel_, payload}, until);
  }

  void log(log_level level, const std::string& message) const noexcept {
    if (!options_.log) return;
    try {
      options_.log(level, message);
    } catch (...) {
    }
  }

  const conninfo& listen_info() const noexcept { return listen_info_; }
  const std::string& channel() const noexcept { return channel_; }
  watch_registry& registry() noexcept { return registry_; }

  std::unique_ptr<connection> connect(deadline until, const std::string& what,
                                      const conninfo* info = nullptr, int interrupt_fd = -1) {
    // Reconnect with backoff: after a failed connect, further connects wait until the backoff
    // passed (or fail at once when that is past their deadline), so a dead server is not
    // hammered by every caller. The listener (its own URL maybe) keeps its own backoff.
    if (info) {
      auto c = connection::open(*info, until, what, interrupt_fd);
      std::lock_guard<std::mutex> lock(connect_mu_);
      if (!sql_) sql_ = std::make_shared<const statements>(*c, options_.schema);
      return c;
    }
    {
      std::unique_lock<std::mutex> lock(connect_mu_);
      auto now = steady::now();
      if (reconnect_after_ > now) {
        if (reconnect_after_ >= until)
          throw error(errc::unavailable,
                      what + " on postgresql: " + last_connect_error_ + " (retrying with backoff)",
                      kind_name, "08001");
        // Sleep on a copy: another thread's failed connect may move reconnect_after_ meanwhile.
        const auto wake = reconnect_after_;
        lock.unlock();
        std::this_thread::sleep_until(wake);
      }
    }
    try {
      auto c = connection::open(info_, until, what, interrupt_fd);
      std::lock_guard<std::mutex> lock(connect_mu_);
      connect_backoff_ = milliseconds{0};
      reconnect_after_ = {};
      if (!sql_) sql_ = std::make_shared<const statements>(*c, options_.schema);
      return c;
    } catch (const error& e) {
      std::lock_guard<std::mutex> lock(connect_mu_);
      connect_backoff_ = std::min(milliseconds{1000}, std::max(milliseconds{25}, connect_backoff_ * 2));
      reconnect_after_ = steady::now() + jitter(connect_backoff_ / 2, connect_backoff_);
      last_connect_error_ = e.what();
      auto pos = last_connect_error_.find(" on postgresql: ");
      if (pos != std::string::npos) last_connect_error_ = last_connect_error_.substr(pos + 16);
      throw;
    }
  }

 private:
  struct pool_return {
    postgresql_backend* owner;
    void operator()(connection* c) const noexcept { owner->give_back(c); }
  };
  using pooled = std::unique_ptr<connection, pool_return>;

  const statements& sql() {
    std::lock_guard<std::mutex> lock(connect_mu_);
    if (!sql_) throw error(errc::internal, "postgresql: statements used before connecting", kind_name);
    return *sql_;
  }

  pooled checkout(deadline until, const std::string& what) {
    std::unique_lock<std::mutex> lock(pool_mu_);
    for (;;) {
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return pooled(c.release(), pool_return{this});
      }
      if (open_ < options_.pool_size) break;
      if (pool_cv_.wait_until(lock, until) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.pool_size)
        throw error(errc::unavailable,
                    what + " on postgresql: no free connection before the call's deadline "
                           "(pool_size " + std::to_string(options_.pool_size) + ")",
                    kind_name);
    }
    ++open_;
    lock.unlock();
    try {
      return pooled(connect(until, what).release(), pool_return{this});
    } catch (...) {
      lock.lock();
      --open_;
      pool_cv_.notify_one();
      throw;
    }
  }

  void give_back(connection* raw) noexcept {
    std::unique_ptr<connection> c(raw);
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (c->broken() || c->in_transaction()) {
      --open_;
      c.reset();  // a broken or mid-transaction connection is never reused
    } else {
      try {
        idle_.push_back(std::move(c));
      } catch (...) {
        --open_;
      }
    }
    pool_cv_.notify_one();
  }

  // One statement; serialization failures and deadlocks are retried (the statement rolled
  // back, so retrying is safe even for a grant), never surfaced before the deadline.
  result run(connection& c, const std::string& what, const char* name, const std::string& text,
             const std::vector<param>& params, deadline until,
             errc after_send = errc::unavailable) {
    // Named statements carry a hash of their text: a server connection shared through a
    // pooler may hold another client's statement of the same base name (another schema).
    std::string named;
    for (int attempt = 0;; ++attempt) {
      const bool use_named = name && options_.prepared_statements && !unnamed_only_;
      if (use_named && named.empty()) named = std::string(name) + "_" + fnv_hex(text);
      try {
        return c.exec(what, use_named ? named.c_str() : nullptr, text, params, until, after_send);
      } catch (const error& e) {
        if (use_named && e.sqlstate() == "26000" && !c.broken() && !c.in_transaction()) {
          // "prepared statement does not exist": a pooler in transaction mode moved us to
          // another server connection. The statement did not run; go unnamed from now on.
          if (!unnamed_only_.exchange(true))
            log(log_level::info,
                "postgresql: named prepared statements do not survive this connection pooler; "
                "using unnamed statements (set backend_options::prepared_statements = false)");
          continue;
        }
        if (!retryable(e.sqlstate()) || c.broken() || c.in_transaction()) throw;
        auto pause = jitter(milliseconds{1}, milliseconds{std::min(50, 2 << std::min(attempt, 5))});
        if (steady::now() + pause >= until) throw;
        std::this_thread::sleep_for(pause);
      }
    }
  }

  bool end_lease(const std::string& what, const char* name, std::string statements::*text,
                 const std::vector<param>& params, deadline until) {
    bool ended = false, changed = false;
    {
      auto c = checkout(until, what);
      // A row can be locked for a moment by other statements (a contender's refused upsert
      // locks it; so does a waiter's mark): look again a few times, for up to ~30 ms, before
      // concluding that an open fenced transaction holds it. Reporting at once deferred
      // releases under contention by 20-100 ms each (grants/s fell 6x, measured).
      for (int attempt = 0;; ++attempt) {
        auto rs = run(*c, what, name, sql().*text, params, until);
        bool locked = false;
        ended = changed = false;
        for (int row = 0; row < rs.rows(); ++row) {
          if (rs.boolean(row, 2)) {
            locked = true;
          } else {
            changed = true;  // a lease ended, or (semaphore abandon) a queue ticket went
            ended = ended || rs.boolean(row, 0);
          }
        }
        if (locked) {
          auto pause = jitter(milliseconds{1}, milliseconds{1 << std::min(attempt, 3)});
          if (attempt < 6 && steady::now() + pause < until) {
            std::this_thread::sleep_for(pause);
            continue;
          }
          throw row_locked(what + " on postgresql: the lease's row is locked by another open "
                              "transaction (a fenced transaction?); not waiting for it",
                       kind_name, std::string(sqlstate_row_locked));
        }
        break;
      }
    }
    if (changed) registry_.notify(params[0].value_or(std::string()));
    return ended;
  }

  const conninfo info_;
  const conninfo listen_info_;
  const backend_options options_;
  const std::string channel_;

  std::mutex connect_mu_;
  std::shared_ptr<const statements> sql_;
  milliseconds connect_backoff_{0};
  steady::time_point reconnect_after_{};
  std::string last_connect_error_;

  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::size_t open_ = 0;

  std::mutex renew_mu_;
  std::unique_ptr<connection> renew_conn_;

  watch_registry registry_;
  std::atomic<bool> warned_sync_{false};
  std::atomic<bool> warned_off_{false};
  std::atomic<bool> unnamed_only_{false};
  listener listener_;  // last: stopped first
};

// ---- listener ----

constexpr const char* selftest_prefix = "\x01sqlock-selftest:";

void listener::ensure_started(milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!wanted_) {
    wanted_ = true;
    cv_.notify_all();
  }
  if (wait <= milliseconds::zero()) return;
  cv_.wait_for(lock, wait, [&] { return verdict_; });
}

void listener::stop() noexcept {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  if (wake_[1] >= 0) {
    char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }
  if (thread_.joinable()) thread_.join();
  if (wake_[0] >= 0) ::close(wake_[0]);
  if (wake_[1] >= 0) ::close(wake_[1]);
  wake_[0] = wake_[1] = -1;
}

bool listener::sleep_interruptibly(milliseconds d) {
  pollfd p{wake_[0], POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(d.count())) == 0;
}

void listener::run() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return wanted_ || stopping_.load(); });
  }
  milliseconds backoff{0};
  bool first = true;
  while (!stopping_) {
    try {
      session(first);
      backoff = milliseconds{0};
    } catch (const std::exception& e) {
      works_ = false;
      if (stopping_) break;
      owner_.log(log_level::warn,
                 std::string("postgresql: notification listener: ") + e.what() +
                     "; waiters fall back to backoff until it reconnects");
      if (first) {
        std::lock_guard<std::mutex> lock(mu_);
        verdict_ = true;  // no need to hold up waiters: they poll with backoff meanwhile
        cv_.notify_all();
      }
    }
    first = false;
    backoff = std::min(milliseconds{2000}, std::max(milliseconds{50}, backoff * 2));
    if (!stopping_ && !sleep_interruptibly(jitter(backoff / 2, backoff))) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  verdict_ = true;
  cv_.notify_all();
}

void listener::session(bool first) {
  const std::string what = "listen";
  auto c = owner_.connect(steady::now() + milliseconds{5000}, what, &owner_.listen_info(), wake_[0]);
  c->exec_simple(what, "LISTEN " + c->escape_identifier(owner_.channel()),
                 steady::now() + milliseconds{5000});
  static const milliseconds selftest_wait{300};
  bool verified = !first && works_.load();
  std::string expect;
  steady::time_point selftest_until{};
  if (!verified) {
    expect = selftest_prefix + random_hex(8);
    // Sent through the main URL, like a release: through PgBouncer in transaction mode the
    // listener then hears nothing and waiting falls back to backoff.
    owner_.notify_self(expect, steady::now() + milliseconds{2000});
    selftest_until = steady::now() + selftest_wait;
  } else {
    works_ = true;
  }
  auto last_traffic = steady::now();
  constexpr milliseconds idle_ping{10000};
  while (!stopping_) {
    auto wake_at = verified ? last_traffic + idle_ping : selftest_until;
    bool got = c->wait_readable(wake_at, what);
    if (stopping_) return;
    if (got) last_traffic = steady::now();
    while (auto payload = c->next_notification()) {
      if (payload->rfind(selftest_prefix, 0) == 0) {
        if (!verified && *payload == expect) {
          verified = true;
          works_ = true;
          deaf_ = false;
          std::lock_guard<std::mutex> lock(mu_);
          verdict_ = true;
          cv_.notify_all();
        }
        continue;
      }
      owner_.registry().notify(*payload);
    }
    auto now = steady::now();
    if (!verified && now >= selftest_until) {
      works_ = false;
      deaf_ = true;
      owner_.log(log_level::warn,
                 "postgresql: LISTEN/NOTIFY does not reach this client (a pooler in transaction "
                 "mode?): waiters poll with backoff; point backend_options::listen_url at a "
                 "direct server connection to be woken by releases");
      {
        std::lock_guard<std::mutex> lock(mu_);
        verdict_ = true;
        cv_.notify_all();
      }
      // Nothing will arrive: idle until stopped, without holding a server connection.
      while (!stopping_ && sleep_interruptibly(milliseconds{60000})) {
      }
      return;
    }
    if (verified && !got && now >= last_traffic + idle_ping) {
      // A dead or stalled connection is only noticed by talking to it.
      c->exec_simple(what, "SELECT 1", now + milliseconds{5000});
      last_traffic = steady::now();
      while (auto payload = c->next_notification())
        if (payload->rfind(selftest_prefix, 0) != 0) owner_.registry().notify(*payload);
    }
  }
}

}  // namespace

std::shared_ptr<backend> make_postgresql_backend(const std::string& conninfo,
                                                 const backend_options& options) {
  return std::make_shared<postgresql_backend>(conninfo, options);
}

}  // namespace sqlock::detail
