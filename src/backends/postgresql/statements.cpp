// The SQL text of every statement of the PostgreSQL backend, built once per backend (the first
// connection quotes the schema name) in the constructor of `statements`.

#include "backends/postgresql/statements.hpp"

#include <cstdint>

namespace sqlock::detail::pg {
namespace {

// Serialises concurrent migrators of every schema of one database (transaction-scoped, so safe
// through PgBouncer). 'sqlock' in ASCII.
constexpr const char* migrate_lock_key = "126905076458347";

// The epoch-microsecond integer of a timestamptz expression, computed by the server.
std::string epoch_us(const std::string& x) {
  return "(extract(epoch from " + x + ") * 1000000)::bigint";
}

}  // namespace

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
std::string handoff_channel_for(const std::string& schema) { return "sqlock_h_" + fnv_hex(schema); }

statements::statements(const connection& c, const std::string& schema) {
  schema_ident = c.escape_identifier(schema);
  locks = schema_ident + ".sqlock_locks";
  semaphores = schema_ident + ".sqlock_semaphores";
  holders = schema_ident + ".sqlock_semaphore_holders";
  tickets = schema_ident + ".sqlock_semaphore_tickets";
  waiters = schema_ident + ".sqlock_lock_waiters";
  // Commits of soft state (a release, a waiter's ticket and mark) do not wait for their WAL
  // flush: see the releases below.
  const std::string unflushed = "set_config('synchronous_commit', 'off', true)";
  const std::string seq =
      "nextval(" + c.escape_literal(schema_ident + ".sqlock_token_seq") + "::regclass)";
  // $1 name, $2 owner, $3 nonce, $4 metadata, $5 ttl ms, $6 waiting (mark), $7 waiter mark ms,
  // $8 fair, $9 queue, $10 ticket ms, $11 attempt number, $12 the first term of a lock handed
  // to this waiter (ms).
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
  // every in-flight writer (see purge() in admin.cpp): an insert that drew its token before a
  // row was deleted has finished (and met the row) before the deletion.
  //
  // `marked`: a waiting attempt that was refused sets waiters_until, which makes the
  // holder's release notify. It writes only when the mark is missing or half spent. If the
  // row was released between our snapshot and the mark (so no notification will come), the
  // result says so and the caller retries soon.
  //
  // Neither a grant nor a mark ever waits for a row lock: a row share-locked by an open
  // fenced transaction (sqlock_assert_held) could otherwise hold the attempt until
  // that transaction ends, and a try that should answer "held" at once would fail with a
  // timeout instead. `free` locks an expired row SKIP LOCKED before the upsert touches it (so
  // ON CONFLICT then finds it already ours), and the mark skips a locked row too. A row so
  // skipped is refused with no known expiry: the caller backs off. (A concurrent grant that
  // holds the row is skipped the same way; it is about to win anyway.)
  //
  // The queue (schema 4, sqlock_lock_waiters). `handed`: a later attempt of a wait that finds
  // the row held by its own nonce was handed the lock by a release; it extends the lease as a
  // renewal does (never shortening it) and returns it, so its local clock can start at this
  // attempt. `eligible`: a fair attempt is granted only when no live ticket of another nonce is
  // older than its own (than any, without one). A grant (or a handed lease) drops the nonce's
  // ticket. A refused queued attempt refreshes its ticket (`refreshed`: expiry and attempt
  // number, keeping its place) or takes one (`queued`: a number from the token sequence). It
  // takes one only when its snapshot shows neither a ticket nor the lock as its own: a ticket
  // that a release consumed after our snapshot is then never re-created (the UPDATE finds it
  // gone and reports "not queued"; the next attempt sees the lock as ours). `marked` never
  // marks a row held by our own nonce (the same row would be updated twice).
  acquire =
      "WITH cur AS (SELECT nonce, expires_at > now() AS live, " + epoch_us("expires_at - now()") +
      " AS left_us, "
      "waiters_until < now() + $7::bigint * interval '500 microseconds' AS mark_due "
      "FROM " +
      locks +
      " WHERE name = $1::text), "
      "me AS (SELECT ticket FROM " +
      waiters +
      " WHERE $11::bigint > 1 AND name = $1::text AND nonce = $3::text), "
      "handed AS (UPDATE " +
      locks +
      " l SET expires_at = GREATEST(l.expires_at, now() + $5::bigint * "
      "interval '1 millisecond') WHERE l.name IN (SELECT x.name FROM " +
      locks +
      " x WHERE $11::bigint > 1 AND x.name = $1::text AND x.nonce = $3::text "
      "AND x.expires_at > now() FOR UPDATE SKIP LOCKED) "
      "RETURNING l.token, " +
      epoch_us("l.acquired_at") + " AS acquired_us, " + epoch_us("l.expires_at") +
      " AS expires_us), "
      "eligible AS (SELECT NOT $8::boolean OR NOT EXISTS (SELECT 1 FROM " +
      waiters +
      " w WHERE w.name = $1::text AND w.nonce <> $3::text AND w.expires_at > now() "
      "AND w.ticket < coalesce((SELECT ticket FROM me), 9223372036854775807)) AS ok), "
      "free AS (SELECT 1 FROM " +
      locks +
      " WHERE name = $1::text AND expires_at <= now() AND (SELECT ok FROM eligible) "
      "FOR UPDATE SKIP LOCKED), "
      "granted AS (INSERT INTO " +
      locks +
      " AS l "
      "(name, owner, nonce, token, acquired_at, expires_at, metadata) "
      "SELECT $1::text, $2::text, $3::text, " +
      seq +
      ", now(), "
      "now() + $5::bigint * interval '1 millisecond', $4::text "
      "WHERE NOT EXISTS (SELECT 1 FROM cur WHERE live) AND (SELECT ok FROM eligible) "
      "AND (NOT EXISTS (SELECT 1 FROM cur) OR EXISTS (SELECT 1 FROM free)) "
      "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
      "token = GREATEST(" +
      seq +
      ", l.token + 1), acquired_at = excluded.acquired_at, "
      "expires_at = excluded.expires_at, metadata = excluded.metadata "
      "WHERE l.expires_at <= now() "
      "RETURNING l.token, " +
      epoch_us("l.acquired_at") + " AS acquired_us, " + epoch_us("l.expires_at") +
      " AS expires_us), "
      "mine AS (SELECT token, acquired_us, expires_us FROM granted UNION ALL "
      "SELECT token, acquired_us, expires_us FROM handed), "
      "dropped AS (DELETE FROM " +
      waiters +
      " WHERE EXISTS (SELECT 1 FROM mine) AND name = $1::text AND nonce = $3::text "
      "RETURNING 1), "
      "refreshed AS (UPDATE " +
      waiters +
      " SET expires_at = now() + $10::bigint * interval '1 millisecond', "
      "attempt = $11::bigint WHERE $9::boolean AND EXISTS (SELECT 1 FROM me) "
      "AND NOT EXISTS (SELECT 1 FROM mine) "
      "AND NOT EXISTS (SELECT 1 FROM cur WHERE live AND nonce = $3::text) "
      "AND name = $1::text AND nonce = $3::text RETURNING 1), "
      "queued AS (INSERT INTO " +
      waiters +
      " (name, nonce, owner, metadata, ttl_ms, fair, ticket, attempt, since, expires_at) "
      "SELECT $1::text, $3::text, $2::text, $4::text, $12::bigint, "
      "$8::boolean, " +
      seq +
      ", $11::bigint, now(), now() + $10::bigint * interval '1 millisecond' "
      "WHERE $9::boolean AND NOT EXISTS (SELECT 1 FROM me) "
      "AND NOT EXISTS (SELECT 1 FROM mine) "
      "AND NOT EXISTS (SELECT 1 FROM cur WHERE live AND nonce = $3::text) "
      "ON CONFLICT (name, nonce) DO NOTHING RETURNING 1), "
      "marked AS (UPDATE " +
      locks +
      " SET waiters_until = now() + $7::bigint * interval "
      "'1 millisecond' WHERE name IN (SELECT name FROM " +
      locks +
      " WHERE $6::boolean "
      "AND name = $1::text AND nonce <> $3::text AND expires_at > now() "
      "AND waiters_until < now() + $7::bigint * interval '500 microseconds' "
      "FOR UPDATE SKIP LOCKED) RETURNING 1) "
      "SELECT true, token, acquired_us, expires_us, false AS queued, NULL AS unflushed FROM mine "
      "UNION ALL SELECT false, cur.left_us, (SELECT count(*) FROM marked), "
      "CASE WHEN cur.mark_due THEN 1 ELSE 0 END, "
      "EXISTS (SELECT 1 FROM refreshed) OR EXISTS (SELECT 1 FROM queued), "
      "CASE WHEN $6::boolean OR $9::boolean THEN " +
      unflushed +
      " END "
      "FROM (SELECT 1) one LEFT JOIN cur ON true WHERE NOT EXISTS (SELECT 1 FROM mine)";
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
  // still believes in the newer renewal. Only extending keeps every successful renewal's
  // `sent + ttl` a lower bound on the row's expiry, whatever arrives later.
  // The current rows are read by LATERAL subqueries (LIMIT 1 keeps them from being flattened
  // into a join): json_to_recordset is estimated at 100 rows, and a plain LEFT JOIN was
  // planned as a hash join over a sequential scan of the whole table (4 ms per renewal at
  // 20,000 lock rows, measured; growing with the table), where this is one index probe per
  // lease.
  renew =
      "WITH req AS (SELECT * FROM json_to_recordset($1::json) "
      "AS r(i integer, n text, o text, t bigint, ms bigint)), "
      "mine AS (SELECT l.name FROM " +
      locks +
      " l JOIN req ON l.name = req.n "
      "WHERE l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
      "FOR UPDATE OF l SKIP LOCKED), "
      "renewed AS (UPDATE " +
      locks +
      " l SET expires_at = GREATEST(l.expires_at, now() + "
      "req.ms * interval '1 millisecond') FROM req WHERE l.name = req.n AND l.nonce = req.o "
      "AND l.token = req.t AND l.expires_at > now() AND l.name IN (SELECT name FROM mine) "
      "RETURNING req.i, " +
      epoch_us("l.expires_at") +
      " AS expires_us) "
      "SELECT req.i, renewed.expires_us, cur.nonce, cur.token, cur.expires_at > now() "
      "FROM req LEFT JOIN renewed ON renewed.i = req.i "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at FROM " +
      locks + " c WHERE c.name = req.n LIMIT 1) cur ON true ORDER BY req.i";
  renew_mixed =
      "WITH req AS (SELECT * FROM json_to_recordset($1::json) "
      "AS r(i integer, k integer, n text, o text, t bigint, ms bigint)), "
      "mine AS (SELECT l.name FROM " +
      locks +
      " l JOIN req ON l.name = req.n "
      "WHERE req.k = 0 AND l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
      "FOR UPDATE OF l SKIP LOCKED), "
      "renewed AS (UPDATE " +
      locks +
      " l SET expires_at = GREATEST(l.expires_at, now() + "
      "req.ms * interval '1 millisecond') FROM req WHERE req.k = 0 AND l.name = req.n "
      "AND l.nonce = req.o AND l.token = req.t AND l.expires_at > now() "
      "AND l.name IN (SELECT name FROM mine) "
      "RETURNING req.i, " +
      epoch_us("l.expires_at") +
      " AS expires_us), "
      "hmine AS (SELECT h.name, h.nonce FROM " +
      holders +
      " h JOIN req "
      "ON h.name = req.n AND h.nonce = req.o WHERE req.k = 1 AND h.token = req.t "
      "AND h.expires_at > now() FOR UPDATE OF h SKIP LOCKED), "
      "hrenewed AS (UPDATE " +
      holders +
      " h SET expires_at = GREATEST(h.expires_at, now() + "
      "req.ms * interval '1 millisecond') FROM req WHERE req.k = 1 AND h.name = req.n "
      "AND h.nonce = req.o AND h.token = req.t AND h.expires_at > now() "
      "AND (h.name, h.nonce) IN (SELECT name, nonce FROM hmine) "
      "RETURNING req.i, " +
      epoch_us("h.expires_at") +
      " AS expires_us) "
      "SELECT req.i, coalesce(renewed.expires_us, hrenewed.expires_us), "
      "coalesce(cur.nonce, hcur.nonce), coalesce(cur.token, hcur.token), "
      "coalesce(cur.expires_at, hcur.expires_at) > now(), coalesce(hcur.forced, false) "
      "FROM req LEFT JOIN renewed ON renewed.i = req.i "
      "LEFT JOIN hrenewed ON hrenewed.i = req.i "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at FROM " +
      locks +
      " c WHERE req.k = 0 AND c.name = req.n LIMIT 1) cur ON true "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at, c.forced FROM " +
      holders +
      " c WHERE req.k = 1 AND c.name = req.n AND c.nonce = req.o LIMIT 1) hcur ON true "
      "ORDER BY req.i";
  // Release, abandon and force release notify ONLY when a waiter marked the row: a
  // notifying commit takes a server-wide lock and defeats group commit.
  //
  // Release and abandon do not wait for a row locked by another open transaction (a fenced
  // transaction holding sqlock_assert_held's share lock, possibly opened by the very thread
  // that is releasing: waiting would deadlock it). They answer rows of (ended, notified,
  // locked): a row with `locked` reports such a row, and the client then retries the release
  // in the background (row_locked, include/sqlock/backend.hpp); `ended` says a lease was live.
  const std::string mine =
      "name = $1::text AND nonce = $2::text AND ($3::bigint IS NULL OR token = $3::bigint) "
      "AND expires_at > now()";
  //
  // A release, abandon or semaphore release commits WITHOUT waiting for its WAL flush
  // (synchronous_commit off for that transaction alone, set_config(..., true)): only a grant
  // must be durable. A release lost in a crash leaves the row held until it expires, as if the
  // holder had died: no overlap (its holder stopped using the lease before releasing), and no
  // token goes back (the next grant is durable, and the WAL is flushed in order, so it carries
  // every earlier release with it). That makes an uncontended cycle one durable commit, not
  // two. An admin's force release stays durable: its caller is told the lease is over.
  const std::string notify_select =
      "SELECT true, CASE WHEN waited THEN pg_notify($4::text, $1::text)::text END, false "
      "FROM ended";
  // The handoff (schema 4): when the lease ends and a live ticket waits, the same UPDATE grants
  // the row to the oldest one (`head`): a new token, the ticket's nonce, owner and metadata,
  // and an expiry of clock_timestamp() + its ttl. The ticket is deleted, and the handoff channel
  // carries the grant to the waiter ("<nonce> <token> <attempt> <acquired_us> <expires_us>
  // <name>"), so no other waiter wakes and the waiter needs no further round trip. Such a
  // release IS a grant: it stays durable. Why the waiter's local clock may start at the sending
  // of the attempt the ticket shows (`attempt`): `head` locks the ticket FOR UPDATE, which
  // waits for a refresh in flight and then reads the newest committed version, so that
  // attempt had executed before the lock was granted; the expiry is computed by the UPDATE's
  // SET list, for a row the join produced after that lock; clock_timestamp() (not now(), the
  // statement's start) is the time of that computation. So expiry >= (attempt's arrival) + ttl
  // >= (attempt's sending) + ttl. The head waits for a ticket being refreshed rather than
  // skipping it (strict order); no waiter holds its ticket while waiting for a lock row (an
  // attempt skips locked lock rows), so this cannot deadlock. A lapsed ticket is passed over.
  //
  // Columns: ended, the name notification, locked, the unflushed setting, then the handoff's
  // nonce, token, attempt, acquired_us, expires_us (NULLs when nothing was handed over). $5 is
  // the handoff channel.
  auto lock_release = [&](const std::string& lock_clause, bool report_locked) {
    std::string q =
        "WITH target AS (SELECT name, waiters_until > now() AS waited FROM " + locks + " WHERE " +
        mine + " FOR UPDATE" + lock_clause +
        "), "
        "head AS (SELECT w.nonce, w.owner, w.metadata, w.ttl_ms, w.attempt FROM " +
        waiters +
        " w WHERE EXISTS (SELECT 1 FROM target) AND w.name = $1::text "
        "AND w.nonce <> $2::text AND w.expires_at > now() ORDER BY w.ticket LIMIT 1 FOR UPDATE), "
        "ended AS (UPDATE " +
        locks +
        " l SET nonce = coalesce(h.nonce, l.nonce), owner = coalesce(h.owner, l.owner), "
        "metadata = coalesce(h.metadata, l.metadata), "
        "token = CASE WHEN h.nonce IS NULL THEN l.token ELSE GREATEST(" +
        seq +
        ", l.token + 1) END, "
        "acquired_at = CASE WHEN h.nonce IS NULL THEN l.acquired_at ELSE clock_timestamp() END, "
        "expires_at = CASE WHEN h.nonce IS NULL THEN now() "
        "ELSE clock_timestamp() + h.ttl_ms * interval '1 millisecond' END "
        "FROM target LEFT JOIN head h ON true WHERE l.name = target.name "
        "RETURNING target.waited, h.nonce AS next, h.attempt, l.token, " +
        epoch_us("l.acquired_at") + " AS acquired_us, " + epoch_us("l.expires_at") +
        " AS expires_us), "
        "taken AS (DELETE FROM " +
        waiters +
        " WHERE name = $1::text AND nonce IN (SELECT next FROM ended WHERE next IS NOT NULL) "
        "RETURNING 1) "
        "SELECT true, CASE WHEN next IS NULL AND waited THEN pg_notify($4::text, $1::text)::text "
        "WHEN next IS NOT NULL THEN pg_notify($5::text, next || ' ' || token || ' ' || attempt "
        "|| ' ' || acquired_us || ' ' || expires_us || ' ' || $1::text)::text END, false, "
        "CASE WHEN next IS NULL THEN " +
        unflushed + " END, next, token, attempt, acquired_us, expires_us FROM ended";
    if (report_locked)
      q += " UNION ALL SELECT false, NULL, true, NULL, NULL, NULL::bigint, NULL::bigint, "
           "NULL::bigint, NULL::bigint FROM " +
           locks + " WHERE " + mine + " AND NOT EXISTS (SELECT 1 FROM target)";
    return q;
  };
  release = lock_release(" SKIP LOCKED", true);
  abandon = release;  // called with a NULL token: any lease carrying the nonce
  // A waiter that leaves (abandon) first drops its ticket, in a statement of its own: once that
  // committed, no release can hand it the lock any more, and one that did so before (consuming
  // the ticket) committed before this DELETE finished, so the release by nonce that follows,
  // in a later snapshot, sees that grant and hands it on. Deleting the ticket and ending the
  // lease in ONE statement would miss it: the statement's snapshot predates the handoff.
  leave_queue = "DELETE FROM " + waiters + " WHERE name = $1::text AND nonce = $2::text";
  // The user's release first waits for the row like any UPDATE (briefly: see release()):
  // contenders' refused upserts lock it for a moment after every grant, and skipping those
  // cost 25% of grants/s under 8-client contention (A/B measured: 224-228 vs 287-313).
  release_waiting = lock_release("", false);
  // nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
  // An admin's force release does wait for an open fenced transaction (bounded by its
  // deadline): that transaction is exactly what it must not break into.
  force = "WITH ended AS (UPDATE " + locks +
          " SET expires_at = now(), nonce = '' "
          "WHERE name = $1::text AND $2::text IS NULL AND $3::bigint IS NULL "
          "AND expires_at > now() RETURNING waiters_until > now() AS waited) " +
          notify_select;
  const std::string columns = "name, owner, metadata, token, " + epoch_us("acquired_at") + ", " +
                              epoch_us("expires_at") + ", " + epoch_us("expires_at - now()");
  inspect = "SELECT " + columns + " FROM " + locks + " WHERE name = $1::text";
  inspect_waiters = "SELECT owner, ticket, fair, " + epoch_us("since") + ", " +
                    epoch_us("expires_at - now()") + " FROM " + waiters +
                    " WHERE name = $1::text AND expires_at > now() ORDER BY ticket";
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
      "WITH cur AS (SELECT " + columns +
      ", expires_at > now() AND waiters_until < now() + "
      "$2::bigint * interval '500 microseconds' AS mark_due FROM " +
      locks +
      " WHERE name = $1::text), "
      "marked AS (UPDATE " +
      locks +
      " SET waiters_until = now() + $2::bigint * "
      "interval '1 millisecond' WHERE name IN (SELECT name FROM " +
      locks +
      " WHERE "
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
  sem_acquire = "SELECT granted, token, acquired_us, expires_us, retry_us FROM " + schema_ident +
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
      "$1::text)::text END, false, " +
      unflushed + " FROM w WHERE EXISTS (SELECT 1 FROM changed)";
  sem_release = "WITH target AS (SELECT name, nonce FROM " + holders + " WHERE " + hmine +
                " FOR UPDATE SKIP LOCKED), "
                "ended AS (UPDATE " +
                holders +
                " h SET expires_at = now() FROM target "
                "WHERE h.name = target.name AND h.nonce = target.nonce RETURNING 1), "
                "gone AS (DELETE FROM " +
                tickets +
                " k WHERE $3::bigint IS NULL AND (k.name, k.nonce) "
                "IN (SELECT x.name, x.nonce FROM " +
                tickets +
                " x WHERE x.name = $1::text "
                "AND x.nonce = $2::text FOR UPDATE SKIP LOCKED) RETURNING 1), "
                "changed AS (SELECT 1 FROM ended UNION ALL SELECT 1 FROM gone), " +
                sem_notify + " UNION ALL SELECT false, NULL, true, NULL FROM " + holders +
                " WHERE " + hmine + " AND NOT EXISTS (SELECT 1 FROM target)";
  sem_abandon = sem_release;  // called with a NULL token
  sem_release_waiting = "WITH ended AS (UPDATE " + holders + " SET expires_at = now() WHERE " +
                        hmine + " RETURNING 1), changed AS (SELECT 1 FROM ended), " + sem_notify;
  // $1 name, $2 token (0: every live holder), $3 channel. Waits for a fenced transaction,
  // like the lock's force release. `forced` tells the holder why its renewal failed. The
  // wake-up as for a release (the count, an aggregate, makes every holder row ended first).
  sem_force = "WITH ended AS (UPDATE " + holders +
              " SET expires_at = now(), forced = true "
              "WHERE name = $1::text AND ($2::bigint = 0 OR token = $2::bigint) "
              "AND expires_at > now() RETURNING 1), "
              "n AS (SELECT count(*) AS n FROM ended), "
              "sem AS (SELECT waiters_until > now() AS waited FROM " +
              semaphores +
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
           epoch_us("k.expires_at") + ", " + epoch_us("k.expires_at - now()") + " FROM " + tickets +
           " k JOIN sel ON k.name = sel.name WHERE k.expires_at > now() "
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
