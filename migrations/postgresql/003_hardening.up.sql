-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 3 for PostgreSQL: hardening only, no new objects (the SQLite schema 3 records
-- the version alone, so both backends keep the same numbers).
-- 1. EXECUTE on every sqlock function is no longer PUBLIC's: a role that may merely look into
--    the schema (USAGE) could call the SECURITY DEFINER assert functions, and an open
--    transaction that called one holds the row's share lock, so it could freeze any lock or
--    semaphore (the holder's renewals skip a locked row). Only roles granted EXECUTE (the
--    runtime role, see the README) call them now; sqlock_semaphore_acquire too, so that no
--    function is callable by default (the test derives the list from pg_proc).
-- 2. sqlock_assert_held's error never names the lock's current token (it told anyone the
--    token to forge), and it share-locks the row only when the caller's token is the current
--    one: a failed call in a transaction left open (aborted, not rolled back) locks nothing.
-- 3. The functions' search_path is spelled out in full (pg_catalog, the schema, pg_temp): a
--    database migrated from printed files before they pinned it has functions whose path
--    searches pg_temp first, where any caller's temporary sqlock_locks would shadow the table.
-- Applying it again (after a down) gives the same result.

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

-- The no-lock and stale cases are told apart by a second look that locks nothing, so the
-- message can help a caller without revealing anything but the lock's existence.
CREATE OR REPLACE FUNCTION sqlock_assert_held(lock_name text, lock_token bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  current_expiry timestamptz;
BEGIN
  SELECT expires_at INTO current_expiry
  FROM sqlock_locks WHERE name = lock_name AND token = lock_token FOR SHARE;
  IF NOT FOUND THEN
    IF NOT EXISTS (SELECT 1 FROM sqlock_locks WHERE name = lock_name) THEN
      RAISE EXCEPTION USING ERRCODE = 'SQ001',
        MESSAGE = format('sqlock: lease lost: there is no lock %L', lock_name);
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'SQ001',
      MESSAGE = format('sqlock: lease lost: token %s is not the current lease of lock %L',
                       coalesce(lock_token::text, 'NULL'), lock_name);
  END IF;
  IF current_expiry <= clock_timestamp() THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001',
      MESSAGE = format('sqlock: lease lost: the lease of lock %L with token %s has expired',
                       lock_name, lock_token);
  END IF;
END
$fn$;

-- sqlock_semaphore_assert_held already names only the caller's token and locks only the
-- caller's holder row: its body stays. Every function gets the spelled-out path; format() with
-- %I quotes the schema name, the only value in these statements.
DO $harden$
DECLARE
  target text := pg_catalog.current_schema();
  fn text;
BEGIN
  FOREACH fn IN ARRAY ARRAY[
    'sqlock_assert_held(text, bigint)',
    'sqlock_semaphore_assert_held(text, bigint)',
    'sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, boolean, boolean, '
      'bigint, text)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

REVOKE EXECUTE ON FUNCTION
  sqlock_assert_held(text, bigint),
  sqlock_semaphore_assert_held(text, bigint),
  sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, boolean, boolean,
                           bigint, text)
FROM PUBLIC;

INSERT INTO sqlock_schema_version (version) VALUES (3);
