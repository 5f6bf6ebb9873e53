-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 2 for MariaDB/MySQL: counting semaphores, their holders and fair-waiting
-- tickets (the columns later schemas add on the other backends are here from the start: the
-- ticket's handoff term, metadata and attempt of schema 6, the release request of schema 9).
-- Times are epoch µs, database clock; names are byte-exact (see 001_locks.up.sql).

-- One row per semaphore name (a namespace of its own: lock 'x' and semaphore 'x' are unrelated).
CREATE TABLE IF NOT EXISTS sqlock_semaphores (
  name       VARBINARY(255) NOT NULL PRIMARY KEY,
  sem_limit  BIGINT         NOT NULL,
  token      BIGINT         NOT NULL DEFAULT 0,  -- the last token granted on it
  changed_at BIGINT         NOT NULL,            -- holder and ticket rows deleted had ended by then
  CONSTRAINT sqlock_semaphores_limit CHECK (sem_limit BETWEEN 1 AND 1000000000)
) ENGINE=InnoDB;

-- One row per acquisition: a lease like a lock's, with its own token. A release ends it by
-- moving expires_at; the next grant on the semaphore deletes ended rows.
CREATE TABLE IF NOT EXISTS sqlock_semaphore_holders (
  name         VARBINARY(255)  NOT NULL,
  nonce        VARBINARY(255)  NOT NULL,
  owner        VARBINARY(255)  NOT NULL,
  token        BIGINT          NOT NULL,
  units        BIGINT          NOT NULL,
  acquired_at  BIGINT          NOT NULL,
  expires_at   BIGINT          NOT NULL,           -- live while now < expires_at
  forced       TINYINT         NOT NULL DEFAULT 0, -- ended by an admin (force release)
  metadata     VARBINARY(4096) NOT NULL DEFAULT '',
  revoke_token BIGINT          NULL,
  revoke_by    BIGINT          NULL,
  PRIMARY KEY (name, nonce),
  CONSTRAINT sqlock_semaphore_holders_units CHECK (units BETWEEN 1 AND 1000000000)
) ENGINE=InnoDB;

-- Fair waiting: one ticket per waiting acquisition, drawn from the token counter at its first
-- refused attempt and extended by each later one; a ticket not extended lapses. A release
-- hands the room it makes to the oldest tickets that fit (ttl_us: the first term it grants).
CREATE TABLE IF NOT EXISTS sqlock_semaphore_tickets (
  name       VARBINARY(255)  NOT NULL,
  nonce      VARBINARY(255)  NOT NULL,
  owner      VARBINARY(255)  NOT NULL,
  ticket     BIGINT          NOT NULL,
  units      BIGINT          NOT NULL,
  expires_at BIGINT          NOT NULL,
  metadata   VARBINARY(4096) NOT NULL DEFAULT '',
  ttl_us     BIGINT          NOT NULL DEFAULT 0,
  attempt    BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (name, nonce),
  CONSTRAINT sqlock_semaphore_tickets_units CHECK (units BETWEEN 1 AND 1000000000)
) ENGINE=InnoDB;

-- Fencing with a semaphore holder, as sqlock_assert_held (001_locks.up.sql) with a lock:
--   SELECT sqlock_semaphore_assert_held('exporters', 42);
-- fails with SQLSTATE '45001' unless holder_token is a live holder of semaphore sem_name by the
-- server's clock, and share-locks that holder's row (only that one) until the caller's
-- transaction ends. SQL SECURITY DEFINER, EXECUTE granted to nobody by default.
CREATE FUNCTION IF NOT EXISTS sqlock_semaphore_assert_held(sem_name VARBINARY(255),
                                                          holder_token BIGINT)
RETURNS INT SQL SECURITY DEFINER READS SQL DATA
BEGIN
  DECLARE holder_nonce VARBINARY(255) DEFAULT NULL;
  DECLARE found_token BIGINT DEFAULT NULL;
  DECLARE found_expiry BIGINT DEFAULT NULL;
  DECLARE found_forced TINYINT DEFAULT 0;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET holder_nonce = NULL;
  -- Find the holder with a plain read (a locking read by token would lock every holder row of
  -- the semaphore it scans), then lock that one row by its key and decide on its latest version.
  SELECT nonce INTO holder_nonce FROM sqlock_semaphore_holders
  WHERE name = sem_name AND token = holder_token;
  IF holder_nonce IS NOT NULL THEN
    SELECT token, expires_at, forced INTO found_token, found_expiry, found_forced
    FROM sqlock_semaphore_holders WHERE name = sem_name AND nonce = holder_nonce
    LOCK IN SHARE MODE;
  END IF;
  IF holder_nonce IS NULL OR found_token IS NULL OR found_token <> holder_token
     OR found_forced <> 0 OR found_expiry <= TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)) THEN
    SIGNAL SQLSTATE '45001'
      SET MESSAGE_TEXT = 'sqlock: lease lost: the token is not a live holder of the semaphore';
  END IF;
  RETURN 1;
END;

INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (2, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
