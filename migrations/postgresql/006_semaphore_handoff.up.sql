-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 6 for PostgreSQL: semaphores hand released units straight to the queue, and a
-- grant costs 4 statements inside the function instead of 13.
-- 1. A fair waiter's ticket carries what a grant to it must carry (metadata, the first term
--    `ttl_ms`), the number of its last attempt and its client's NOTIFY channel, as a lock's
--    queue ticket does (004, 005).
-- 2. sqlock_semaphore_release ends a holder and, when live tickets wait, hands the room it made
--    to the oldest ones in ticket order, as many as fit (a new holder row each, a new token, the
--    ticket gone), notifying each waiter's own channel with its grant. Strict order: a head that
--    does not fit blocks the tickets behind it.
-- 3. sqlock_semaphore_attempt replaces sqlock_semaphore_acquire for this library version: the
--    same decisions with fewer statements (one look, one lock, one count, one grant), the ticket
--    columns above, and a later attempt of a wait that finds its nonce already holding (handed
--    to it, the notification lost) returns that grant. sqlock_semaphore_acquire stays, unused,
--    so that the down migration restores schema 5 exactly.
-- The runtime role needs EXECUTE on both new functions (README: PostgreSQL); roles that have it
-- on sqlock_semaphore_acquire when this runs get it here, so a running application's role keeps
-- working once it is upgraded.

-- search_path is pinned as in 001_locks.up.sql (see there why): the target schema, then pg_temp.
DO $pin$
DECLARE
  target text := pg_catalog.current_schema();
BEGIN
  IF target IS NULL OR target = 'pg_catalog'
     OR pg_catalog.quote_ident(target)::regnamespace = pg_catalog.pg_my_temp_schema() THEN
    RAISE EXCEPTION USING ERRCODE = '3F000', MESSAGE = pg_catalog.format(
      'sqlock: no usable target schema (current_schema() is %s): set search_path to the '
      'schema for sqlock''s objects', coalesce(target, 'NULL'));
  END IF;
  PERFORM pg_catalog.set_config('search_path', pg_catalog.quote_ident(target) || ', pg_temp', true);
END
$pin$;
DO $pin$
DECLARE
  target text := pg_catalog.current_schema();
BEGIN
  IF pg_catalog.current_setting('search_path') <> pg_catalog.quote_ident(target) || ', pg_temp'
  THEN
    IF target IS NULL OR target = 'pg_catalog'
       OR pg_catalog.quote_ident(target)::regnamespace = pg_catalog.pg_my_temp_schema() THEN
      RAISE EXCEPTION USING ERRCODE = '3F000', MESSAGE = 'sqlock: no usable target schema';
    END IF;
    PERFORM pg_catalog.set_config('search_path', pg_catalog.quote_ident(target) || ', pg_temp',
                                  false);
  END IF;
END
$pin$;

ALTER TABLE sqlock_semaphore_tickets
  ADD COLUMN metadata text   NOT NULL DEFAULT '' CHECK (octet_length(metadata) <= 4096),
  ADD COLUMN ttl_ms   bigint NOT NULL DEFAULT 0,
  ADD COLUMN attempt  bigint NOT NULL DEFAULT 0,
  ADD COLUMN channel  text   NOT NULL DEFAULT '' CHECK (octet_length(channel) <= 63);

-- One grant attempt, in one round trip (see sqlock_semaphore_acquire in 002 for why a function:
-- the count must run in a snapshot taken after the semaphore row's lock). Parameters as there,
-- then: p_attempt, the number of this attempt within its wait (from 1); p_handoff_ms, the first
-- term of units a release hands to this waiter (its ticket's ttl_ms); p_handoff_channel, the
-- channel such a release notifies (this client's own). Returns one row as there.
CREATE FUNCTION sqlock_semaphore_attempt(
  p_name text, p_limit bigint, p_units bigint, p_owner text, p_nonce text, p_metadata text,
  p_ttl_ms bigint, p_waiting boolean, p_fair boolean, p_ticket_ms bigint, p_channel text,
  p_attempt bigint, p_handoff_ms bigint, p_handoff_channel text)
RETURNS TABLE (granted boolean, token bigint, acquired_us bigint, expires_us bigint,
               retry_us bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
  sem_limit  bigint;
  sem_token  bigint;
  sem_mark   timestamptz;
  used       bigint;
  head       bigint;
  mine       bigint;
  soonest    timestamptz;
  ticket_end timestamptz;
  new_token  bigint;
  acq_us     bigint;
  exp_us     bigint;
  marked     boolean := false;
BEGIN
  IF p_units < 1 OR p_units > p_limit OR p_limit > 1000000000 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock: semaphore %L: count %s must be between 1 and the limit %s', p_name, p_units, p_limit);
  END IF;
  -- 0. A later attempt of a wait: a release may have handed units to this nonce (its
  --    notification lost or not yet read). The holder row is extended as a renewal would (never
  --    shortened) and returned, so the waiter's clock can start at this attempt. Only fair
  --    waiters queue with tickets, so only they can have been handed units.
  IF p_attempt > 1 AND p_fair THEN
    UPDATE sqlock_semaphore_holders h
    SET expires_at = greatest(h.expires_at, now() + p_ttl_ms * interval '1 millisecond')
    WHERE (h.name, h.nonce) IN (
      SELECT x.name, x.nonce FROM sqlock_semaphore_holders x
      WHERE x.name = p_name AND x.nonce = p_nonce AND x.expires_at > now()
      FOR UPDATE SKIP LOCKED)
    RETURNING h.token, (extract(epoch FROM h.acquired_at) * 1000000)::bigint,
              (extract(epoch FROM h.expires_at) * 1000000)::bigint
    INTO new_token, acq_us, exp_us;
    IF FOUND THEN
      DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = p_nonce;
      granted := true; token := new_token; acquired_us := acq_us; expires_us := exp_us;
      retry_us := 0;
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  -- 1. Look without locking (one statement): under contention most attempts are refused here,
  --    writing nothing (a stale snapshot can only miss a release, and releases wake waiters).
  -- 2. Otherwise lock the semaphore row (creating it on first use), then count again in a new
  --    snapshot: live holders, plus lapsed ones another transaction holds locked (a fenced
  --    transaction's, see 002), and the queue.
  FOR phase IN 1..2 LOOP
    IF phase = 1 THEN
      SELECT s.sem_limit, s.token, s.waiters_until, h.used, h.soonest, k.head, k.mine, k.ticket_end
        INTO sem_limit, sem_token, sem_mark, used, soonest, head, mine, ticket_end
      FROM sqlock_semaphores s,
        LATERAL (SELECT coalesce(sum(x.units), 0) AS used, min(x.expires_at) AS soonest
                 FROM sqlock_semaphore_holders x
                 WHERE x.name = p_name AND x.expires_at > now()) h,
        LATERAL (SELECT min(y.ticket) FILTER (WHERE y.nonce <> p_nonce) AS head,
                        min(y.ticket) FILTER (WHERE y.nonce = p_nonce) AS mine,
                        min(y.expires_at) FILTER (WHERE y.nonce <> p_nonce) AS ticket_end
                 FROM sqlock_semaphore_tickets y
                 WHERE y.name = p_name AND y.expires_at > now()) k
      WHERE s.name = p_name;
      CONTINUE WHEN NOT FOUND;
    ELSE
      LOOP
        SELECT s.sem_limit, s.token, s.waiters_until INTO sem_limit, sem_token, sem_mark
        FROM sqlock_semaphores s WHERE s.name = p_name FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO sqlock_semaphores (name, sem_limit) VALUES (p_name, p_limit)
        ON CONFLICT (name) DO NOTHING;
      END LOOP;
      WITH free AS (
        SELECT x.nonce FROM sqlock_semaphore_holders x
        WHERE x.name = p_name AND x.expires_at <= now() FOR UPDATE SKIP LOCKED)
      SELECT h.used, h.soonest, k.head, k.mine, k.ticket_end
        INTO used, soonest, head, mine, ticket_end
      FROM (SELECT coalesce(sum(x.units) FILTER (WHERE x.expires_at > now()
                     OR x.nonce NOT IN (SELECT f.nonce FROM free f)), 0) AS used,
                   min(x.expires_at) FILTER (WHERE x.expires_at > now()) AS soonest
            FROM sqlock_semaphore_holders x WHERE x.name = p_name) h,
           (SELECT min(y.ticket) FILTER (WHERE y.nonce <> p_nonce) AS head,
                   min(y.ticket) FILTER (WHERE y.nonce = p_nonce) AS mine,
                   min(y.expires_at) FILTER (WHERE y.nonce <> p_nonce) AS ticket_end
            FROM sqlock_semaphore_tickets y WHERE y.name = p_name AND y.expires_at > now()) k;
    END IF;
    -- When refused, the waiter sleeps at most until a holder or an older ticket lapses.
    soonest := least(soonest, ticket_end);
    IF used > 0 AND sem_limit <> p_limit THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
        'sqlock: semaphore %L has limit %s (its live holders use it), this acquisition asks for limit %s',
        p_name, sem_limit, p_limit);
    END IF;
    -- Room, and no older live ticket (a waiter without a ticket waits behind every ticket).
    EXIT WHEN used + p_units > p_limit OR (head IS NOT NULL AND (mine IS NULL OR head < mine));
    IF phase = 2 THEN
      -- Granted, in one statement: ended holder rows and lapsed tickets go (skipping rows
      -- another transaction holds; a lapsed row of this nonce is the in-doubt case of 002 and
      -- is replaced by the INSERT instead, since one statement must not change a row twice),
      -- changed_at remembers when the last of them ended (purge), the token is drawn after
      -- the row lock and never below the semaphore's last.
      WITH gone AS (
        DELETE FROM sqlock_semaphore_holders h WHERE (h.name, h.nonce) IN (
          SELECT x.name, x.nonce FROM sqlock_semaphore_holders x
          WHERE x.name = p_name AND x.expires_at <= now() AND x.nonce <> p_nonce
          FOR UPDATE SKIP LOCKED)
        RETURNING h.expires_at
      ), gone_tickets AS (
        DELETE FROM sqlock_semaphore_tickets k WHERE (k.name, k.nonce) IN (
          SELECT x.name, x.nonce FROM sqlock_semaphore_tickets x
          WHERE x.name = p_name AND (x.expires_at <= now() OR x.nonce = p_nonce)
          FOR UPDATE SKIP LOCKED)
        RETURNING least(k.expires_at, now()) AS expires_at
      ), added AS (
        INSERT INTO sqlock_semaphore_holders AS h
          (name, nonce, owner, token, units, acquired_at, expires_at, metadata)
        VALUES (p_name, p_nonce, p_owner, greatest(nextval('sqlock_token_seq'), sem_token + 1),
                p_units, now(), now() + p_ttl_ms * interval '1 millisecond', p_metadata)
        ON CONFLICT (name, nonce) DO UPDATE SET owner = excluded.owner, token = excluded.token,
          units = excluded.units, acquired_at = excluded.acquired_at,
          expires_at = excluded.expires_at, forced = false, metadata = excluded.metadata
        RETURNING h.token
      ), noted AS (
        UPDATE sqlock_semaphores s SET token = (SELECT a.token FROM added a), sem_limit = p_limit,
          changed_at = greatest(s.changed_at, coalesce((SELECT max(e.expires_at) FROM (
            SELECT g.expires_at FROM gone g UNION ALL SELECT gt.expires_at FROM gone_tickets gt) e),
            s.changed_at))
        WHERE s.name = p_name RETURNING s.token
      )
      SELECT n.token INTO new_token FROM noted n;
      -- When room remains and waiters marked the semaphore, wake the next one (see 002).
      IF used + p_units < p_limit AND sem_mark > now() THEN
        PERFORM pg_notify(p_channel, p_name);
      END IF;
      granted := true;
      token := new_token;
      acquired_us := (extract(epoch FROM now()) * 1000000)::bigint;
      expires_us := (extract(epoch FROM now() + p_ttl_ms * interval '1 millisecond') * 1000000)::bigint;
      retry_us := 0;
      RETURN NEXT;
      RETURN;
    END IF;
  END LOOP;

  -- Refused (the semaphore row exists: phase 2 always creates it). Its writes are soft state and
  -- commit without waiting for the WAL flush (see 002).
  PERFORM set_config('synchronous_commit', 'off', true);
  -- The mark before the ticket: a release that hands units over locks the semaphore row and
  -- then the tickets, so this attempt must never hold its ticket while waiting for that row.
  IF p_waiting THEN
    UPDATE sqlock_semaphores s SET waiters_until = now() + p_ticket_ms * interval '1 millisecond'
    WHERE s.name = p_name AND s.waiters_until < now() + p_ticket_ms * interval '500 microseconds';
    marked := FOUND;
  END IF;
  IF p_fair THEN
    UPDATE sqlock_semaphore_tickets k
    SET expires_at = now() + p_ticket_ms * interval '1 millisecond', attempt = p_attempt
    WHERE k.name = p_name AND k.nonce = p_nonce AND k.expires_at > now();
    IF NOT FOUND THEN
      -- First refusal, or our ticket lapsed: a new place at the end of the queue. Not when this
      -- nonce already holds (handed units whose ticket went after our look): the next attempt
      -- takes that grant.
      DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = p_nonce;
      INSERT INTO sqlock_semaphore_tickets
        (name, nonce, owner, ticket, units, expires_at, metadata, ttl_ms, attempt, channel)
      SELECT p_name, p_nonce, p_owner, nextval('sqlock_token_seq'), p_units,
             now() + p_ticket_ms * interval '1 millisecond', p_metadata, p_handoff_ms, p_attempt,
             p_handoff_channel
      WHERE NOT EXISTS (SELECT 1 FROM sqlock_semaphore_holders h
                        WHERE h.name = p_name AND h.nonce = p_nonce AND h.expires_at > now());
    END IF;
  END IF;
  IF marked THEN
    -- A release that ended a holder after our look read no mark, so it will not notify (see
    -- 002): look again, in a new snapshot.
    SELECT h.used, k.head, k.mine INTO used, head, mine
    FROM (SELECT coalesce(sum(x.units), 0) AS used FROM sqlock_semaphore_holders x
          WHERE x.name = p_name AND x.expires_at > now()) h,
         (SELECT min(y.ticket) FILTER (WHERE y.nonce <> p_nonce) AS head,
                 min(y.ticket) FILTER (WHERE y.nonce = p_nonce) AS mine
          FROM sqlock_semaphore_tickets y WHERE y.name = p_name AND y.expires_at > now()) k;
    IF used + p_units <= p_limit AND (head IS NULL OR (mine IS NOT NULL AND mine < head)) THEN
      retry_us := 1;
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  retry_us := CASE WHEN soonest IS NULL THEN 0::bigint
              ELSE greatest((extract(epoch FROM soonest - now()) * 1000000)::bigint, 1) END;
  RETURN NEXT;
END
$fn$;

-- Ends a semaphore holder and hands the room to the queue, in one round trip. p_name, p_nonce;
-- p_token (NULL: abandon, whatever the token: the nonce's ticket goes first, then whatever it
-- holds, a handoff to it included, in a later snapshot, so a handoff that consumed the ticket
-- is seen and passed on); p_channel, the semaphore's wake-up channel; p_handoff_channel, the
-- channel for a ticket without one; p_wait: wait for the holder row (a user's release) or skip
-- it when locked (an open fenced transaction's, which a release never waits for).
-- Rows (ended, notified, locked, unflushed, next, token, attempt, acquired_us, expires_us):
-- none when nothing changed; one (false, NULL, true, ...) when the holder row is locked; else
-- one per waiter handed units (next: its nonce), or one with NULL handoff columns. `ended`: a
-- live holder ended.
--
-- The handoff locks the semaphore row (so no grant runs meanwhile), counts in a new snapshot
-- as a grant does, and takes the tickets in order FOR UPDATE (a refresh in flight is waited
-- for; see sqlock_semaphore_attempt: a refusal takes the semaphore row before its ticket, and
-- a grant holds the row, so no cycle). Why the waiter may start its clock at the sending of the
-- attempt its ticket names: that attempt's refresh committed before this statement locked the
-- ticket, and the holder's expiry is clock_timestamp() + ttl_ms, read after that lock, so it is
-- at least the attempt's arrival + ttl_ms (the lock's argument, backends/postgresql). A ticket
-- whose nonce already holds is stale (it was handed units whose ticket a refresh re-created):
-- it is dropped, never granted twice. Such a release is a grant and stays durable; one that
-- hands nothing commits without waiting for the WAL flush (004).
CREATE FUNCTION sqlock_semaphore_release(
  p_name text, p_nonce text, p_token bigint, p_channel text, p_handoff_channel text,
  p_wait boolean)
RETURNS TABLE (ended boolean, notified text, locked boolean, unflushed text, next text,
               token bigint, attempt bigint, acquired_us bigint, expires_us bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
  was_live   boolean := false;
  left_queue boolean := false;
  queued     boolean;
  busy       boolean;
  sem_limit  bigint;
  sem_token  bigint;
  waited     boolean;
  used       bigint;
  handed     integer := 0;
  t          record;
  acq_us     bigint;
  exp_us     bigint;
  note       text;
BEGIN
  IF p_token IS NULL THEN
    -- An abandon takes the semaphore row before its ticket: a release handing units over holds
    -- the row while it locks the tickets in order, so a ticket deleted (locked) first would let
    -- the two wait for each other. Holding the row, no handoff is in flight either: the next
    -- statement sees every one that consumed this ticket.
    PERFORM 1 FROM sqlock_semaphores s WHERE s.name = p_name FOR UPDATE;
    DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = p_nonce;
    left_queue := FOUND;
  END IF;
  -- One statement ends the holder, looks for a queue and, when there is none, reads the
  -- wake-up mark (see below): a release with no queue runs it and its result row only.
  IF p_wait THEN
    WITH e AS (
      UPDATE sqlock_semaphore_holders h SET expires_at = now()
      WHERE h.name = p_name AND h.nonce = p_nonce AND (p_token IS NULL OR h.token = p_token)
        AND h.expires_at > now()
      RETURNING 1
    ), q AS (
      SELECT EXISTS (SELECT 1 FROM sqlock_semaphore_tickets k
                     WHERE k.name = p_name AND k.expires_at > now()) AS queued
    )
    SELECT EXISTS (SELECT 1 FROM e), q.queued,
           (SELECT coalesce(bool_or(m.waited), true) FROM (
              SELECT s.waiters_until > now() AS waited FROM sqlock_semaphores s
              WHERE s.name = p_name AND NOT q.queued
                AND (EXISTS (SELECT 1 FROM e) OR left_queue)
              FOR SHARE SKIP LOCKED) m)
      INTO was_live, queued, waited
    FROM q;
  ELSE
    WITH target AS (
      SELECT x.name, x.nonce FROM sqlock_semaphore_holders x
      WHERE x.name = p_name AND x.nonce = p_nonce AND (p_token IS NULL OR x.token = p_token)
        AND x.expires_at > now() FOR UPDATE SKIP LOCKED
    ), e AS (
      UPDATE sqlock_semaphore_holders h SET expires_at = now()
      FROM target tg WHERE h.name = tg.name AND h.nonce = tg.nonce
      RETURNING 1
    ), q AS (
      SELECT EXISTS (SELECT 1 FROM sqlock_semaphore_tickets k
                     WHERE k.name = p_name AND k.expires_at > now()) AS queued
    )
    SELECT EXISTS (SELECT 1 FROM e), q.queued,
           (SELECT coalesce(bool_or(m.waited), true) FROM (
              SELECT s.waiters_until > now() AS waited FROM sqlock_semaphores s
              WHERE s.name = p_name AND NOT q.queued
                AND (EXISTS (SELECT 1 FROM e) OR left_queue)
              FOR SHARE SKIP LOCKED) m),
           NOT EXISTS (SELECT 1 FROM e) AND EXISTS (
             SELECT 1 FROM sqlock_semaphore_holders h
             WHERE h.name = p_name AND h.nonce = p_nonce
               AND (p_token IS NULL OR h.token = p_token) AND h.expires_at > now())
      INTO was_live, queued, waited, busy
    FROM q;
    IF busy THEN
      ended := false; locked := true;
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  IF NOT was_live AND NOT left_queue THEN
    RETURN;
  END IF;
  IF queued THEN
    SELECT s.sem_limit, s.token, s.waiters_until > now() INTO sem_limit, sem_token, waited
    FROM sqlock_semaphores s WHERE s.name = p_name FOR UPDATE;
    IF FOUND THEN
      WITH free AS (
        SELECT x.nonce FROM sqlock_semaphore_holders x
        WHERE x.name = p_name AND x.expires_at <= now() FOR UPDATE SKIP LOCKED)
      SELECT coalesce(sum(x.units) FILTER (WHERE x.expires_at > now()
               OR x.nonce NOT IN (SELECT f.nonce FROM free f)), 0) INTO used
      FROM sqlock_semaphore_holders x WHERE x.name = p_name;
      FOR t IN SELECT k.nonce, k.owner, k.units, k.metadata, k.ttl_ms, k.attempt, k.channel
               FROM sqlock_semaphore_tickets k
               WHERE k.name = p_name AND k.expires_at > now() AND k.ttl_ms > 0
               ORDER BY k.ticket FOR UPDATE LOOP
        IF EXISTS (SELECT 1 FROM sqlock_semaphore_holders h
                   WHERE h.name = p_name AND h.nonce = t.nonce) THEN
          DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = t.nonce;
          CONTINUE;
        END IF;
        EXIT WHEN used + t.units > sem_limit;
        sem_token := greatest(nextval('sqlock_token_seq'), sem_token + 1);
        INSERT INTO sqlock_semaphore_holders AS h
          (name, nonce, owner, token, units, acquired_at, expires_at, metadata)
        VALUES (p_name, t.nonce, t.owner, sem_token, t.units, clock_timestamp(),
                clock_timestamp() + t.ttl_ms * interval '1 millisecond', t.metadata)
        RETURNING (extract(epoch FROM h.acquired_at) * 1000000)::bigint,
                  (extract(epoch FROM h.expires_at) * 1000000)::bigint
        INTO acq_us, exp_us;
        DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = t.nonce;
        note := pg_notify(coalesce(nullif(t.channel, ''), p_handoff_channel),
                          t.nonce || ' ' || sem_token || ' ' || t.attempt || ' ' || acq_us || ' '
                          || exp_us || ' ' || p_name)::text;
        used := used + t.units;
        handed := handed + 1;
        ended := was_live; notified := note; locked := false; next := t.nonce;
        token := sem_token; attempt := t.attempt; acquired_us := acq_us; expires_us := exp_us;
        RETURN NEXT;
      END LOOP;
      IF handed > 0 THEN
        UPDATE sqlock_semaphores s SET token = sem_token WHERE s.name = p_name;
      END IF;
      -- Room left over (or nothing handed): waiters without a ticket are woken as before.
      IF waited AND used < sem_limit THEN
        PERFORM pg_notify(p_channel, p_name);
      END IF;
      IF handed > 0 THEN
        RETURN;
      END IF;
      ended := was_live; locked := false;
      unflushed := set_config('synchronous_commit', 'off', true);
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  -- No queue: the wake-up of schema 2's release statement. The mark was read above under a
  -- share lock, SKIP LOCKED. A plain read could race with a waiter that marks the semaphore
  -- after its own look: each would miss the other's uncommitted write, and the waiter would
  -- sleep through this release. With the share lock, either a later mark waits for this commit
  -- (and the waiter's second look sees the room), or the row is locked (a waiter marking it, a
  -- grant, a purge) and this release notifies anyway. Waiting for the row instead queued
  -- releases behind refused attempts (8 clients, limit 1: 92 vs 118 grants/s, measured for
  -- schema 2). A release with a queue takes the row FOR UPDATE instead, never both (two
  -- releases holding share locks that both wanted the row for update would deadlock).
  IF waited THEN
    notified := pg_notify(p_channel, p_name)::text;
  END IF;
  ended := was_live; locked := false;
  unflushed := set_config('synchronous_commit', 'off', true);
  RETURN NEXT;
END
$fn$;

-- The spelled-out search_path of 003 (pg_catalog, the schema, pg_temp), as for every function.
DO $harden$
DECLARE
  target text := pg_catalog.current_schema();
  fn text;
BEGIN
  FOREACH fn IN ARRAY ARRAY[
    'sqlock_semaphore_attempt(text, bigint, bigint, text, text, text, bigint, boolean, boolean, '
      'bigint, text, bigint, bigint, text)',
    'sqlock_semaphore_release(text, text, bigint, text, text, boolean)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

-- EXECUTE is not PUBLIC's (003): roles that may call the old grant function get the new ones.
REVOKE EXECUTE ON FUNCTION
  sqlock_semaphore_attempt(text, bigint, bigint, text, text, text, bigint, boolean, boolean,
                           bigint, text, bigint, bigint, text),
  sqlock_semaphore_release(text, text, bigint, text, text, boolean)
FROM PUBLIC;
DO $grants$
DECLARE
  grantee oid;
BEGIN
  FOR grantee IN
    SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
    WHERE p.oid = 'sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, '
                  'boolean, boolean, bigint, text)'::regprocedure
      AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
  LOOP
    EXECUTE pg_catalog.format(
      'GRANT EXECUTE ON FUNCTION sqlock_semaphore_attempt(text, bigint, bigint, text, text, '
      'text, bigint, boolean, boolean, bigint, text, bigint, bigint, text), '
      'sqlock_semaphore_release(text, text, bigint, text, text, boolean) TO %s',
      CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END);
  END LOOP;
END
$grants$;

INSERT INTO sqlock_schema_version (version) VALUES (6);
