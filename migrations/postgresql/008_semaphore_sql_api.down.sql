-- SPDX-License-Identifier: Apache-2.0
-- Reverts schema 8 for PostgreSQL: the semaphore SQL functions and the nonce-checking fences go
-- (holders they granted stay, as rows). sqlock_try_acquire and sqlock_renew keep schema 8's
-- bodies, which measure the ttl in seconds (the signatures are schema 7's, and a fix is not
-- reverted), and with them the two internal functions they call, sqlock_sql_caller and
-- sqlock_sql_ttl (owner-only; schema 8 replaces them when applied again).

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

DROP FUNCTION sqlock_semaphore_try_acquire(text, bigint, bigint, interval, text, text, text);
DROP FUNCTION sqlock_semaphore_renew(text, bigint, interval, text);
DROP FUNCTION sqlock_semaphore_release(text, bigint, text);
DROP FUNCTION sqlock_assert_held(text, bigint, text);
DROP FUNCTION sqlock_semaphore_assert_held(text, bigint, text);
DROP FUNCTION sqlock_wake_channel();
DELETE FROM sqlock_schema_version WHERE version = 8;
