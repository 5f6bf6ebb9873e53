-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 5 for PostgreSQL: a handoff wakes only the waiter's own client.
-- Each queue ticket names the NOTIFY channel of the client that waits (one per backend
-- instance, which only that instance LISTENs on), and a release that hands the lock over
-- notifies that channel. Under schema 4 every handoff went to one channel per schema, so every
-- waiting client's listener woke for every handoff only to drop a payload for someone else (8
-- contenders: 8 wake-ups per grant where 1 is needed). '' (a ticket written before this
-- migration) falls back to the channel the releasing client names.

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

ALTER TABLE sqlock_lock_waiters
  ADD COLUMN channel text NOT NULL DEFAULT '' CHECK (octet_length(channel) <= 63);

INSERT INTO sqlock_schema_version (version) VALUES (5);
