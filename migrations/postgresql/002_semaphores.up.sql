-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 2 for PostgreSQL: counting semaphores, their holders and fair-waiting tickets.
-- Adds tables and functions only: lock rows and the token sequence are untouched.
-- No schema qualification: the objects go to the schema first in search_path (current_schema(),
-- default public), which `sqlock migrate` sets; the file pins search_path itself below.

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

-- One row per semaphore name (a namespace of its own: the lock "x" and the semaphore "x" are
-- unrelated). Every grant locks this row, so grants of one semaphore serialise and each sees
-- every holder granted before it.
CREATE TABLE sqlock_semaphores (
  name          text COLLATE "C" NOT NULL PRIMARY KEY
                CHECK (octet_length(name) BETWEEN 1 AND 255),
  sem_limit     bigint      NOT NULL CHECK (sem_limit BETWEEN 1 AND 1000000000),
  token         bigint      NOT NULL DEFAULT 0,           -- the last token granted on it
  -- Holder and ticket rows deleted from this semaphore had all ended by then (purge's horizon).
  changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  waiters_until timestamptz NOT NULL DEFAULT '-infinity'  -- a release notifies only before it
) WITH (fillfactor = 70);

-- One row per acquisition: a lease like a lock's, with its own token. A release ends it by
-- moving expires_at; the next grant on the semaphore deletes ended rows.
CREATE TABLE sqlock_semaphore_holders (
  name        text COLLATE "C" NOT NULL,
  nonce       text        NOT NULL,       -- the lease's identity
  owner       text        NOT NULL,
  token       bigint      NOT NULL,
  units       bigint      NOT NULL CHECK (units BETWEEN 1 AND 1000000000),
  acquired_at timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,       -- live while the server clock is before it
  forced      boolean     NOT NULL DEFAULT false,  -- ended by an admin (force release)
  metadata    text        NOT NULL DEFAULT '' CHECK (octet_length(metadata) <= 4096),
  PRIMARY KEY (name, nonce)
) WITH (fillfactor = 70);

-- Fair waiting: one ticket per waiting acquisition, drawn from the token sequence at its first
-- refused attempt and extended by each later one. A ticket that is not extended lapses, so a
-- waiter that gave up or died stops holding up the queue.
CREATE TABLE sqlock_semaphore_tickets (
  name       text COLLATE "C" NOT NULL,
  nonce      text        NOT NULL,
  owner      text        NOT NULL,
  ticket     bigint      NOT NULL,
  units      bigint      NOT NULL CHECK (units BETWEEN 1 AND 1000000000),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (name, nonce)
);

-- One grant attempt, in one round trip. A function because the check and the grant must be
-- two snapshots: the semaphore row is locked first, and only a statement that starts after
-- that lock sees every holder committed before it (a single statement would count holders
-- from a snapshot taken before it waited for the lock, and could exceed the limit).
--
-- Returns one row: granted, token, acquired_us, expires_us (epoch microseconds), retry_us
-- (when refused: until the first holder or older ticket lapses by itself; 1 = retry at once:
-- the room appeared while this attempt marked itself as a waiter; 0 = unknown: only a fenced
-- transaction's lapsed holder stands in the way).
-- p_units is the count; p_limit the caller's limit; p_channel the NOTIFY channel.
-- p_waiting: when refused, mark the semaphore so that releases notify (a caller that cannot
-- hear notifications passes false: a marked semaphore's releases notify, and a notifying
-- commit takes a server-wide lock). p_fair: when refused, take a ticket in the queue or extend
-- this nonce's ticket (only for an attempt that will wait). p_ticket_ms: how long the mark and
-- the ticket last.
CREATE FUNCTION sqlock_semaphore_acquire(
  p_name text, p_limit bigint, p_units bigint, p_owner text, p_nonce text, p_metadata text,
  p_ttl_ms bigint, p_waiting boolean, p_fair boolean, p_ticket_ms bigint, p_channel text)
RETURNS TABLE (granted boolean, token bigint, acquired_us bigint, expires_us bigint,
               retry_us bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
  sem        sqlock_semaphores%ROWTYPE;
  used       bigint;
  head       bigint;
  mine       bigint;
  soonest    timestamptz;
  ticket_end timestamptz;
  new_token  bigint;
  ended_upto timestamptz;
  marked     boolean := false;
BEGIN
  IF p_units < 1 OR p_units > p_limit OR p_limit > 1000000000 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock: semaphore %L: count %s must be between 1 and the limit %s', p_name, p_units, p_limit);
  END IF;
  -- 1. Look without locking: under contention most attempts are refused here, writing nothing
  --    (a stale snapshot can only miss a release, and releases wake marked waiters).
  -- 2. Otherwise lock the semaphore row (creating it on first use) and look again.
  FOR phase IN 1..2 LOOP
    IF phase = 1 THEN
      SELECT * INTO sem FROM sqlock_semaphores s WHERE s.name = p_name;
      CONTINUE WHEN NOT FOUND;
    ELSE
      LOOP
        SELECT * INTO sem FROM sqlock_semaphores s WHERE s.name = p_name FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO sqlock_semaphores (name, sem_limit) VALUES (p_name, p_limit)
        ON CONFLICT (name) DO NOTHING;
      END LOOP;
    END IF;
    SELECT coalesce(sum(h.units), 0), min(h.expires_at) INTO used, soonest
    FROM sqlock_semaphore_holders h WHERE h.name = p_name AND h.expires_at > now();
    IF phase = 2 THEN
      -- A lapsed holder row that another transaction holds locked is a fenced transaction's
      -- (sqlock_semaphore_assert_held's share lock, taken while the lease was live): its units
      -- count until that transaction ends, as a lock row share-locked by sqlock_assert_held
      -- holds off a takeover. Not waited for (that would stall every grant and release of
      -- the semaphore behind the user's transaction): the attempt is refused, retry_us 0
      -- (unknown) unless a live holder or ticket lapses first.
      -- The other lapsed rows are locked here, to be deleted if this attempt is granted.
      WITH free AS (
        SELECT x.nonce FROM sqlock_semaphore_holders x
        WHERE x.name = p_name AND x.expires_at <= now() FOR UPDATE SKIP LOCKED)
      SELECT used + coalesce(sum(h.units), 0) INTO used
      FROM sqlock_semaphore_holders h
      WHERE h.name = p_name AND h.expires_at <= now() AND h.nonce NOT IN (SELECT nonce FROM free);
    END IF;
    SELECT min(k.ticket) FILTER (WHERE k.nonce <> p_nonce),
           min(k.ticket) FILTER (WHERE k.nonce = p_nonce),
           min(k.expires_at) FILTER (WHERE k.nonce <> p_nonce)
      INTO head, mine, ticket_end
    FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.expires_at > now();
    -- When refused, the waiter sleeps at most until a holder or an older ticket lapses.
    soonest := least(soonest, ticket_end);
    IF used > 0 AND sem.sem_limit <> p_limit THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
        'sqlock: semaphore %L has limit %s (its live holders use it), this acquisition asks for limit %s',
        p_name, sem.sem_limit, p_limit);
    END IF;
    -- Room, and no older live ticket (a waiter without a ticket waits behind every ticket).
    EXIT WHEN used + p_units > p_limit OR (head IS NOT NULL AND (mine IS NULL OR head < mine));
    IF phase = 2 THEN
      -- Granted. Ended holder and lapsed ticket rows go now (skipping rows another
      -- transaction holds, e.g. a fenced transaction's share lock); changed_at remembers
      -- when the last of them ended, for purge.
      WITH gone AS (
        DELETE FROM sqlock_semaphore_holders h WHERE (h.name, h.nonce) IN (
          SELECT x.name, x.nonce FROM sqlock_semaphore_holders x
          WHERE x.name = p_name AND x.expires_at <= now() FOR UPDATE SKIP LOCKED)
        RETURNING h.expires_at
      ), gone_tickets AS (
        DELETE FROM sqlock_semaphore_tickets k WHERE (k.name, k.nonce) IN (
          SELECT x.name, x.nonce FROM sqlock_semaphore_tickets x
          WHERE x.name = p_name AND (x.expires_at <= now() OR x.nonce = p_nonce)
          FOR UPDATE SKIP LOCKED)
        RETURNING least(k.expires_at, now()) AS expires_at
      )
      SELECT max(e) INTO ended_upto FROM (
        SELECT expires_at AS e FROM gone UNION ALL SELECT expires_at FROM gone_tickets) AS t;
      new_token := greatest(nextval('sqlock_token_seq'), sem.token + 1);
      -- A row with this nonce can only be this acquisition's own earlier grant whose outcome
      -- its caller never learned (in doubt) and which the clean-up above could not delete
      -- (locked): it is replaced rather than failing with a unique violation.
      INSERT INTO sqlock_semaphore_holders AS h
        (name, nonce, owner, token, units, acquired_at, expires_at, metadata)
      VALUES (p_name, p_nonce, p_owner, new_token, p_units, now(),
              now() + p_ttl_ms * interval '1 millisecond', p_metadata)
      ON CONFLICT (name, nonce) DO UPDATE SET owner = excluded.owner, token = excluded.token,
        units = excluded.units, acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at, forced = false, metadata = excluded.metadata;
      UPDATE sqlock_semaphores s SET token = new_token, sem_limit = p_limit,
        changed_at = greatest(s.changed_at, coalesce(ended_upto, s.changed_at))
      WHERE s.name = p_name;
      -- When room remains and waiters marked the semaphore, wake the next one: a release
      -- wakes one waiter per listening client, so a release of many units (or a writer's
      -- release of a readers/writer lock) is passed on grant by grant, whether the waiters
      -- queue with tickets or not.
      IF used + p_units < p_limit AND sem.waiters_until > now() THEN
        PERFORM pg_notify(p_channel, p_name);
      END IF;
      RETURN QUERY SELECT true, new_token,
        (extract(epoch FROM now()) * 1000000)::bigint,
        (extract(epoch FROM now() + p_ttl_ms * interval '1 millisecond') * 1000000)::bigint,
        0::bigint;
      RETURN;
    END IF;
  END LOOP;

  -- Refused (the semaphore row exists: phase 2 always creates it). What a refusal writes (a
  -- row lock in phase 2, the mark, a ticket) need not survive a crash, so its commit does not
  -- wait for the WAL flush: under contention the refused attempts queue on the semaphore row,
  -- and each held it across a flush (8 clients on a semaphore of limit 2: 155 -> 247 grants/s,
  -- A/B measured). A grant's commit is flushed as usual (this setting is only made here, and
  -- only for this transaction). Hence: call this function as a transaction of its own
  -- (autocommit), as sqlock does, never inside a transaction that writes anything else.
  PERFORM set_config('synchronous_commit', 'off', true);
  IF p_waiting THEN
    -- The mark makes releases notify; written only when missing or half spent.
    UPDATE sqlock_semaphores s SET waiters_until = now() + p_ticket_ms * interval '1 millisecond'
    WHERE s.name = p_name AND s.waiters_until < now() + p_ticket_ms * interval '500 microseconds';
    marked := FOUND;
  END IF;
  IF p_fair THEN
    UPDATE sqlock_semaphore_tickets k SET expires_at = now() + p_ticket_ms * interval '1 millisecond'
    WHERE k.name = p_name AND k.nonce = p_nonce AND k.expires_at > now();
    IF NOT FOUND THEN
      -- First refusal, or our ticket lapsed: take a new place at the end of the queue.
      DELETE FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.nonce = p_nonce;
      INSERT INTO sqlock_semaphore_tickets (name, nonce, owner, ticket, units, expires_at)
      VALUES (p_name, p_nonce, p_owner, nextval('sqlock_token_seq'), p_units,
              now() + p_ticket_ms * interval '1 millisecond');
    END IF;
  END IF;
  IF marked THEN
    -- A release that ended a holder after our look read no mark, so it will not notify. A
    -- release reads the mark under a share lock on the semaphore row, SKIP LOCKED: either it
    -- took that lock first, and our mark waited for its commit, so this look (a new snapshot)
    -- sees the room it made; or it found the row locked by our mark and notifies anyway.
    SELECT coalesce(sum(h.units), 0) INTO used
    FROM sqlock_semaphore_holders h WHERE h.name = p_name AND h.expires_at > now();
    SELECT min(k.ticket) FILTER (WHERE k.nonce <> p_nonce),
           min(k.ticket) FILTER (WHERE k.nonce = p_nonce)
      INTO head, mine
    FROM sqlock_semaphore_tickets k WHERE k.name = p_name AND k.expires_at > now();
    IF used + p_units <= p_limit AND (head IS NULL OR (mine IS NOT NULL AND mine < head)) THEN
      RETURN QUERY SELECT false, 0::bigint, 0::bigint, 0::bigint, 1::bigint;
      RETURN;
    END IF;
  END IF;
  RETURN QUERY SELECT false, 0::bigint, 0::bigint, 0::bigint,
    CASE WHEN soonest IS NULL THEN 0::bigint
         ELSE greatest((extract(epoch FROM soonest - now()) * 1000000)::bigint, 1) END;
END
$fn$;

-- Same-database fencing for a semaphore holder, like sqlock_assert_held for a lock: raises
-- SQLSTATE 'SQ001' unless semaphore_token is a live holder of semaphore_name by the server
-- clock, and holds a share lock on that holder row until the caller's transaction ends: until
-- then no grant counts the holder's units out (even once its lease lapsed: see
-- sqlock_semaphore_acquire), no force release ends it, and its own renewals and releases skip
-- the row (the holder's lease is at risk meanwhile: keep fenced transactions short).
CREATE FUNCTION sqlock_semaphore_assert_held(semaphore_name text, semaphore_token bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  current_expiry timestamptz;
BEGIN
  SELECT expires_at INTO current_expiry FROM sqlock_semaphore_holders
  WHERE name = semaphore_name AND token = semaphore_token FOR SHARE;
  IF NOT FOUND OR current_expiry <= clock_timestamp() THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001', MESSAGE = format(
      'sqlock: lease lost: token %s is not a live holder of semaphore %L',
      semaphore_token, semaphore_name);
  END IF;
END
$fn$;

INSERT INTO sqlock_schema_version (version) VALUES (2);
