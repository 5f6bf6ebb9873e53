-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 10 for PostgreSQL: an optional, append-only history of leases, for postmortems
-- ("who held what, when"). A lock row and a semaphore holder row keep only their latest lease;
-- with the history on, every lease that ends is written to sqlock_history by a row trigger in
-- the very statement that ends it, so the history can never disagree with the rows: the C++
-- client's statements, the SQL functions of schemas 7 and 8 and a hand-written UPDATE alike.
-- Off by default (`sqlock history --enable`, client::enable_history): one switch per database
-- (per schema), stored in it, so every client honours it.
--
-- What "ended" means, from the row change alone (T: the trigger's clock_timestamp(); a lease
-- whose row carries revoke_token = token had a release request pending, schema 9):
--   released        its holder released it: the row kept its token and its expires_at moved
--                   back to at most T (expires_at = now()), or a release handed the row to a
--                   queued waiter in the same UPDATE (a new token granted while the old lease
--                   was still live). ended_at: the new expires_at, or the handoff's grant time.
--   expired         it lapsed and nobody took it yet; recorded when its row is deleted (purge,
--                   or, for a semaphore holder, the next grant of the semaphore, which deletes
--                   ended holder rows). ended_at: its expires_at.
--   taken over      it lapsed and a later grant replaced it in the same row (a lock's upsert,
--                   or a semaphore holder row re-granted to the same nonce). ended_at: its
--                   expires_at (never after the new lease's acquired_at).
--   force-released  an admin ended it: a lock's nonce became '' (force release), a holder's
--                   `forced` became true, or a live row was deleted by hand. ended_at: then.
--   revoked         it ended while a release request for it was pending (revoke_token = token),
--                   by its holder's release or by the request's deadline (recorded as for
--                   released, expired or taken over, with that deadline or release as ended_at).
--   lost            it was ended by `abandon`: a grant the client never learnt of (an acquire
--                   whose outcome was in doubt, or a lock a release handed to a waiter that had
--                   given up), cleaned up by the client. The abandon statement says so with
--                   the transaction-local setting sqlock.ending = 'lost' (set_config(..., true)
--                   inside the statement: nothing outlives it, so PgBouncer is fine); the row
--                   change is a release's.
-- When several apply: force-released, then revoked, then taken over, then lost, then released.
-- A lease is recorded once, keyed by (kind, name, token): a later change of the same row (the
-- takeover of a released lock) finds it recorded and writes nothing (ON CONFLICT DO NOTHING).
-- Live leases, and leases that lapsed but whose row nothing has touched since, are not in the
-- table: `history` reads them from the current rows. A lease that ended while the history was
-- off is recorded when its row next changes with the history on, classified by what the row
-- shows then (a release then looks like a lapse: taken over or expired, ended at its release).
--
-- The switch: PostgreSQL's trigger WHEN clause cannot read a table, so the triggers are created
-- DISABLED and sqlock_set_history() enables or disables them (ALTER TABLE ... ENABLE TRIGGER,
-- as the tables' owner: SECURITY DEFINER) together with the settings row, in one transaction.
-- With the history off an UPDATE pays nothing; with it on, the WHEN clause keeps renewals (same
-- token, later expiry), waiter marks and refused attempts from calling the function.
-- The trigger functions are SECURITY DEFINER with a pinned search_path, so the runtime role that
-- ends a lease needs no right on sqlock_history; EXECUTE on them is nobody's but the owner's
-- (a trigger's function is not checked for EXECUTE when it fires).
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

-- Database-wide settings of sqlock, one row per key. 'history': 'on' or 'off'.
CREATE TABLE sqlock_settings (
  key   text COLLATE "C" NOT NULL PRIMARY KEY,
  value text NOT NULL
);
INSERT INTO sqlock_settings (key, value) VALUES ('history', 'off');

-- One row per ended lease (a lock's or a semaphore holder's). Append-only but for
-- sqlock_purge_history / `sqlock purge --history-older-than`. The primary key is the unique key
-- (kind, name, token), name first so that a lookup by name uses it.
CREATE TABLE sqlock_history (
  kind       text COLLATE "C" NOT NULL CHECK (kind IN ('lock', 'semaphore')),
  name       text COLLATE "C" NOT NULL,
  token      bigint      NOT NULL,
  owner      text        NOT NULL,
  metadata   text        NOT NULL DEFAULT '',
  units      bigint      NOT NULL DEFAULT 1,     -- a semaphore holder's count; 1 for a lock
  granted_at timestamptz NOT NULL,               -- the lease's acquired_at
  ended_at   timestamptz NOT NULL,
  ended_how  text        NOT NULL CHECK (ended_how IN ('released', 'expired', 'taken over',
                                                       'force-released', 'revoked', 'lost')),
  PRIMARY KEY (name, kind, token)
);
CREATE INDEX sqlock_history_ended_at ON sqlock_history (ended_at);

CREATE FUNCTION sqlock_history_lock_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  t     timestamptz := pg_catalog.clock_timestamp();
  lost  boolean := coalesce(pg_catalog.current_setting('sqlock.ending', true), '') = 'lost';
  ended timestamptz;
  how   text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    ended := least(OLD.expires_at, t);
    how := CASE WHEN OLD.nonce = '' THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                WHEN OLD.expires_at > t THEN 'force-released'
                ELSE 'expired' END;
  ELSIF NEW.token <> OLD.token THEN
    ended := least(OLD.expires_at, NEW.acquired_at);
    how := CASE WHEN OLD.nonce = '' THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                WHEN lost THEN 'lost'
                ELSE 'released' END;
  ELSIF NEW.expires_at <= t AND NEW.expires_at < OLD.expires_at THEN
    ended := NEW.expires_at;
    how := CASE WHEN NEW.nonce = '' THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token THEN 'revoked'
                WHEN lost THEN 'lost'
                ELSE 'released' END;
  ELSE
    RETURN NULL;  -- not an end: a release request capping a live lease's expiry
  END IF;
  INSERT INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  VALUES ('lock', OLD.name, OLD.token, OLD.owner, OLD.metadata, 1, OLD.acquired_at, ended, how)
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$fn$;

CREATE FUNCTION sqlock_history_holder_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  t     timestamptz := pg_catalog.clock_timestamp();
  lost  boolean := coalesce(pg_catalog.current_setting('sqlock.ending', true), '') = 'lost';
  ended timestamptz;
  how   text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    ended := least(OLD.expires_at, t);
    how := CASE WHEN OLD.forced THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                WHEN OLD.expires_at > t THEN 'force-released'
                ELSE 'expired' END;
  ELSIF NEW.token <> OLD.token THEN
    ended := least(OLD.expires_at, NEW.acquired_at);
    how := CASE WHEN OLD.forced THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                WHEN lost THEN 'lost'
                ELSE 'released' END;
  ELSIF NEW.expires_at <= t AND NEW.expires_at < OLD.expires_at THEN
    ended := NEW.expires_at;
    how := CASE WHEN NEW.forced THEN 'force-released'
                WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token THEN 'revoked'
                WHEN lost THEN 'lost'
                ELSE 'released' END;
  ELSE
    RETURN NULL;
  END IF;
  INSERT INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  VALUES ('semaphore', OLD.name, OLD.token, OLD.owner, OLD.metadata, OLD.units, OLD.acquired_at,
          ended, how)
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$fn$;

-- AFTER triggers run inside the statement that changed the row (at its end, in its
-- transaction): the record commits or rolls back with the change. The WHEN clauses pass only
-- changes that can end a lease: a new token, a new nonce (force release), an expiry moved
-- earlier (release, force release, a release request), a holder marked forced.
CREATE TRIGGER sqlock_locks_history AFTER UPDATE ON sqlock_locks FOR EACH ROW
  WHEN (NEW.token <> OLD.token OR NEW.nonce <> OLD.nonce OR NEW.expires_at < OLD.expires_at)
  EXECUTE FUNCTION sqlock_history_lock_ended();
CREATE TRIGGER sqlock_locks_history_delete AFTER DELETE ON sqlock_locks FOR EACH ROW
  EXECUTE FUNCTION sqlock_history_lock_ended();
CREATE TRIGGER sqlock_semaphore_holders_history AFTER UPDATE ON sqlock_semaphore_holders
  FOR EACH ROW
  WHEN (NEW.token <> OLD.token OR NEW.expires_at < OLD.expires_at OR NEW.forced <> OLD.forced)
  EXECUTE FUNCTION sqlock_history_holder_ended();
CREATE TRIGGER sqlock_semaphore_holders_history_delete AFTER DELETE ON sqlock_semaphore_holders
  FOR EACH ROW EXECUTE FUNCTION sqlock_history_holder_ended();
ALTER TABLE sqlock_locks DISABLE TRIGGER sqlock_locks_history,
  DISABLE TRIGGER sqlock_locks_history_delete;
ALTER TABLE sqlock_semaphore_holders DISABLE TRIGGER sqlock_semaphore_holders_history,
  DISABLE TRIGGER sqlock_semaphore_holders_history_delete;

-- The switch: sets the settings row and enables (or disables) the four triggers in one
-- transaction; returns whether the history was on before. ALTER TABLE takes SHARE ROW
-- EXCLUSIVE on the two tables for a moment, so it waits for writers in flight; it gives up
-- after 2 s (lock_not_available) rather than queue every grant behind a long transaction.
CREATE FUNCTION sqlock_set_history(enabled boolean) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  was boolean;
  verb text := CASE WHEN enabled THEN 'ENABLE' ELSE 'DISABLE' END;
BEGIN
  IF enabled IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'sqlock_set_history: enabled must not be NULL';
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '2s', true);
  SELECT s.value = 'on' INTO was FROM sqlock_settings s WHERE s.key = 'history' FOR UPDATE;
  EXECUTE pg_catalog.format('ALTER TABLE sqlock_locks %s TRIGGER sqlock_locks_history, '
                            '%s TRIGGER sqlock_locks_history_delete', verb, verb);
  EXECUTE pg_catalog.format('ALTER TABLE sqlock_semaphore_holders %s TRIGGER '
                            'sqlock_semaphore_holders_history, %s TRIGGER '
                            'sqlock_semaphore_holders_history_delete', verb, verb);
  INSERT INTO sqlock_settings AS s (key, value)
  VALUES ('history', CASE WHEN enabled THEN 'on' ELSE 'off' END)
  ON CONFLICT (key) DO UPDATE SET value = excluded.value;
  RETURN coalesce(was, false);
END
$fn$;

-- The spelled-out search_path of 003 (pg_catalog, the schema, pg_temp), as for every function.
DO $harden$
DECLARE
  target text := pg_catalog.current_schema();
  fn text;
BEGIN
  FOREACH fn IN ARRAY ARRAY['sqlock_history_lock_ended()', 'sqlock_history_holder_ended()',
                            'sqlock_set_history(boolean)'] LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %I.%s SET search_path = pg_catalog, %I, pg_temp',
                              target, fn, target);
  END LOOP;
END
$harden$;

-- Not PUBLIC's: the trigger functions need no EXECUTE to fire, and the switch is an admin's
-- (docs/postgresql.md grants it).
REVOKE EXECUTE ON FUNCTION sqlock_history_lock_ended(), sqlock_history_holder_ended(),
  sqlock_set_history(boolean) FROM PUBLIC;

INSERT INTO sqlock_schema_version (version) VALUES (10);
