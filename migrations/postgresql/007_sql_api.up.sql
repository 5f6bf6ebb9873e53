-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 7 for PostgreSQL: the lock protocol as SQL functions, for callers in any
-- language and inside the caller's own transaction. The same rows, the same token sequence and
-- the database clock, so C++ clients, the CLI and SQL callers exclude each other:
--   sqlock_try_acquire(name, ttl, owner, metadata, nonce) -> the fencing token, or NULL when
--                                                   held
--   sqlock_renew(name, token, ttl, nonce)          -> true while the lease was live
--   sqlock_release(name, token, nonce)             -> true when a live lease ended
-- (sqlock_assert_held, schema 1, fences a write with the token.)
--
-- Every time is clock_timestamp(), the moment the statement runs: now() is the start of the
-- caller's transaction, which may be long past. Called inside a transaction, a grant or a
-- release commits or rolls back with it; the lease's clock starts when the function runs, not
-- at the commit. While such a transaction is open it holds the lock row: renewals of the lease
-- (by the C++ keepalive too) are held off, other acquirers are refused at once (an existing
-- row) or wait for the commit (the very first grant of a name, at its unique index). So keep
-- the transaction short, well under the ttl; docs/sql.md says what a caller must do that the
-- C++ client does for it.
--
-- SECURITY DEFINER with the pinned search_path (below): a role needs EXECUTE on these
-- functions and USAGE on the schema, no rights on the tables. EXECUTE is not PUBLIC's
-- (schema 3): docs/postgresql.md lists the grants.
--
-- Bad input raises a class-22 SQLSTATE and changes nothing: 22004 for a NULL, 22023 for a value
-- outside its limit (the message names it), the limits of the C++ client (a name of 1..255
-- bytes, a ttl of 100 ms to 7 days, an owner of 1..255 bytes, metadata of at most 4096 bytes).

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

-- The parameters are named as the documentation names them (named notation works:
-- owner => 'report-job'); inside the bodies they are qualified by the function's name, and
-- unqualified names are columns (#variable_conflict use_column).
-- `nonce` is the lease's identity in the row: NULL for a fresh one, 'sql:' and a random UUID;
-- a C++ client that adopts the grant after the commit (sqlock::postgresql::try_acquire) passes
-- its own.
CREATE FUNCTION sqlock_try_acquire(name text, ttl interval, owner text DEFAULT NULL,
                                   metadata text DEFAULT '', nonce text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  holder text := sqlock_try_acquire.owner;
  lease_nonce text := coalesce(sqlock_try_acquire.nonce,
                               'sql:' || pg_catalog.gen_random_uuid()::text);
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
  IF sqlock_try_acquire.ttl NOT BETWEEN interval '100 milliseconds' AND interval '7 days' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: ttl must be between 100 milliseconds and 7 days, not %s',
      sqlock_try_acquire.ttl);
  END IF;
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
  IF holder IS NULL THEN
    -- Who is asking, as `sqlock list` shows it: the session's application_name, its backend
    -- and its address.
    holder := pg_catalog.format('%s (backend %s%s)',
                coalesce(nullif(pg_catalog.current_setting('application_name'), ''), 'sql'),
                pg_catalog.pg_backend_pid(),
                coalesce(' from ' || pg_catalog.host(pg_catalog.inet_client_addr()), ''));
  ELSIF pg_catalog.octet_length(holder) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_try_acquire: an owner is 1 to 255 bytes, not %s', pg_catalog.octet_length(holder));
  END IF;

  t := pg_catalog.clock_timestamp();
  IF EXISTS (SELECT 1 FROM sqlock_locks WHERE name = sqlock_try_acquire.name) THEN
    -- Only an expired row is granted, and only when nobody holds its row lock (a grant or a
    -- release in another open transaction, a fenced transaction): SKIP LOCKED, so a refusal
    -- never waits, and writes nothing (no row is updated, no token drawn). FOR UPDATE checks
    -- the expiry again on the newest version of the row. The token is the C++ grant's:
    -- GREATEST(nextval, token + 1), drawn under the row lock. Like a C++ try without `fair`,
    -- it does not look at the queue: it may pass queued waiters.
    UPDATE sqlock_locks l
    SET owner = holder, nonce = lease_nonce,
        token = GREATEST(pg_catalog.nextval('sqlock_token_seq'::regclass), l.token + 1::bigint),
        acquired_at = t, expires_at = t + sqlock_try_acquire.ttl,
        metadata = sqlock_try_acquire.metadata
    WHERE l.name IN (SELECT x.name FROM sqlock_locks x
                     WHERE x.name = sqlock_try_acquire.name
                       AND x.expires_at <= pg_catalog.clock_timestamp()
                     FOR UPDATE SKIP LOCKED)
    RETURNING l.token INTO granted;
    RETURN granted;
  END IF;
  -- The first grant of this name. A concurrent first grant not yet committed makes the insert
  -- wait for it (the unique index), then find the row: NULL. Its token is drawn before that
  -- check and then discarded: tokens increase, they are not consecutive.
  INSERT INTO sqlock_locks AS l (name, owner, nonce, token, acquired_at, expires_at, metadata)
  VALUES (sqlock_try_acquire.name, holder, lease_nonce,
          pg_catalog.nextval('sqlock_token_seq'::regclass), t, t + sqlock_try_acquire.ttl,
          sqlock_try_acquire.metadata)
  ON CONFLICT (name) DO NOTHING
  RETURNING l.token INTO granted;
  RETURN granted;
END
$fn$;

-- Which leases renew and release may act on: the one of `name` with `token` and, without a
-- nonce, only if these functions granted it (nonce 'sql:...'): tokens are sequential and easy
-- to guess, so a caller must name a C++ client's lease by its nonce too
-- (sqlock::postgresql::release does), or it could end a lease it never held.
--
-- Extends a live lease to at least clock_timestamp() + ttl, never shortening it (a late
-- renewal cannot undo a later one). False when the lease is over: expired, released, taken
-- over or force-released; the caller must then stop using the token. A row locked by another
-- open transaction (a fenced transaction's sqlock_assert_held) is waited for, as by any UPDATE;
-- set lock_timeout to bound that wait. The clock is read when the row is checked, after any
-- such wait: a release that committed meanwhile is seen as such.
CREATE FUNCTION sqlock_renew(name text, token bigint, ttl interval, nonce text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
BEGIN
  IF sqlock_renew.name IS NULL OR sqlock_renew.token IS NULL OR sqlock_renew.ttl IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_renew: name, token and ttl must not be NULL';
  END IF;
  IF sqlock_renew.ttl NOT BETWEEN interval '100 milliseconds' AND interval '7 days' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = pg_catalog.format(
      'sqlock_renew: ttl must be between 100 milliseconds and 7 days, not %s', sqlock_renew.ttl);
  END IF;
  UPDATE sqlock_locks
  SET expires_at = GREATEST(expires_at, pg_catalog.clock_timestamp() + sqlock_renew.ttl)
  WHERE name = sqlock_renew.name AND token = sqlock_renew.token
    AND expires_at > pg_catalog.clock_timestamp()
    AND (CASE WHEN sqlock_renew.nonce IS NULL THEN pg_catalog.starts_with(nonce, 'sql:')
              ELSE nonce = sqlock_renew.nonce END);
  RETURN FOUND;
END
$fn$;

-- Ends a live lease (expires_at := clock_timestamp()); false when it was already over. When
-- waiters marked the row or queued for it, their clients are woken as by the C++ release: a
-- notification on the schema's channel, delivered when the caller's transaction commits (none
-- if it rolls back). Unlike the C++ release it does not hand the lock to the oldest fair
-- waiter in the same statement: the woken waiters try again. Waits for a row locked by another
-- open transaction, as sqlock_renew does.
CREATE FUNCTION sqlock_release(name text, token bigint, nonce text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  waited boolean;
  schema_bytes bytea;
  h numeric := 1469598103934665603;  -- the C++ client's FNV-1a offset, as it spells it
  low numeric;
BEGIN
  IF sqlock_release.name IS NULL OR sqlock_release.token IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_release: name and token must not be NULL';
  END IF;
  UPDATE sqlock_locks
  SET expires_at = pg_catalog.clock_timestamp()
  WHERE name = sqlock_release.name AND token = sqlock_release.token
    AND expires_at > pg_catalog.clock_timestamp()
    AND (CASE WHEN sqlock_release.nonce IS NULL THEN pg_catalog.starts_with(nonce, 'sql:')
              ELSE nonce = sqlock_release.nonce END)
  RETURNING waiters_until > expires_at INTO waited;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF waited OR EXISTS (SELECT 1 FROM sqlock_lock_waiters
                       WHERE name = sqlock_release.name
                         AND expires_at > pg_catalog.clock_timestamp()) THEN
    -- The channel C++ clients of this schema listen on: 'sqlock_' and the 64-bit FNV-1a hash of
    -- the schema's name in hexadecimal (src/backends/postgresql/statements.cpp), computed in
    -- numeric arithmetic modulo 2^64 (the XOR touches the low byte only). The schema is the
    -- one holding this function's table.
    SELECT pg_catalog.convert_to(n.nspname::text, 'UTF8') INTO schema_bytes
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = 'sqlock_locks'::regclass;
    FOR i IN 0 .. pg_catalog.length(schema_bytes) - 1 LOOP
      low := h % 256::numeric;
      h := h - low + (low::integer # pg_catalog.get_byte(schema_bytes, i))::numeric;
      h := (h * 1099511628211::numeric) % 18446744073709551616::numeric;
    END LOOP;
    IF h >= 9223372036854775808::numeric THEN
      h := h - 18446744073709551616::numeric;
    END IF;
    PERFORM pg_catalog.pg_notify(
      'sqlock_' || pg_catalog.lpad(pg_catalog.to_hex(h::bigint), 16, '0'), sqlock_release.name);
  END IF;
  RETURN true;
END
$fn$;

-- The spelled-out search_path of 003 (pg_catalog, the schema, pg_temp), as for every function.
DO $harden$
DECLARE
  target text := pg_catalog.current_schema();
  fn text;
BEGIN
  FOREACH fn IN ARRAY ARRAY['sqlock_try_acquire(text, interval, text, text, text)',
                            'sqlock_renew(text, bigint, interval, text)',
                            'sqlock_release(text, bigint, text)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

-- EXECUTE is granted explicitly, per function (docs/postgresql.md), never to PUBLIC.
REVOKE EXECUTE ON FUNCTION
  sqlock_try_acquire(text, interval, text, text, text),
  sqlock_renew(text, bigint, interval, text),
  sqlock_release(text, bigint, text)
FROM PUBLIC;

INSERT INTO sqlock_schema_version (version) VALUES (7);
