-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 10 for SQLite: the optional, append-only history of leases. The design, and
-- what each ended_how means, are in the PostgreSQL file (010_history.up.sql); the same rules
-- here, with times in epoch ms and T the trigger's own read of the database clock:
--   released        the row kept its token and its expires_at moved back to at most T, or a
--                   new token replaced a lease that was still live (a handoff at release);
--   expired         its row was deleted after it lapsed (purge, or the next grant of a
--                   semaphore, which deletes ended holder rows); ended_at = expires_at;
--   taken over      it lapsed and a later grant replaced it in the same row; ended_at =
--                   expires_at;
--   force-released  a lock's nonce became '', a holder's `forced` became 1, or a live row was
--                   deleted by hand;
--   revoked         it ended while revoke_token = token (a release request, schema 9);
--   lost            ended by `abandon` of a grant the client never learnt of: the abandon's
--                   write transaction holds the row ('ending', 'lost') in sqlock_settings while
--                   it ends the lease (SQLite has no transaction-local settings; triggers cannot
--                   read temporary tables), and deletes it before committing.
-- Precedence: force-released, revoked, taken over, lost, released. One record per (kind, name,
-- token): the INSERT checks NOT EXISTS first (write transactions are serialised, so that is
-- exact), because an INSERT OR IGNORE in a trigger takes the conflict policy of the statement
-- that fired it (ABORT for the grant's upsert), so a second end of the same lease would fail it.
-- The switch is the settings row 'history' ('on'/'off', default 'off'), read by the triggers'
-- WHEN clauses after the cheap test on the row change, so a renewal (same token, later expiry)
-- never reads it. Triggers run inside the statement that changed the row, in its transaction.
-- Only built-in functions: a connection without sqlock's registered functions (the sqlite3
-- shell) fires these triggers too.

CREATE TABLE sqlock_settings (
  key   TEXT NOT NULL PRIMARY KEY COLLATE BINARY,
  value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO sqlock_settings (key, value) VALUES ('history', 'off');

CREATE TABLE sqlock_history (
  kind       TEXT    NOT NULL CHECK (kind IN ('lock', 'semaphore')),
  name       TEXT    NOT NULL COLLATE BINARY,
  token      INTEGER NOT NULL,
  owner      TEXT    NOT NULL,
  metadata   TEXT    NOT NULL DEFAULT '',
  units      INTEGER NOT NULL DEFAULT 1,     -- a semaphore holder's count; 1 for a lock
  granted_at INTEGER NOT NULL,               -- epoch ms: the lease's acquired_at
  ended_at   INTEGER NOT NULL,               -- epoch ms
  ended_how  TEXT    NOT NULL CHECK (ended_how IN ('released', 'expired', 'taken over',
                                                   'force-released', 'revoked', 'lost')),
  PRIMARY KEY (name, kind, token)
) WITHOUT ROWID;
CREATE INDEX sqlock_history_ended_at ON sqlock_history (ended_at);

CREATE TRIGGER sqlock_locks_history AFTER UPDATE ON sqlock_locks FOR EACH ROW
WHEN (NEW.token <> OLD.token OR NEW.nonce <> OLD.nonce OR NEW.expires_at < OLD.expires_at)
  AND (SELECT value FROM sqlock_settings WHERE key = 'history') = 'on'
BEGIN
  INSERT OR IGNORE INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  SELECT 'lock', OLD.name, OLD.token, OLD.owner, OLD.metadata, 1, OLD.acquired_at, e.ended_at,
         e.how
  FROM (SELECT
          CASE WHEN NEW.token <> OLD.token THEN min(OLD.expires_at, NEW.acquired_at)
               ELSE NEW.expires_at END AS ended_at,
          CASE WHEN NEW.token <> OLD.token THEN
                 CASE WHEN OLD.nonce = '' THEN 'force-released'
                      WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                      WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                      WHEN c.lost THEN 'lost'
                      ELSE 'released' END
               WHEN NEW.expires_at <= c.now AND NEW.expires_at < OLD.expires_at THEN
                 CASE WHEN NEW.nonce = '' THEN 'force-released'
                      WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token
                        THEN 'revoked'
                      WHEN c.lost THEN 'lost'
                      ELSE 'released' END
          END AS how
        FROM (SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) AS now,
                     EXISTS (SELECT 1 FROM sqlock_settings
                             WHERE key = 'ending' AND value = 'lost') AS lost) c) e
  WHERE e.how IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sqlock_history x
    WHERE x.name = OLD.name AND x.kind = 'lock' AND x.token = OLD.token);
END;

CREATE TRIGGER sqlock_locks_history_delete AFTER DELETE ON sqlock_locks FOR EACH ROW
WHEN (SELECT value FROM sqlock_settings WHERE key = 'history') = 'on'
BEGIN
  INSERT OR IGNORE INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  SELECT 'lock', OLD.name, OLD.token, OLD.owner, OLD.metadata, 1, OLD.acquired_at,
         min(OLD.expires_at, c.now),
         CASE WHEN OLD.nonce = '' THEN 'force-released'
              WHEN OLD.revoke_token = OLD.token THEN 'revoked'
              WHEN OLD.expires_at > c.now THEN 'force-released'
              ELSE 'expired' END
  FROM (SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) AS now) c
  WHERE NOT EXISTS (SELECT 1 FROM sqlock_history x
    WHERE x.name = OLD.name AND x.kind = 'lock' AND x.token = OLD.token);
END;

CREATE TRIGGER sqlock_semaphore_holders_history AFTER UPDATE ON sqlock_semaphore_holders
FOR EACH ROW
WHEN (NEW.token <> OLD.token OR NEW.expires_at < OLD.expires_at OR NEW.forced <> OLD.forced)
  AND (SELECT value FROM sqlock_settings WHERE key = 'history') = 'on'
BEGIN
  INSERT OR IGNORE INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  SELECT 'semaphore', OLD.name, OLD.token, OLD.owner, OLD.metadata, OLD.units, OLD.acquired_at,
         e.ended_at, e.how
  FROM (SELECT
          CASE WHEN NEW.token <> OLD.token THEN min(OLD.expires_at, NEW.acquired_at)
               ELSE NEW.expires_at END AS ended_at,
          CASE WHEN NEW.token <> OLD.token THEN
                 CASE WHEN OLD.forced THEN 'force-released'
                      WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                      WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                      WHEN c.lost THEN 'lost'
                      ELSE 'released' END
               WHEN NEW.expires_at <= c.now AND NEW.expires_at < OLD.expires_at THEN
                 CASE WHEN NEW.forced THEN 'force-released'
                      WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token
                        THEN 'revoked'
                      WHEN c.lost THEN 'lost'
                      ELSE 'released' END
          END AS how
        FROM (SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) AS now,
                     EXISTS (SELECT 1 FROM sqlock_settings
                             WHERE key = 'ending' AND value = 'lost') AS lost) c) e
  WHERE e.how IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sqlock_history x
    WHERE x.name = OLD.name AND x.kind = 'semaphore' AND x.token = OLD.token);
END;

CREATE TRIGGER sqlock_semaphore_holders_history_delete AFTER DELETE ON sqlock_semaphore_holders
FOR EACH ROW
WHEN (SELECT value FROM sqlock_settings WHERE key = 'history') = 'on'
BEGIN
  INSERT OR IGNORE INTO sqlock_history
    (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
  SELECT 'semaphore', OLD.name, OLD.token, OLD.owner, OLD.metadata, OLD.units, OLD.acquired_at,
         min(OLD.expires_at, c.now),
         CASE WHEN OLD.forced THEN 'force-released'
              WHEN OLD.revoke_token = OLD.token THEN 'revoked'
              WHEN OLD.expires_at > c.now THEN 'force-released'
              ELSE 'expired' END
  FROM (SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) AS now) c
  WHERE NOT EXISTS (SELECT 1 FROM sqlock_history x
    WHERE x.name = OLD.name AND x.kind = 'semaphore' AND x.token = OLD.token);
END;

INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (10, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
