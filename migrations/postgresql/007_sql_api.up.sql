-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 7 for PostgreSQL: the lock protocol as SQL functions, for callers in any
-- language and inside the caller's own transaction. The same rows, the same token sequence and
-- the database clock, so C++ clients, the CLI and SQL callers exclude each other:
--   sqlock_try_acquire(name, ttl, owner, metadata, nonce) -> the fencing token, or NULL when
--                                                   held
--   sqlock_renew(name, token, ttl)                 -> true while the lease was live
--   sqlock_release(name, token)                    -> true when a live lease ended
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

-- The parameters are named as the documentation names them (named notation works:
-- owner => 'report-job'); inside the bodies they are qualified by the function's name, and
-- unqualified names are columns (#variable_conflict use_column).
-- `nonce` is the lease's identity in the row: NULL for a fresh one; a C++ client that adopts
-- the grant after the commit (sqlock::postgresql::try_acquire) passes its own.
CREATE FUNCTION sqlock_try_acquire(name text, ttl interval, owner text DEFAULT NULL,
                                   metadata text DEFAULT '', nonce text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  holder text := sqlock_try_acquire.owner;
  lease_nonce text := coalesce(sqlock_try_acquire.nonce, 'sql:' || gen_random_uuid());
  t timestamptz;
  granted bigint;
BEGIN
  IF sqlock_try_acquire.name IS NULL OR sqlock_try_acquire.ttl IS NULL
     OR sqlock_try_acquire.metadata IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_try_acquire: name, ttl and metadata must not be NULL';
  END IF;
  IF octet_length(sqlock_try_acquire.name) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_try_acquire: a lock name is 1 to 255 bytes, not %s',
      octet_length(sqlock_try_acquire.name));
  END IF;
  IF sqlock_try_acquire.ttl NOT BETWEEN interval '100 milliseconds' AND interval '7 days' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_try_acquire: ttl must be between 100 milliseconds and 7 days, not %s',
      sqlock_try_acquire.ttl);
  END IF;
  IF octet_length(sqlock_try_acquire.metadata) > 4096 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_try_acquire: metadata is at most 4096 bytes, not %s',
      octet_length(sqlock_try_acquire.metadata));
  END IF;
  IF octet_length(lease_nonce) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_try_acquire: a nonce is 1 to 255 bytes, not %s', octet_length(lease_nonce));
  END IF;
  IF holder IS NULL THEN
    -- Who is asking, as `sqlock list` shows it: the session's application_name, its backend
    -- and its address.
    holder := format('%s (backend %s%s)',
                     coalesce(nullif(current_setting('application_name'), ''), 'sql'),
                     pg_backend_pid(), coalesce(' from ' || host(inet_client_addr()), ''));
  ELSIF octet_length(holder) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_try_acquire: an owner is 1 to 255 bytes, not %s', octet_length(holder));
  END IF;

  t := clock_timestamp();
  IF EXISTS (SELECT 1 FROM sqlock_locks WHERE name = sqlock_try_acquire.name) THEN
    -- Only an expired row is granted, and only when nobody holds its row lock (a grant or a
    -- release in another open transaction, a fenced transaction): SKIP LOCKED, so a refusal
    -- never waits, and writes nothing (no row is updated, no token drawn). FOR UPDATE checks
    -- the expiry again on the newest version of the row. The token is the C++ grant's:
    -- GREATEST(nextval, token + 1), drawn under the row lock.
    UPDATE sqlock_locks l
    SET owner = holder, nonce = lease_nonce,
        token = GREATEST(nextval('sqlock_token_seq'), l.token + 1), acquired_at = t,
        expires_at = t + sqlock_try_acquire.ttl, metadata = sqlock_try_acquire.metadata
    WHERE l.name IN (SELECT x.name FROM sqlock_locks x
                     WHERE x.name = sqlock_try_acquire.name AND x.expires_at <= t
                     FOR UPDATE SKIP LOCKED)
    RETURNING l.token INTO granted;
    RETURN granted;
  END IF;
  -- The first grant of this name. A concurrent first grant not yet committed makes the insert
  -- wait for it (the unique index), then find the row: NULL. Its token is drawn before that
  -- check and then discarded: tokens increase, they are not consecutive.
  INSERT INTO sqlock_locks AS l (name, owner, nonce, token, acquired_at, expires_at, metadata)
  VALUES (sqlock_try_acquire.name, holder, lease_nonce,
          nextval('sqlock_token_seq'), t, t + sqlock_try_acquire.ttl,
          sqlock_try_acquire.metadata)
  ON CONFLICT (name) DO NOTHING
  RETURNING l.token INTO granted;
  RETURN granted;
END
$fn$;

-- Extends a live lease to at least clock_timestamp() + ttl, never shortening it (a late
-- renewal cannot undo a later one). False when the lease is over: expired, released, taken
-- over or force-released; the caller must then stop using the token. A row locked by another
-- open transaction (a fenced transaction's sqlock_assert_held) is waited for, as by any UPDATE;
-- set lock_timeout to bound that wait.
CREATE FUNCTION sqlock_renew(name text, token bigint, ttl interval) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  t timestamptz;
BEGIN
  IF sqlock_renew.name IS NULL OR sqlock_renew.token IS NULL OR sqlock_renew.ttl IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_renew: name, token and ttl must not be NULL';
  END IF;
  IF sqlock_renew.ttl NOT BETWEEN interval '100 milliseconds' AND interval '7 days' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format(
      'sqlock_renew: ttl must be between 100 milliseconds and 7 days, not %s', sqlock_renew.ttl);
  END IF;
  t := clock_timestamp();
  UPDATE sqlock_locks
  SET expires_at = GREATEST(expires_at, t + sqlock_renew.ttl)
  WHERE name = sqlock_renew.name AND token = sqlock_renew.token AND expires_at > t;
  RETURN FOUND;
END
$fn$;

-- Ends a live lease (expires_at := clock_timestamp()); false when it was already over. When
-- waiters marked the row or queued for it, their clients are woken as by the C++ release: a
-- notification on the schema's channel, delivered when the caller's transaction commits (none
-- if it rolls back). Unlike the C++ release it does not hand the lock to the oldest fair
-- waiter in the same statement: that waiter, woken, takes it with its next attempt (no other
-- fair waiter may pass it). Waits for a row locked by another open transaction, as
-- sqlock_renew does.
CREATE FUNCTION sqlock_release(name text, token bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
#variable_conflict use_column
DECLARE
  t timestamptz;
  waited boolean;
  schema_bytes bytea;
  h numeric := 1469598103934665603;  -- the C++ client's FNV-1a offset, as it spells it
  low integer;
BEGIN
  IF sqlock_release.name IS NULL OR sqlock_release.token IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004',
      MESSAGE = 'sqlock_release: name and token must not be NULL';
  END IF;
  t := clock_timestamp();
  UPDATE sqlock_locks
  SET expires_at = t
  WHERE name = sqlock_release.name AND token = sqlock_release.token AND expires_at > t
  RETURNING waiters_until > t INTO waited;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF waited OR EXISTS (SELECT 1 FROM sqlock_lock_waiters
                       WHERE name = sqlock_release.name AND expires_at > t) THEN
    -- The channel C++ clients of this schema listen on: 'sqlock_' and the 64-bit FNV-1a hash of
    -- the schema's name in hexadecimal (src/backends/postgresql/statements.cpp), computed in
    -- numeric arithmetic modulo 2^64. The schema is the one holding this function's table.
    SELECT convert_to(n.nspname, 'UTF8') INTO schema_bytes
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = 'sqlock_locks'::regclass;
    FOR i IN 0 .. length(schema_bytes) - 1 LOOP
      low := (h % 256)::integer;
      h := h - low + (low # get_byte(schema_bytes, i));
      h := (h * 1099511628211) % 18446744073709551616;
    END LOOP;
    PERFORM pg_notify('sqlock_' || lpad(to_hex((CASE WHEN h >= 9223372036854775808
                                                     THEN h - 18446744073709551616
                                                     ELSE h END)::bigint), 16, '0'),
                      sqlock_release.name);
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
                            'sqlock_renew(text, bigint, interval)',
                            'sqlock_release(text, bigint)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

-- EXECUTE is granted explicitly, per function (docs/postgresql.md), never to PUBLIC.
REVOKE EXECUTE ON FUNCTION
  sqlock_try_acquire(text, interval, text, text, text),
  sqlock_renew(text, bigint, interval),
  sqlock_release(text, bigint)
FROM PUBLIC;

INSERT INTO sqlock_schema_version (version) VALUES (7);
