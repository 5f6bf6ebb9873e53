-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 4 for PostgreSQL: a queue for every lock.
-- A waiting acquisition (fair, or one that can hear notifications) keeps a ticket here while it
-- waits: its place (a number from the token sequence), what a grant to it must carry (owner,
-- metadata, ttl) and the number of its last attempt, refreshed by each attempt and lapsing
-- ticket_ms after it. A release hands the lock to the oldest live ticket in the same statement
-- (backends/postgresql/statements.cpp says why that is safe); fair acquisitions are never
-- granted past an older live ticket. Soft state: a ticket lost in a crash costs its waiter only
-- its place (its next attempt takes a new one), so ticket writes need not be durable.
-- The runtime role needs SELECT, INSERT, UPDATE, DELETE on the new table (README: PostgreSQL);
-- roles that may update sqlock_locks when this runs get them here.

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

CREATE TABLE sqlock_lock_waiters (
  name       text COLLATE "C" NOT NULL,
  nonce      text        NOT NULL,
  owner      text        NOT NULL,
  metadata   text        NOT NULL DEFAULT '',
  ttl_ms     bigint      NOT NULL CHECK (ttl_ms BETWEEN 100 AND 604800000),
  fair       boolean     NOT NULL DEFAULT false,
  ticket     bigint      NOT NULL,
  attempt    bigint      NOT NULL DEFAULT 0,
  since      timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (name, nonce)
);
CREATE INDEX sqlock_lock_waiters_queue ON sqlock_lock_waiters (name, ticket);

-- Roles that may already change lock rows (a runtime role granted as the README says) get the
-- same rights on the queue: migrating to schema 4 must not stop a running application.
DO $grants$
DECLARE
  grantee oid;
BEGIN
  FOR grantee IN
    SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
    WHERE c.oid = 'sqlock_locks'::regclass AND a.privilege_type = 'UPDATE'
      AND a.grantee <> c.relowner
  LOOP
    EXECUTE pg_catalog.format(
      'GRANT SELECT, INSERT, UPDATE, DELETE ON sqlock_lock_waiters TO %s',
      CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END);
  END LOOP;
END
$grants$;

INSERT INTO sqlock_schema_version (version) VALUES (4);
