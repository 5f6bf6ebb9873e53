-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 10 for MariaDB/MySQL: the optional, append-only history of leases. The design
-- and what each ended_how means are in the PostgreSQL file (010_history.up.sql); the rules are
-- those of the SQLite file, with times in epoch µs and T the trigger's own read of the clock:
--   released        the row kept its token and its expires_at moved back to at most T, or a
--                   new token replaced a lease that was still live (a handoff at release);
--   expired         its row was deleted after it lapsed (purge, or the next grant of a
--                   semaphore, which deletes ended holder rows); ended_at = expires_at;
--   taken over      it lapsed and a later grant replaced it in the same row;
--   force-released  a lock's nonce became '', a holder's forced became 1, or a live row was
--                   deleted by hand;
--   revoked         it ended while revoke_token = token (a release request, schema 9);
--   lost            ended by the abandon of a grant the client never learnt of: that write
--                   transaction sets the session variable @sqlock_ending = 'lost' around the
--                   UPDATE that ends the lease (triggers run in the session that fired them).
-- One record per (kind, name, token): INSERT IGNORE. The switch is the settings row 'history'
-- ('on'/'off', default 'off'), read only after the cheap test on the row change, so a renewal
-- (same token, later expiry) never reads it. Triggers run inside the statement that changed
-- the row, in its transaction.

CREATE TABLE IF NOT EXISTS sqlock_settings (
  name  VARBINARY(64) NOT NULL PRIMARY KEY,
  value VARBINARY(64) NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO sqlock_settings (name, value) VALUES ('history', 'off');

CREATE TABLE IF NOT EXISTS sqlock_history (
  kind       VARCHAR(9)      NOT NULL,
  name       VARBINARY(255)  NOT NULL,
  token      BIGINT          NOT NULL,
  owner      VARBINARY(255)  NOT NULL,
  metadata   VARBINARY(4096) NOT NULL DEFAULT '',
  units      BIGINT          NOT NULL DEFAULT 1,   -- a semaphore holder's count; 1 for a lock
  granted_at BIGINT          NOT NULL,             -- epoch µs: the lease's acquired_at
  ended_at   BIGINT          NOT NULL,             -- epoch µs
  ended_how  VARCHAR(16)     NOT NULL,
  PRIMARY KEY (name, kind, token),
  KEY sqlock_history_ended_at (ended_at),
  CONSTRAINT sqlock_history_kind CHECK (kind IN ('lock', 'semaphore')),
  CONSTRAINT sqlock_history_how CHECK (ended_how IN ('released', 'expired', 'taken over',
                                                     'force-released', 'revoked', 'lost'))
) ENGINE=InnoDB;

CREATE TRIGGER IF NOT EXISTS sqlock_locks_history AFTER UPDATE ON sqlock_locks FOR EACH ROW
BEGIN
  DECLARE t BIGINT;
  DECLARE ended BIGINT;
  DECLARE how VARCHAR(16) DEFAULT NULL;
  IF (NEW.token <> OLD.token OR NEW.nonce <> OLD.nonce OR NEW.expires_at < OLD.expires_at)
     AND (SELECT value FROM sqlock_settings WHERE name = 'history') = 'on' THEN
    SET t = TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6));
    IF NEW.token <> OLD.token THEN
      SET ended = LEAST(OLD.expires_at, NEW.acquired_at);
      SET how = CASE WHEN OLD.nonce = '' THEN 'force-released'
                     WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                     WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                     WHEN @sqlock_ending = 'lost' THEN 'lost'
                     ELSE 'released' END;
    ELSEIF NEW.expires_at <= t AND NEW.expires_at < OLD.expires_at THEN
      SET ended = NEW.expires_at;
      SET how = CASE WHEN NEW.nonce = '' THEN 'force-released'
                     WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token
                       THEN 'revoked'
                     WHEN @sqlock_ending = 'lost' THEN 'lost'
                     ELSE 'released' END;
    END IF;
    IF how IS NOT NULL THEN
      INSERT IGNORE INTO sqlock_history
        (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
      VALUES ('lock', OLD.name, OLD.token, OLD.owner, OLD.metadata, 1, OLD.acquired_at, ended, how);
    END IF;
  END IF;
END;

CREATE TRIGGER IF NOT EXISTS sqlock_locks_history_delete AFTER DELETE ON sqlock_locks
FOR EACH ROW
BEGIN
  DECLARE t BIGINT;
  IF (SELECT value FROM sqlock_settings WHERE name = 'history') = 'on' THEN
    SET t = TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6));
    INSERT IGNORE INTO sqlock_history
      (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
    VALUES ('lock', OLD.name, OLD.token, OLD.owner, OLD.metadata, 1, OLD.acquired_at,
            LEAST(OLD.expires_at, t),
            CASE WHEN OLD.nonce = '' THEN 'force-released'
                 WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                 WHEN OLD.expires_at > t THEN 'force-released'
                 ELSE 'expired' END);
  END IF;
END;

CREATE TRIGGER IF NOT EXISTS sqlock_semaphore_holders_history AFTER UPDATE
ON sqlock_semaphore_holders FOR EACH ROW
BEGIN
  DECLARE t BIGINT;
  DECLARE ended BIGINT;
  DECLARE how VARCHAR(16) DEFAULT NULL;
  IF (NEW.token <> OLD.token OR NEW.expires_at < OLD.expires_at OR NEW.forced <> OLD.forced)
     AND (SELECT value FROM sqlock_settings WHERE name = 'history') = 'on' THEN
    SET t = TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6));
    IF NEW.token <> OLD.token THEN
      SET ended = LEAST(OLD.expires_at, NEW.acquired_at);
      SET how = CASE WHEN OLD.forced THEN 'force-released'
                     WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                     WHEN OLD.expires_at <= NEW.acquired_at THEN 'taken over'
                     WHEN @sqlock_ending = 'lost' THEN 'lost'
                     ELSE 'released' END;
    ELSEIF NEW.expires_at <= t AND NEW.expires_at < OLD.expires_at THEN
      SET ended = NEW.expires_at;
      SET how = CASE WHEN NEW.forced THEN 'force-released'
                     WHEN OLD.revoke_token = OLD.token OR NEW.revoke_token = OLD.token
                       THEN 'revoked'
                     WHEN @sqlock_ending = 'lost' THEN 'lost'
                     ELSE 'released' END;
    END IF;
    IF how IS NOT NULL THEN
      INSERT IGNORE INTO sqlock_history
        (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
      VALUES ('semaphore', OLD.name, OLD.token, OLD.owner, OLD.metadata, OLD.units,
              OLD.acquired_at, ended, how);
    END IF;
  END IF;
END;

CREATE TRIGGER IF NOT EXISTS sqlock_semaphore_holders_history_delete AFTER DELETE
ON sqlock_semaphore_holders FOR EACH ROW
BEGIN
  DECLARE t BIGINT;
  IF (SELECT value FROM sqlock_settings WHERE name = 'history') = 'on' THEN
    SET t = TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6));
    INSERT IGNORE INTO sqlock_history
      (kind, name, token, owner, metadata, units, granted_at, ended_at, ended_how)
    VALUES ('semaphore', OLD.name, OLD.token, OLD.owner, OLD.metadata, OLD.units,
            OLD.acquired_at, LEAST(OLD.expires_at, t),
            CASE WHEN OLD.forced THEN 'force-released'
                 WHEN OLD.revoke_token = OLD.token THEN 'revoked'
                 WHEN OLD.expires_at > t THEN 'force-released'
                 ELSE 'expired' END);
  END IF;
END;

INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (10, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
