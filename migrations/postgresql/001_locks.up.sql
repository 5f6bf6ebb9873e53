-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 1 for PostgreSQL: lock rows, the fencing token sequence, the schema version.
-- No schema qualification: the objects go to the schema first in search_path (current_schema(),
-- default public), which `sqlock migrate` sets; the file pins search_path itself below.
-- Run it in one transaction; `sqlock migrate up` and client::migrate() do, serialised by
-- pg_advisory_xact_lock.

-- search_path is pinned by this file, not left to whoever applies it (`sqlock migrate` sets
-- it; another migration tool, or `sqlock migrate print | psql`, may not): the target schema
-- (current_schema(), where the objects are created), then pg_temp. pg_catalog, unlisted, is
-- searched first, so nothing in the schema shadows a built-in; pg_temp listed last means a
-- temporary table named like one of sqlock's shadows it neither here nor in the functions
-- that capture this path (SET search_path FROM CURRENT). Transaction-local, so nothing outlives
-- a migration run in one transaction (a session setting would leak to other clients through
-- PgBouncer's transaction pooling); the second block covers a tool that runs each statement in
-- a transaction of its own, where the first block's setting is gone by the next statement.
-- A temporary schema or pg_catalog as the target is refused (the objects would vanish with the
-- session, or land among the built-ins).
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

CREATE TABLE sqlock_schema_version (
  version    integer     NOT NULL PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Fencing tokens. NO CYCLE: a sequence that wrapped would hand out small tokens again.
-- CACHE 1: a cached range lost in a crash is harmless, but tokens drawn by different sessions
-- would then interleave out of grant order.
CREATE SEQUENCE sqlock_token_seq AS bigint MINVALUE 1 START WITH 1 INCREMENT BY 1 NO CYCLE CACHE 1;

-- One row per lock name. A release never deletes the row (it moves expires_at), only purge
-- does, so every later grant goes through the row-locked ON CONFLICT DO UPDATE path and takes
-- GREATEST(nextval, token + 1). No index on expires_at: renewals stay HOT updates.
CREATE TABLE sqlock_locks (
  name          text COLLATE "C" NOT NULL PRIMARY KEY
                CHECK (octet_length(name) BETWEEN 1 AND 255),
  owner         text        NOT NULL,
  nonce         text        NOT NULL,        -- the lease's identity; '' after force release
  token         bigint      NOT NULL,
  acquired_at   timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,        -- live while the server clock is before it
  metadata      text        NOT NULL DEFAULT ''
                CHECK (octet_length(metadata) <= 4096),
  waiters_until timestamptz NOT NULL DEFAULT '-infinity'  -- a release notifies only before it
) WITH (fillfactor = 70);

-- Same-database fencing. Call it inside the transaction that writes the protected data:
--   SELECT sqlock_assert_held('nightly-report', 42);
-- It raises SQLSTATE 'SQ001' (class SQ: sqlock) unless lock_token is the live lease of
-- lock_name by the server clock (clock_timestamp(): now() is stale in a long transaction), and
-- it takes a share lock on the lock row until the caller's transaction ends, so no takeover can
-- commit in between: the lease check and the protected writes become one atomic fact. While
-- that transaction is open the holder's own renewals skip the row (the lease is at risk), so
-- keep fenced transactions well under ttl/2. SECURITY DEFINER with the search_path of this
-- migration (sqlock's schema, pg_temp last) fixed at creation: callers need no rights on the
-- table. EXECUTE is PUBLIC's here; schema 3 revokes it (003_hardening.up.sql says why).
CREATE FUNCTION sqlock_assert_held(lock_name text, lock_token bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  current_token  bigint;
  current_expiry timestamptz;
BEGIN
  SELECT token, expires_at INTO current_token, current_expiry
  FROM sqlock_locks WHERE name = lock_name FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001',
      MESSAGE = format('sqlock: lease lost: there is no lock %L', lock_name);
  END IF;
  IF lock_token IS NULL OR current_token <> lock_token THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001',
      MESSAGE = format('sqlock: lease lost: token %s of lock %L is stale (current token %s)',
                       lock_token, lock_name, current_token);
  END IF;
  IF current_expiry <= clock_timestamp() THEN
    RAISE EXCEPTION USING ERRCODE = 'SQ001',
      MESSAGE = format('sqlock: lease lost: the lease of lock %L with token %s has expired',
                       lock_name, lock_token);
  END IF;
END
$fn$;

INSERT INTO sqlock_schema_version (version) VALUES (1);
