-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 8 for PostgreSQL: the semaphore protocol as SQL functions, beside schema 7's
-- lock functions, on the same rows, token sequence and queue as the C++ client's semaphores:
--   sqlock_semaphore_try_acquire(name, limit, count, ttl, owner, metadata, nonce)
--                                          -> the fencing token, or NULL when refused
--   sqlock_semaphore_renew(name, token, ttl, nonce)  -> true while the holder was live
--   sqlock_semaphore_release(name, token, nonce)     -> true when a live holder ended
-- (sqlock_semaphore_assert_held, schema 2, fences a write with the token.)
--
-- The clock is clock_timestamp(), read when the rows are checked, as in schema 7. A grant
-- locks the semaphore's row, as every grant does (the count must not race with another grant):
-- inside the caller's transaction it holds that row until the commit, and the semaphore's
-- other grants (C++ clients' too) wait for it. So take a semaphore in a short transaction of
-- its own, or keep the one that takes it short; release it together with the work, as a lock.
-- A refusal decided by the first, unlocked look waits for no row lock and writes nothing; one
-- decided after the row lock (the look saw room that a concurrent grant took) writes nothing
-- either. The limit and count are the C++ client's: a semaphore's live holders all use one
-- limit (another is refused with 22023), a try never passes a queued fair waiter, and a
-- release hands the room it makes to the queue, as the C++ release does.
--
-- SECURITY DEFINER, pg_catalog-qualified, not PUBLIC's: as schema 7 (see there why).
-- Bad input raises a class-22 SQLSTATE and changes nothing: 22004 for a NULL, 22023 for a value
-- outside its limit (the message names it): a name of 1..255 bytes, a limit of 1..1000000000,
-- a count of 1..limit, a ttl of 100 ms to 7 days, an owner of 1..255 bytes, metadata of at
-- most 4096 bytes.

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

-- SECURITY DEFINER code runs as the schema's owner, and its search_path includes the schema:
-- a role that may create objects there could add a function or operator that matches a call
-- better than pg_catalog's (CVE-2018-1058), and run it with the owner's rights. So the schema
-- must not be open to PUBLIC for CREATE (PostgreSQL 15's default for `public`; older versions
-- granted it), and every call below is pg_catalog-qualified, every operator used on exactly
-- pg_catalog's argument types.
DO $trusted$
BEGIN
  IF pg_catalog.has_schema_privilege('public', pg_catalog.current_schema(), 'CREATE') THEN
    RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = pg_catalog.format(
      'sqlock: every role may create objects in schema %I, which sqlock''s SECURITY DEFINER '
      'functions search: run REVOKE CREATE ON SCHEMA %I FROM PUBLIC, then migrate again',
      pg_catalog.current_schema(), pg_catalog.current_schema());
  END IF;
END
$trusted$;

-- Who is asking, when the caller names no owner (as `sqlock list` shows it): the session's
-- application_name, its backend and its address. Internal: called by the functions here.
-- (This one and sqlock_sql_ttl stay after a down step: schema 7's corrected functions below
-- call them; hence OR REPLACE.)
CREATE OR REPLACE FUNCTION sqlock_sql_caller() RETURNS text
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $fn$
  SELECT pg_catalog.format('%s (backend %s%s)',
           coalesce(nullif(pg_catalog.current_setting('application_name'), ''), 'sql'),
           pg_catalog.pg_backend_pid(),
           coalesce(' from ' || pg_catalog.host(pg_catalog.inet_client_addr()), ''))
$fn$;

-- A ttl as the C++ client means it: a number of seconds, 0.1 to 604800 (7 days). An interval
-- is months, days and microseconds, and timestamptz + interval adds days and months on the
-- session's calendar: '1 day' across a daylight-saving change is 23 or 25 hours, '1 mon -23
-- days' passed a range check as 7 days and added 8. So the interval is measured once (30-day
-- months, 24-hour days, as extract(epoch) does), checked, and returned as seconds alone.
-- Internal.
CREATE OR REPLACE FUNCTION sqlock_sql_ttl(fn text, ttl interval) RETURNS interval
LANGUAGE plpgsql IMMUTABLE SET search_path FROM CURRENT AS $fn$
DECLARE
  secs double precision := pg_catalog.date_part('epoch', ttl);
BEGIN
  IF secs < 0.1::double precision OR secs > 604800::double precision THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: ttl must be between 100 milliseconds and 7 days, not %s', fn, ttl);
  END IF;
  RETURN pg_catalog.make_interval(secs => secs);
END
$fn$;

-- The channel the C++ clients of this schema listen on: 'sqlock_' and the 64-bit FNV-1a hash
-- of the schema's name in hexadecimal (src/backends/postgresql/statements.cpp), as
-- sqlock_release (schema 7) computes it. Internal.
CREATE FUNCTION sqlock_wake_channel() RETURNS text
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $fn$
DECLARE
  schema_bytes bytea;
  h numeric := 1469598103934665603;
  low numeric;
BEGIN
  SELECT pg_catalog.convert_to(n.nspname::text, 'UTF8') INTO schema_bytes
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = 'sqlock_semaphores'::regclass;
  FOR i IN 0 .. pg_catalog.length(schema_bytes) - 1 LOOP
    low := h % 256::numeric;
    h := h - low + (low::integer # pg_catalog.get_byte(schema_bytes, i))::numeric;
    h := (h * 1099511628211::numeric) % 18446744073709551616::numeric;
  END LOOP;
  IF h >= 9223372036854775808::numeric THEN
    h := h - 18446744073709551616::numeric;
  END IF;
  RETURN 'sqlock_' || pg_catalog.lpad(pg_catalog.to_hex(h::bigint), 16, '0');
END
$fn$;

-- Schema 7's sqlock_try_acquire and sqlock_renew, with the ttl measured in seconds
-- (sqlock_sql_ttl): the same signatures and results otherwise. (The down step keeps these
-- corrected bodies: a fix is not reverted.)
CREATE OR REPLACE FUNCTION sqlock_try_acquire(name text, ttl interval, owner text DEFAULT NULL,
                                              metadata text DEFAULT '', nonce text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  holder text := coalesce(sqlock_try_acquire.owner, sqlock_sql_caller());
  lease_nonce text := coalesce(sqlock_try_acquire.nonce,
                               'sql:' || pg_catalog.gen_random_uuid()::text);
  lease_ttl interval;
  t timestamptz;
  granted bigint;
BEGIN
  IF sqlock_try_acquire.name IS NULL OR sqlock_try_acquire.ttl IS NULL
     OR sqlock_try_acquire.metadata IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_try_acquire: name, ttl and metadata must not be NULL';
  END IF;
  IF pg_catalog.octet_length(sqlock_try_acquire.name) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: a lock name is 1 to 255 bytes, not %s',
      pg_catalog.octet_length(sqlock_try_acquire.name));
  END IF;
  lease_ttl := sqlock_sql_ttl('sqlock_try_acquire', sqlock_try_acquire.ttl);
  IF pg_catalog.octet_length(sqlock_try_acquire.metadata) > 4096 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: metadata is at most 4096 bytes, not %s',
      pg_catalog.octet_length(sqlock_try_acquire.metadata));
  END IF;
  IF pg_catalog.octet_length(lease_nonce) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: a nonce is 1 to 255 bytes, not %s',
      pg_catalog.octet_length(lease_nonce));
  END IF;
  IF pg_catalog.octet_length(holder) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: an owner is 1 to 255 bytes, not %s', pg_catalog.octet_length(holder));
  END IF;

  -- As in schema 7 (see there): an expired row is granted only when nobody holds its row lock
  -- (SKIP LOCKED: a refusal never waits and writes nothing); the very first grant of a name
  -- inserts it.
  t := pg_catalog.clock_timestamp();
  IF EXISTS (SELECT 1 FROM sqlock_locks WHERE name = sqlock_try_acquire.name) THEN
    UPDATE sqlock_locks l
    SET owner = holder, nonce = lease_nonce,
        token = GREATEST(pg_catalog.nextval('sqlock_token_seq'::regclass), l.token + 1::bigint),
        acquired_at = t, expires_at = t + lease_ttl, metadata = sqlock_try_acquire.metadata
    WHERE l.name IN (SELECT x.name FROM sqlock_locks x
                     WHERE x.name = sqlock_try_acquire.name
                       AND x.expires_at <= pg_catalog.clock_timestamp()
                     FOR UPDATE SKIP LOCKED)
    RETURNING l.token INTO granted;
    RETURN granted;
  END IF;
  INSERT INTO sqlock_locks AS l (name, owner, nonce, token, acquired_at, expires_at, metadata)
  VALUES (sqlock_try_acquire.name, holder, lease_nonce,
          pg_catalog.nextval('sqlock_token_seq'::regclass), t, t + lease_ttl,
          sqlock_try_acquire.metadata)
  ON CONFLICT (name) DO NOTHING
  RETURNING l.token INTO granted;
  RETURN granted;
END
$fn$;

CREATE OR REPLACE FUNCTION sqlock_renew(name text, token bigint, ttl interval,
                                        nonce text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  lease_ttl interval;
BEGIN
  IF sqlock_renew.name IS NULL OR sqlock_renew.token IS NULL OR sqlock_renew.ttl IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_renew: name, token and ttl must not be NULL';
  END IF;
  lease_ttl := sqlock_sql_ttl('sqlock_renew', sqlock_renew.ttl);
  UPDATE sqlock_locks
  SET expires_at = GREATEST(expires_at, pg_catalog.clock_timestamp() + lease_ttl)
  WHERE name = sqlock_renew.name AND token = sqlock_renew.token
    AND expires_at > pg_catalog.clock_timestamp()
    AND (CASE WHEN sqlock_renew.nonce IS NULL THEN pg_catalog.starts_with(nonce, 'sql:')
              ELSE nonce = sqlock_renew.nonce END);
  RETURN FOUND;
END
$fn$;

-- `nonce` as in schema 7: NULL for a fresh holder ('sql:' and a random UUID), which renew and
-- release then accept without a nonce; any other names the holder for them.
CREATE FUNCTION sqlock_semaphore_try_acquire(name text, "limit" bigint, count bigint,
                                             ttl interval, owner text DEFAULT NULL,
                                             metadata text DEFAULT '', nonce text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  fn constant text := 'sqlock_semaphore_try_acquire';
  p_name constant text := sqlock_semaphore_try_acquire.name;
  p_limit constant bigint := sqlock_semaphore_try_acquire."limit";
  p_units constant bigint := sqlock_semaphore_try_acquire.count;
  p_metadata constant text := sqlock_semaphore_try_acquire.metadata;
  holder text := coalesce(sqlock_semaphore_try_acquire.owner, sqlock_sql_caller());
  lease_nonce constant text := coalesce(sqlock_semaphore_try_acquire.nonce,
                                        'sql:' || pg_catalog.gen_random_uuid()::text);
  lease_ttl interval;
  t timestamptz;
  sem_limit bigint;
  sem_token bigint;
  sem_mark timestamptz;
  used bigint;
  queued boolean;
  granted bigint;
BEGIN
  IF p_name IS NULL OR p_limit IS NULL OR p_units IS NULL
     OR sqlock_semaphore_try_acquire.ttl IS NULL OR p_metadata IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = fn || ': name, limit, count, ttl and metadata must not be NULL';
  END IF;
  IF pg_catalog.octet_length(p_name) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: a semaphore name is 1 to 255 bytes, not %s', fn, pg_catalog.octet_length(p_name));
  END IF;
  IF p_limit NOT BETWEEN 1::bigint AND 1000000000::bigint THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: a limit is between 1 and 1000000000, not %s', fn, p_limit);
  END IF;
  IF p_units NOT BETWEEN 1::bigint AND p_limit THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: count must be between 1 and the limit %s, not %s', fn, p_limit, p_units);
  END IF;
  lease_ttl := sqlock_sql_ttl(fn, sqlock_semaphore_try_acquire.ttl);
  IF pg_catalog.octet_length(p_metadata) > 4096 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: metadata is at most 4096 bytes, not %s', fn, pg_catalog.octet_length(p_metadata));
  END IF;
  IF pg_catalog.octet_length(lease_nonce) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: a nonce is 1 to 255 bytes, not %s', fn, pg_catalog.octet_length(lease_nonce));
  END IF;
  IF pg_catalog.octet_length(holder) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      '%s: an owner is 1 to 255 bytes, not %s', fn, pg_catalog.octet_length(holder));
  END IF;

  -- 1. Look without locking: a semaphore without room, or with a live fair waiter's ticket (a
  --    try never passes one), is refused here. A limit that differs from the live holders'
  --    is left to the locked count below, which reports it.
  t := pg_catalog.clock_timestamp();
  SELECT s.sem_limit, h.used, k.queued INTO sem_limit, used, queued
  FROM sqlock_semaphores s,
    LATERAL (SELECT coalesce(pg_catalog.sum(x.units), 0::numeric)::bigint AS used
             FROM sqlock_semaphore_holders x WHERE x.name = p_name AND x.expires_at > t) h,
    LATERAL (SELECT EXISTS (SELECT 1 FROM sqlock_semaphore_tickets y
                            WHERE y.name = p_name AND y.expires_at > t) AS queued) k
  WHERE s.name = p_name;
  IF FOUND AND NOT (used > 0::bigint AND sem_limit <> p_limit)
     AND (used + p_units > p_limit OR queued) THEN
    RETURN NULL;
  END IF;

  -- 2. Lock the semaphore row (created on first use), then count again with the clock read
  --    after that lock: live holders, and lapsed ones that another open transaction holds
  --    locked (a fenced transaction's, see schema 2), and the queue. Under REPEATABLE READ or
  --    SERIALIZABLE a grant that committed after the caller's snapshot makes this lock fail
  --    with 40001 (it updated the row), so the count never misses a holder. In a block of its
  --    own (a subtransaction): a refusal here rolls it back, so that the caller's transaction
  --    keeps no lock (the semaphore row, lapsed holders) and no row it inserted.
  BEGIN
    LOOP
      SELECT s.sem_limit, s.token, s.waiters_until INTO sem_limit, sem_token, sem_mark
      FROM sqlock_semaphores s WHERE s.name = p_name FOR UPDATE;
      EXIT WHEN FOUND;
      INSERT INTO sqlock_semaphores (name, sem_limit) VALUES (p_name, p_limit)
      ON CONFLICT (name) DO NOTHING;
    END LOOP;
    t := pg_catalog.clock_timestamp();
    WITH free AS (
      SELECT x.nonce FROM sqlock_semaphore_holders x
      WHERE x.name = p_name AND x.expires_at <= t FOR UPDATE SKIP LOCKED)
    SELECT coalesce(pg_catalog.sum(x.units) FILTER (WHERE x.expires_at > t
             OR x.nonce NOT IN (SELECT f.nonce FROM free f)), 0::numeric)::bigint,
           EXISTS (SELECT 1 FROM sqlock_semaphore_tickets y
                   WHERE y.name = p_name AND y.expires_at > t)
      INTO used, queued
    FROM sqlock_semaphore_holders x WHERE x.name = p_name;
    IF used > 0::bigint AND sem_limit <> p_limit THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
        '%s: semaphore %L has limit %s (its live holders use it), this call asks for limit %s',
        fn, p_name, sem_limit, p_limit);
    END IF;
    IF used + p_units > p_limit OR queued THEN
      RAISE EXCEPTION USING ERRCODE = 'SQ0R1';  -- refused: caught below
    END IF;

    -- 3. Granted, as the C++ grant (sqlock_semaphore_attempt, schema 6): ended holders and
    --    lapsed tickets go, changed_at remembers when the last of them ended (purge), the
    --    token is drawn under the row lock and never below the semaphore's last.
    WITH gone AS (
      DELETE FROM sqlock_semaphore_holders h WHERE (h.name, h.nonce) IN (
        SELECT x.name, x.nonce FROM sqlock_semaphore_holders x
        WHERE x.name = p_name AND x.expires_at <= t AND x.nonce <> lease_nonce
        FOR UPDATE SKIP LOCKED)
      RETURNING h.expires_at
    ), gone_tickets AS (
      DELETE FROM sqlock_semaphore_tickets k WHERE (k.name, k.nonce) IN (
        SELECT x.name, x.nonce FROM sqlock_semaphore_tickets x
        WHERE x.name = p_name AND x.expires_at <= t FOR UPDATE SKIP LOCKED)
      RETURNING k.expires_at
    ), added AS (
      INSERT INTO sqlock_semaphore_holders AS h
        (name, nonce, owner, token, units, acquired_at, expires_at, metadata)
      VALUES (p_name, lease_nonce, holder,
              GREATEST(pg_catalog.nextval('sqlock_token_seq'::regclass), sem_token + 1::bigint),
              p_units, t, t + lease_ttl, p_metadata)
      ON CONFLICT (name, nonce) DO UPDATE SET owner = excluded.owner, token = excluded.token,
        units = excluded.units, acquired_at = excluded.acquired_at,
        expires_at = excluded.expires_at, forced = false, metadata = excluded.metadata
      RETURNING h.token
    ), noted AS (
      UPDATE sqlock_semaphores s SET token = (SELECT a.token FROM added a), sem_limit = p_limit,
        changed_at = GREATEST(s.changed_at, coalesce((SELECT pg_catalog.max(e.expires_at) FROM (
          SELECT g.expires_at FROM gone g UNION ALL SELECT gt.expires_at FROM gone_tickets gt) e),
          s.changed_at))
      WHERE s.name = p_name RETURNING s.token
    )
    SELECT n.token INTO granted FROM noted n;
    -- Room left and waiters marked the semaphore: wake the next one, as the C++ grant does.
    IF used + p_units < p_limit AND sem_mark > t THEN
      PERFORM pg_catalog.pg_notify(sqlock_wake_channel(), p_name);
    END IF;
    RETURN granted;
  EXCEPTION WHEN SQLSTATE 'SQ0R1' THEN
    RETURN NULL;
  END;
END
$fn$;

-- Which holder renew and release act on: as in schema 7, the one of `name` with `token` and,
-- without a nonce, only if these functions granted it ('sql:...').
--
-- Extends a live holder to at least clock_timestamp() + ttl, never shortening it. False when
-- the holder is over (expired, released, force-released): the caller must stop using the
-- token. Waits for a holder row locked by another open transaction, as any UPDATE does.
CREATE FUNCTION sqlock_semaphore_renew(name text, token bigint, ttl interval,
                                       nonce text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  lease_ttl interval;
BEGIN
  IF sqlock_semaphore_renew.name IS NULL OR sqlock_semaphore_renew.token IS NULL
     OR sqlock_semaphore_renew.ttl IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_semaphore_renew: name, token and ttl must not be NULL';
  END IF;
  lease_ttl := sqlock_sql_ttl('sqlock_semaphore_renew', sqlock_semaphore_renew.ttl);
  UPDATE sqlock_semaphore_holders
  SET expires_at = GREATEST(expires_at, pg_catalog.clock_timestamp() + lease_ttl)
  WHERE name = sqlock_semaphore_renew.name AND token = sqlock_semaphore_renew.token
    AND expires_at > pg_catalog.clock_timestamp() AND NOT forced
    AND (CASE WHEN sqlock_semaphore_renew.nonce IS NULL THEN pg_catalog.starts_with(nonce, 'sql:')
              ELSE nonce = sqlock_semaphore_renew.nonce END);
  RETURN FOUND;
END
$fn$;

-- Ends a live holder and hands the room it makes to the queue, as the C++ release does: it
-- runs the C++ client's release (sqlock_semaphore_release of schema 6) once it holds the
-- holder's row (checked live by the statement's clock) and then the semaphore's row FOR UPDATE,
-- in that order, as every release and grant locks them. Holding the semaphore's row from the
-- start, a release followed by a grant of the same semaphore in one transaction never has to
-- upgrade a share lock (two such transactions would deadlock); in exchange the semaphore's
-- grants wait for the caller's commit. Woken waiters and handed grants are notified at the
-- commit, not at all if it rolls back. That release reads the transaction's clock (now()) for
-- the rest: in a transaction open for long it may count a holder that lapsed meanwhile as
-- using its units (handing less), or hand units to a ticket that lapsed meanwhile, which its
-- waiter takes at its next attempt or which lapse with the ticket's term; it never hands more
-- room than there is. It sets synchronous_commit off for the rest of its transaction when it
-- hands nothing (in autocommit, the release alone); that setting is put back here, so that the
-- caller's work commits as durably as the caller asked.
CREATE FUNCTION sqlock_semaphore_release(name text, token bigint, nonce text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  holder_nonce text;
  holder_end timestamptz;
  channel text;
  durability constant text := pg_catalog.current_setting('synchronous_commit');
  ended boolean;
BEGIN
  IF sqlock_semaphore_release.name IS NULL OR sqlock_semaphore_release.token IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_semaphore_release: name and token must not be NULL';
  END IF;
  SELECT h.nonce, h.expires_at INTO holder_nonce, holder_end FROM sqlock_semaphore_holders h
  WHERE h.name = sqlock_semaphore_release.name AND h.token = sqlock_semaphore_release.token
    AND (CASE WHEN sqlock_semaphore_release.nonce IS NULL
              THEN pg_catalog.starts_with(h.nonce, 'sql:')
              ELSE h.nonce = sqlock_semaphore_release.nonce END)
  FOR UPDATE;
  IF NOT FOUND OR holder_end <= pg_catalog.clock_timestamp() THEN
    RETURN false;
  END IF;
  PERFORM 1 FROM sqlock_semaphores s WHERE s.name = sqlock_semaphore_release.name FOR UPDATE;
  channel := sqlock_wake_channel();
  SELECT coalesce(pg_catalog.bool_or(r.ended), false) INTO ended
  FROM sqlock_semaphore_release(sqlock_semaphore_release.name, holder_nonce,
                                sqlock_semaphore_release.token, channel, channel, true) r;
  PERFORM pg_catalog.set_config('synchronous_commit', durability, true);
  RETURN ended;
END
$fn$;

-- Fencing for SQL callers, with the nonce rule of renew and release: sqlock_assert_held and
-- sqlock_semaphore_assert_held (schemas 1 and 2) share-lock the row of whatever lease the
-- token names, so a role allowed to call them could hold off any lease's renewals, a C++
-- client's too, by trying tokens (they are sequential). These check first that the caller may
-- name the lease (without a nonce, only one these functions granted), then fence as those do.
-- No DEFAULT for nonce: a two-argument call stays the two-argument function's.
CREATE FUNCTION sqlock_assert_held(name text, token bigint, nonce text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sqlock_locks l
                 WHERE l.name = sqlock_assert_held.name AND l.token = sqlock_assert_held.token
                   AND (CASE WHEN sqlock_assert_held.nonce IS NULL
                             THEN pg_catalog.starts_with(l.nonce, 'sql:')
                             ELSE l.nonce = sqlock_assert_held.nonce END)) THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001', MESSAGE = pg_catalog.format(
      'sqlock: lease lost: token %s is not a lease of lock %L that this call may fence',
      coalesce(sqlock_assert_held.token::text, 'NULL'), sqlock_assert_held.name);
  END IF;
  PERFORM sqlock_assert_held(sqlock_assert_held.name, sqlock_assert_held.token);
END
$fn$;

CREATE FUNCTION sqlock_semaphore_assert_held(name text, token bigint, nonce text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
BEGIN
  IF NOT EXISTS (SELECT 1 FROM sqlock_semaphore_holders h
                 WHERE h.name = sqlock_semaphore_assert_held.name
                   AND h.token = sqlock_semaphore_assert_held.token
                   AND (CASE WHEN sqlock_semaphore_assert_held.nonce IS NULL
                             THEN pg_catalog.starts_with(h.nonce, 'sql:')
                             ELSE h.nonce = sqlock_semaphore_assert_held.nonce END)) THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001', MESSAGE = pg_catalog.format(
      'sqlock: lease lost: token %s is not a holder of semaphore %L that this call may fence',
      coalesce(sqlock_semaphore_assert_held.token::text, 'NULL'),
      sqlock_semaphore_assert_held.name);
  END IF;
  PERFORM sqlock_semaphore_assert_held(sqlock_semaphore_assert_held.name,
                                       sqlock_semaphore_assert_held.token);
END
$fn$;

-- The spelled-out search_path of 003 (pg_catalog, the schema, pg_temp), as for every function.
DO $harden$
DECLARE
  target text := pg_catalog.current_schema();
  fn text;
BEGIN
  FOREACH fn IN ARRAY ARRAY['sqlock_sql_caller()', 'sqlock_sql_ttl(text, interval)',
                            'sqlock_wake_channel()',
                            'sqlock_try_acquire(text, interval, text, text, text)',
                            'sqlock_renew(text, bigint, interval, text)',
                            'sqlock_semaphore_try_acquire(text, bigint, bigint, interval, text, '
                              'text, text)',
                            'sqlock_semaphore_renew(text, bigint, interval, text)',
                            'sqlock_semaphore_release(text, bigint, text)',
                            'sqlock_assert_held(text, bigint, text)',
                            'sqlock_semaphore_assert_held(text, bigint, text)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

-- EXECUTE is granted explicitly, per function (docs/postgresql.md), never to PUBLIC; the three
-- internal functions are nobody's but the owner's.
REVOKE EXECUTE ON FUNCTION
  sqlock_sql_caller(),
  sqlock_sql_ttl(text, interval),
  sqlock_wake_channel(),
  sqlock_semaphore_try_acquire(text, bigint, bigint, interval, text, text, text),
  sqlock_semaphore_renew(text, bigint, interval, text),
  sqlock_semaphore_release(text, bigint, text),
  sqlock_assert_held(text, bigint, text),
  sqlock_semaphore_assert_held(text, bigint, text)
FROM PUBLIC;

INSERT INTO sqlock_schema_version (version) VALUES (8);
