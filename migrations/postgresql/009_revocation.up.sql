-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 9 for PostgreSQL: cooperative revocation ("please finish and let go").
-- `client::request_release(name, grace)` / `sqlock release NAME --request --grace D` marks the
-- live lease: revoke_token names the lease it applies to (a later grant has a larger token, so
-- a stale mark never touches the next holder and no grant path has to clear it), and
-- revoke_by is its deadline by the database clock. The same statement caps the lease's expiry
-- at that deadline, so once the grace has passed the lock is free exactly as after a force
-- release, even if the holder never hears of the request; and from then on no renewal extends
-- the lease (the trigger below), whichever path it comes by (the client's batched renewal, the
-- SQL functions of schemas 7 and 8, a hand-written UPDATE). A renewal answers with the
-- deadline, so the holder learns of the request at its next renewal (at most ttl/3 later), or
-- at once through the release notification the request sends on PostgreSQL.
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

ALTER TABLE sqlock_locks
  ADD COLUMN revoke_token bigint,        -- the lease a release request applies to
  ADD COLUMN revoke_by    timestamptz;   -- that request's deadline (the lease ends by then)
ALTER TABLE sqlock_semaphore_holders
  ADD COLUMN revoke_token bigint,
  ADD COLUMN revoke_by    timestamptz;

-- Keeps a lease with a pending release request from being extended past the request's
-- deadline: an UPDATE that keeps the token and moves expires_at past revoke_by stops at
-- revoke_by instead (never earlier than the expiry it had), so a renewal still succeeds and
-- reports that expiry; a grant, which changes the token, is untouched. The WHEN clause is
-- evaluated without calling the function, so a renewal of an unmarked lease pays a comparison.
-- Not SECURITY DEFINER: it reads nothing but the row. search_path is pinned all the same.
CREATE FUNCTION sqlock_keep_revoked_expiry() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  NEW.expires_at := GREATEST(OLD.expires_at, OLD.revoke_by);
  RETURN NEW;
END
$fn$;
REVOKE EXECUTE ON FUNCTION sqlock_keep_revoked_expiry() FROM PUBLIC;

CREATE TRIGGER sqlock_locks_keep_revoked_expiry
  BEFORE UPDATE OF expires_at ON sqlock_locks FOR EACH ROW
  WHEN (OLD.revoke_token = OLD.token AND NEW.token = OLD.token
        AND NEW.expires_at > OLD.revoke_by)
  EXECUTE FUNCTION sqlock_keep_revoked_expiry();
CREATE TRIGGER sqlock_semaphore_holders_keep_revoked_expiry
  BEFORE UPDATE OF expires_at ON sqlock_semaphore_holders FOR EACH ROW
  WHEN (OLD.revoke_token = OLD.token AND NEW.token = OLD.token
        AND NEW.expires_at > OLD.revoke_by)
  EXECUTE FUNCTION sqlock_keep_revoked_expiry();

INSERT INTO sqlock_schema_version (version) VALUES (9);
