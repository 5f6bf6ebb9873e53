-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 3 for PostgreSQL: EXECUTE on sqlock's functions is PUBLIC's again, as
-- an older sqlock (schema 2) expects: its runtime role was told it needs no EXECUTE grant, and
-- it calls sqlock_semaphore_acquire. The hardened function bodies and their spelled-out
-- search_path stay: schema 2's clients depend on neither the error text nor the path, and
-- putting back a message that reveals the current token would only reopen the leak.

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

GRANT EXECUTE ON FUNCTION
  sqlock_assert_held(text, bigint),
  sqlock_semaphore_assert_held(text, bigint),
  sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, boolean, boolean,
                           bigint, text)
TO PUBLIC;
DELETE FROM sqlock_schema_version WHERE version = 3;
