-- SPDX-License-Identifier: Apache-2.0
-- Reverts schema 10 for PostgreSQL: the history of leases, its triggers, the switch and the
-- settings go (the recorded history with them).
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

DROP TRIGGER sqlock_locks_history ON sqlock_locks;
DROP TRIGGER sqlock_locks_history_delete ON sqlock_locks;
DROP TRIGGER sqlock_semaphore_holders_history ON sqlock_semaphore_holders;
DROP TRIGGER sqlock_semaphore_holders_history_delete ON sqlock_semaphore_holders;
DROP FUNCTION sqlock_set_history(boolean);
DROP FUNCTION sqlock_history_lock_ended();
DROP FUNCTION sqlock_history_holder_ended();
DROP TABLE sqlock_history;
DROP TABLE sqlock_settings;
DELETE FROM sqlock_schema_version WHERE version = 10;
