// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend's lock statements: acquire (with the queue), renew, release (with the
// handoff), force, inspect and list. A part of the constructor of `statements` (statements.cpp).

#include "backends/postgresql/statements.hpp"

namespace sqlock::detail::pg {

void statements::lock_statements() {
  const std::string& seq = next_token;
  // The grant's upsert onto an existing row (after `INSERT INTO locks AS l ... SELECT ...`): only
  // a lapsed lease is replaced, and its token becomes GREATEST(nextval, token + 1), so tokens
  // strictly increase per name even across a failover or a purge. The single and the
  // all-or-nothing acquire share it.
  const std::string regrant_lapsed =
      " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, "
      "token = GREATEST(" +
      seq +
      ", l.token + 1), acquired_at = excluded.acquired_at, "
      "expires_at = excluded.expires_at, metadata = excluded.metadata "
      "WHERE l.expires_at <= now() ";
  // Commits of soft state (a release, a waiter's ticket and mark) do not wait for their WAL
  // flush: see the releases below.
  const std::string unflushed = unflushed_commit;
  // $1 name, $2 owner, $3 nonce, $4 metadata, $5 ttl ms, $6 waiting (mark), $7 waiter mark ms,
  // $8 fair, $9 queue, $10 ticket ms, $11 attempt number, $12 the first term of a lock handed
  // to this waiter (ms), $13 the channel a handoff to this waiter notifies (schema 5: this
  // client's own, so a handoff wakes no other client).
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
  // `free` and `granted`, shared by both acquire statements: $1 name, $2 owner, $3 nonce, $4
  // metadata, $5 ttl ms; they read `cur` (live) and `eligible` (ok).
  const std::string grant_if_free =
      "free AS (SELECT 1 FROM " + locks +
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
      "AND (NOT EXISTS (SELECT 1 FROM cur) OR EXISTS (SELECT 1 FROM free))" +
      regrant_lapsed + "RETURNING l.token, " + epoch_us("l.acquired_at") + " AS acquired_us, " +
      epoch_us("l.expires_at") + " AS expires_us), ";
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
      "AND w.ticket < coalesce((SELECT ticket FROM me), 9223372036854775807)) AS ok), " +
      grant_if_free +
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
      " (name, nonce, owner, metadata, ttl_ms, fair, ticket, attempt, since, expires_at, "
      "channel) SELECT $1::text, $3::text, $2::text, $4::text, $12::bigint, "
      "$8::boolean, " +
      seq +
      ", $11::bigint, now(), now() + $10::bigint * interval '1 millisecond', $13::text "
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
  // An attempt that will not wait (a plain try, the first attempt of no wait): `acquire`
  // without the queue, whose parts are all inert for it (no mark, no ticket to take or
  // refresh, no earlier attempt a release could have handed the lock to). It still keeps
  // fairness (no grant past a live ticket of another nonce) and drops a ticket of its nonce
  // when granted. Result rows as `acquire`'s. An uncontended cycle's cost: bench/notes.md.
  // $1 name, $2 owner, $3 nonce, $4 metadata, $5 ttl ms, $6 fair.
  acquire_try =
      "WITH cur AS (SELECT expires_at > now() AS live, " + epoch_us("expires_at - now()") +
      " AS left_us FROM " + locks +
      " WHERE name = $1::text), "
      "eligible AS (SELECT NOT $6::boolean OR NOT EXISTS (SELECT 1 FROM " +
      waiters +
      " w WHERE w.name = $1::text AND w.nonce <> $3::text AND w.expires_at > now()) AS ok), " +
      grant_if_free + "dropped AS (DELETE FROM " + waiters +
      " WHERE EXISTS (SELECT 1 FROM granted) AND name = $1::text AND nonce = $3::text "
      "RETURNING 1) "
      "SELECT true, token, acquired_us, expires_us, false AS queued, NULL AS unflushed "
      "FROM granted UNION ALL SELECT false, cur.left_us, 0, 0, false, NULL "
      "FROM (SELECT 1) one LEFT JOIN cur ON true WHERE NOT EXISTS (SELECT 1 FROM granted)";
  // Several locks, all or nothing, in ONE statement. $1: json array of {i, n (name), o (nonce),
  // w (owner), m (metadata), ms (ttl)}, names distinct and in byte order; $2 mark the held rows
  // for a wake-up (a waiting attempt), $3 the mark's length in ms.
  //
  // As in `acquire`: `cur` reads the rows with the statement's snapshot (one index probe per
  // name, see `renew` on json_to_recordset), and `granted` inserts only when every name looks
  // free: no live row, and every expired row locked by `free` (SKIP LOCKED: never waiting for a
  // fenced transaction or a concurrent grant, so a refusal answers at once and two such
  // statements cannot deadlock on the rows they found). So a refusal seen in the snapshot
  // writes nothing but the marks. Rows are inserted in name order, the order every statement of
  // this kind takes their locks in.
  //
  // The race the snapshot cannot see: a row missing from it that a concurrent grant inserted
  // (and still holds) before our INSERT reached it. ON CONFLICT then finds it live and grants
  // nothing for that name while the other names were granted. The last column then divides
  // by zero: the statement fails and its implicit transaction rolls back every grant (the
  // backend reports a refusal). The divisor depends on a subquery, so the planner cannot fold
  // it and raise the error in a statement that grants all names or none. Tokens drawn by a
  // rolled-back attempt are burnt (a sequence is not transactional), which only leaves a gap.
  //
  // Columns per request: i, token, acquired_us, expires_us (NULL when not granted), whether a
  // row exists, is live, its left_us, whether its mark was due and written, whether the name
  // blocked the attempt, and the guard.
  acquire_all =
      "WITH req AS (SELECT * FROM json_to_recordset($1::json) "
      "AS r(i integer, n text, o text, w text, m text, ms bigint)), "
      "cur AS (SELECT c.name, c.nonce, c.expires_at > now() AS live, " +
      epoch_us("c.expires_at - now()") +
      " AS left_us, c.waiters_until < now() + $3::bigint * interval '500 microseconds' "
      "AS mark_due FROM req CROSS JOIN LATERAL (SELECT x.name, x.nonce, x.expires_at, "
      "x.waiters_until FROM " +
      locks +
      " x WHERE x.name = req.n LIMIT 1) c), "
      "free AS (SELECT l.name FROM " +
      locks +
      " l WHERE l.name = ANY (ARRAY(SELECT name FROM cur WHERE NOT live)) "
      "AND l.expires_at <= now() AND NOT EXISTS (SELECT 1 FROM cur WHERE live) "
      "ORDER BY l.name FOR UPDATE SKIP LOCKED), "
      "ok AS (SELECT NOT EXISTS (SELECT 1 FROM cur WHERE live) "
      "AND (SELECT count(*) FROM free) = (SELECT count(*) FROM cur) AS all_free), "
      "granted AS (INSERT INTO " +
      locks +
      " AS l (name, owner, nonce, token, acquired_at, expires_at, metadata) "
      "SELECT req.n, req.w, req.o, " +
      seq +
      ", now(), now() + req.ms * interval '1 millisecond', req.m FROM req "
      "WHERE (SELECT all_free FROM ok) ORDER BY req.n" +
      regrant_lapsed + "RETURNING l.name, l.token, " + epoch_us("l.acquired_at") +
      " AS acquired_us, " + epoch_us("l.expires_at") +
      " AS expires_us), "
      "marked AS (UPDATE " +
      locks +
      " SET waiters_until = now() + $3::bigint * interval '1 millisecond' "
      "WHERE name IN (SELECT x.name FROM " +
      locks +
      " x WHERE $2::boolean AND NOT (SELECT all_free FROM ok) "
      "AND x.name = ANY (ARRAY(SELECT name FROM cur WHERE live AND mark_due)) "
      "AND x.expires_at > now() "
      "AND x.waiters_until < now() + $3::bigint * interval '500 microseconds' "
      "ORDER BY x.name FOR UPDATE SKIP LOCKED) RETURNING name) "
      "SELECT req.i, g.token, g.acquired_us, g.expires_us, c.name IS NOT NULL, "
      "coalesce(c.live, false), c.left_us, coalesce(c.live AND c.mark_due, false), "
      "EXISTS (SELECT 1 FROM marked k WHERE k.name = req.n), "
      "NOT (SELECT all_free FROM ok) AND (coalesce(c.live, false) OR (c.name IS NOT NULL "
      "AND NOT EXISTS (SELECT 1 FROM cur WHERE live) "
      "AND c.name NOT IN (SELECT name FROM free))), "
      "1 / CASE WHEN (SELECT count(*) FROM granted) IN (0, (SELECT count(*) FROM req)) "
      "THEN 1 ELSE 0 END "
      "FROM req LEFT JOIN granted g ON g.name = req.n LEFT JOIN cur c ON c.name = req.n "
      "ORDER BY req.i";
  // A live lease's metadata (an election's proclaim), matched on name, nonce and token: never an
  // ended lease's. Like a release it does not wait for a row locked by another open transaction
  // (a fenced one, possibly the caller's own): such a row is reported `locked`, and the backend
  // looks again briefly before giving up. It notifies only when a waiter or observer marked the
  // row, as releases do. $1 name, $2 nonce, $3 token, $4 metadata, $5 the channel. Rows of
  // (updated, notified, locked).
  set_metadata =
      "WITH target AS (SELECT name, waiters_until > now() AS waited FROM " + locks +
      " WHERE name = $1::text AND nonce = $2::text AND token = $3::bigint AND expires_at > now() "
      "FOR UPDATE SKIP LOCKED), "
      "updated AS (UPDATE " +
      locks +
      " l SET metadata = $4::text FROM target WHERE l.name = target.name "
      "RETURNING target.waited) "
      "SELECT true, CASE WHEN waited THEN pg_notify($5::text, $1::text)::text END, false "
      "FROM updated UNION ALL SELECT false, NULL, true FROM " +
      locks +
      " WHERE name = $1::text AND nonce = $2::text AND token = $3::bigint "
      "AND expires_at > now() AND NOT EXISTS (SELECT 1 FROM target)";
  // $1: json array of {i, k (0 lock, 1 semaphore holder), n (name), o (nonce), t (token),
  // ms (ttl)}. `renew` handles locks only (k is ignored): a batch without semaphore leases
  // touches no semaphore table (no plan over them, no grant on them needed); `renew_mixed`
  // renews both kinds in the same one statement.
  // Rows locked by another open transaction (a fenced transaction's share lock from
  // sqlock_assert_held or sqlock_semaphore_assert_held) are skipped, not waited for, and
  // reported busy. The other outcomes are classified from the statement's snapshot, like the
  // SQLite backend does. Columns: i, new expiry (NULL when not renewed), the row's nonce,
  // token and liveness (NULLs when there is no row), and (renew_mixed) a holder's forced flag.
  // A semaphore holder an admin ended (`forced`) is never renewed: its nonce stays, and a
  // renewal whose statement started before the force release committed would otherwise find
  // the row live by its own (earlier) now() and revive it (seen in CI: a forced holder's units
  // counted again for one ttl). A force-released lock changes its nonce to '', which no renewal
  // matches.
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
  // Schema 9: the three last columns are the renewed lease's time left by the database clock
  // (its expiry minus now(): shorter than the ttl when a release request caps it), the time
  // left until a pending release request's deadline (NULL when none), and whether a lease
  // that was not renewed carries a release request (it ended by the request's deadline).
  // Both times come from the UPDATE's RETURNING, which sees the newest row version: a request
  // that committed after the statement's snapshot was taken is still reported.
  const auto renewed_extra = [](const std::string& r) {
    return epoch_us(r + ".expires_at - now()") + " AS left_us, CASE WHEN " + r +
           ".revoke_token = " + r + ".token THEN " + epoch_us(r + ".revoke_by - now()") +
           " END AS revoke_us";
  };
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
      epoch_us("l.expires_at") + " AS expires_us, " + renewed_extra("l") +
      ") "
      "SELECT req.i, renewed.expires_us, cur.nonce, cur.token, cur.expires_at > now(), "
      "renewed.left_us, renewed.revoke_us, cur.revoke_token = cur.token "
      "FROM req LEFT JOIN renewed ON renewed.i = req.i "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at, c.revoke_token FROM " +
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
      epoch_us("l.expires_at") + " AS expires_us, " + renewed_extra("l") +
      "), "
      "hmine AS (SELECT h.name, h.nonce FROM " +
      holders +
      " h JOIN req "
      "ON h.name = req.n AND h.nonce = req.o WHERE req.k = 1 AND h.token = req.t "
      "AND h.expires_at > now() AND NOT h.forced FOR UPDATE OF h SKIP LOCKED), "
      "hrenewed AS (UPDATE " +
      holders +
      " h SET expires_at = GREATEST(h.expires_at, now() + "
      "req.ms * interval '1 millisecond') FROM req WHERE req.k = 1 AND h.name = req.n "
      "AND h.nonce = req.o AND h.token = req.t AND h.expires_at > now() AND NOT h.forced "
      "AND (h.name, h.nonce) IN (SELECT name, nonce FROM hmine) "
      "RETURNING req.i, " +
      epoch_us("h.expires_at") + " AS expires_us, " + renewed_extra("h") +
      ") "
      "SELECT req.i, coalesce(renewed.expires_us, hrenewed.expires_us), "
      "coalesce(cur.nonce, hcur.nonce), coalesce(cur.token, hcur.token), "
      "coalesce(cur.expires_at, hcur.expires_at) > now(), coalesce(hcur.forced, false), "
      "coalesce(renewed.left_us, hrenewed.left_us), "
      "coalesce(renewed.revoke_us, hrenewed.revoke_us), "
      "coalesce(cur.revoke_token = cur.token, hcur.revoke_token = hcur.token) "
      "FROM req LEFT JOIN renewed ON renewed.i = req.i "
      "LEFT JOIN hrenewed ON hrenewed.i = req.i "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at, c.revoke_token FROM " +
      locks +
      " c WHERE req.k = 0 AND c.name = req.n LIMIT 1) cur ON true "
      "LEFT JOIN LATERAL (SELECT c.nonce, c.token, c.expires_at, c.forced, c.revoke_token FROM " +
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
  // and an expiry of clock_timestamp() + its ttl. The ticket is deleted, and a notification on
  // the channel the ticket names (schema 5: the waiting client's own; $5, the releasing
  // client's, for a ticket without one) carries the grant to the waiter ("<nonce> <token>
  // <attempt> <acquired_us> <expires_us> <name>"), so no other client wakes and the waiter
  // needs no further round trip. Such a
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
  // the releasing client's handoff channel (the fallback above).
  // `lost` (schema 10): the abandon of a grant the client never learnt of marks its transaction
  // (sqlock.ending, transaction-local) so that the history trigger records the lease it ends as
  // 'lost'. The mark sits in `target`'s WHERE, so it is set whenever a row is ended; AFTER
  // triggers run at the end of the statement, after it.
  auto lock_release = [&](const std::string& lock_clause, bool report_locked, bool lost = false) {
    std::string q =
        "WITH target AS (SELECT name, waiters_until > now() AS waited FROM " + locks + " WHERE " +
        mine + (lost ? " AND pg_catalog.set_config('sqlock.ending', 'lost', true) = 'lost'" : "") +
        " FOR UPDATE" + lock_clause +
        "), "
        "head AS (SELECT w.nonce, w.owner, w.metadata, w.ttl_ms, w.attempt, w.channel FROM " +
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
        "RETURNING target.waited, h.nonce AS next, h.attempt, h.channel, l.token, " +
        epoch_us("l.acquired_at") + " AS acquired_us, " + epoch_us("l.expires_at") +
        " AS expires_us), "
        "taken AS (DELETE FROM " +
        waiters +
        " WHERE name = $1::text AND nonce IN (SELECT next FROM ended WHERE next IS NOT NULL) "
        "RETURNING 1) "
        "SELECT true, CASE WHEN next IS NULL AND waited THEN pg_notify($4::text, $1::text)::text "
        "WHEN next IS NOT NULL THEN pg_notify(coalesce(nullif(channel, ''), $5::text), "
        "next || ' ' || token || ' ' || attempt "
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
  abandon_lost = lock_release(" SKIP LOCKED", true, true);
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
  // Schema 9, a release request ($1 name, $2 token or 0 for any, $3 grace ms, $4 the wake-up
  // channel): marks the live lease with its token and a deadline (never later than one an
  // earlier request on this lease set: LEAST skips the NULL of an unmarked row), caps its
  // expiry there, and notifies the name as a release does, so a holder listening on
  // PostgreSQL hears at once. Every SET expression reads the row as it was.
  const auto request = [&](const std::string& table) {
    const std::string deadline =
        "LEAST(CASE WHEN revoke_token = token THEN revoke_by END, "
        "now() + $3::bigint * interval '1 millisecond')";
    return "WITH marked AS (UPDATE " + table +
           " SET revoke_token = token, revoke_by = " + deadline +
           ", expires_at = LEAST(expires_at, " + deadline +
           ") WHERE name = $1::text AND ($2::bigint = 0 OR token = $2::bigint) "
           "AND expires_at > now() RETURNING 1) "
           "SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify($4::text, $1::text)::text "
           "END FROM marked";
  };
  request_release = request(locks);
  sem_request_release = request(holders);
  const std::string columns = "name, owner, metadata, token, " + epoch_us("acquired_at") + ", " +
                              epoch_us("expires_at") + ", " + epoch_us("expires_at - now()");
  inspect = "SELECT " + columns + " FROM " + locks + " WHERE name = $1::text";
  inspect_waiters = "SELECT owner, ticket, fair, " + epoch_us("since") + ", " +
                    epoch_us("expires_at - now()") + " FROM " + waiters +
                    " WHERE name = $1::text AND expires_at > now() ORDER BY ticket";
  // A byte-prefix range on the primary key (COLLATE "C"), not LIKE.
  // The last column counts the live tickets of the lock's queue.
  list = "SELECT " + columns + ", (SELECT count(*) FROM " + waiters + " w WHERE w.name = " + locks +
         ".name AND w.expires_at > now()) FROM " + locks +
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
}

}  // namespace sqlock::detail::pg
