-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 1 for MariaDB (10.6+) and MySQL (8.0.1+): lock rows, the fencing token counter,
-- the schema version, and sqlock_assert_held. InnoDB tables.
--
-- Times are BIGINT epoch MICROSECONDS read from the database server's clock, never a client's:
--   TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))
-- (UTC_TIMESTAMP does not depend on the session's time zone; NOW() would, and is ambiguous for
-- an hour a year where clocks go back.)
--
-- Names, nonces, owners and metadata are VARBINARY: compared byte for byte, as on the other
-- backends. (utf8mb4_bin is a PAD SPACE collation: it would make 'a' and 'a ' one lock name.
-- MariaDB's utf8mb4_nopad_bin would do, but MySQL 8 has no such collation; one schema serves
-- both.) The library checks every value (names 1..255 bytes of UTF-8, metadata <= 4096 bytes)
-- before sending it.
--
-- DDL is not transactional here (each statement commits): a migration interrupted half way
-- leaves what it had created; run `sqlock migrate` again, which skips what exists.
-- Concurrent runners serialise on GET_LOCK('sqlock_migrate') and re-read the version.

CREATE TABLE IF NOT EXISTS sqlock_schema_version (
  version    INT    NOT NULL PRIMARY KEY,
  applied_at BIGINT NOT NULL                 -- epoch µs, database clock
) ENGINE=InnoDB;

-- One row per lock name. A release ends the lease by moving expires_at; only purge deletes a
-- row, and tokens come from the counter row, so every later grant takes a larger token.
CREATE TABLE IF NOT EXISTS sqlock_locks (
  name          VARBINARY(255)  NOT NULL PRIMARY KEY,
  owner         VARBINARY(255)  NOT NULL,    -- client instance, for humans
  nonce         VARBINARY(255)  NOT NULL,    -- the lease's identity; '' after a force release
  token         BIGINT          NOT NULL,    -- fencing token of the current/last grant
  acquired_at   BIGINT          NOT NULL,    -- epoch µs
  expires_at    BIGINT          NOT NULL,    -- epoch µs; live while now < expires_at
  metadata      VARBINARY(4096) NOT NULL DEFAULT '',
  revoke_token  BIGINT          NULL,        -- schema 9: a release request's lease (its token)
  revoke_by     BIGINT          NULL,        -- schema 9: that request's deadline (epoch µs)
  CONSTRAINT sqlock_locks_name CHECK (OCTET_LENGTH(name) BETWEEN 1 AND 255)
) ENGINE=InnoDB;

-- The fencing token sequence (MySQL 8 has no sequences): one counter row. Every write
-- transaction of sqlock locks it first (SELECT ... FOR UPDATE), so writers serialise on it and
-- tokens strictly increase across every grant, release, expiry and purge.
CREATE TABLE IF NOT EXISTS sqlock_counters (
  name  VARBINARY(64) NOT NULL PRIMARY KEY,
  value BIGINT        NOT NULL,              -- the last token issued
  CONSTRAINT sqlock_counters_value CHECK (value >= 0)
) ENGINE=InnoDB;
INSERT IGNORE INTO sqlock_counters (name, value) VALUES ('token', 0);

-- Fencing inside the application's own transaction:
--   START TRANSACTION; SELECT sqlock_assert_held('nightly-report', 42); ...writes...; COMMIT;
-- Fails with SQLSTATE '45001' (MESSAGE_TEXT 'sqlock: lease lost: ...') unless lock_token is the
-- live lease of lock_name by the server's clock, and share-locks the lock row until the
-- caller's transaction ends, so no takeover can commit in between (the holder's own renewals
-- skip the row meanwhile: keep fenced transactions well under ttl/2). The share lock is taken
-- only when the token is the current one (a plain read decides that first), and the message
-- never names the current token.
-- SQL SECURITY DEFINER: callers need no rights on the tables, only EXECUTE on the function,
-- which nobody but its creator has until granted (MariaDB and MySQL grant no routine to PUBLIC):
--   GRANT EXECUTE ON FUNCTION db.sqlock_assert_held TO 'app'@'%';
-- A role that may call it can hold any lock row in an open transaction; grant it only to roles
-- that hold leases. With binary logging on, creating it needs log_bin_trust_function_creators
-- (or SUPER), as every stored function does.
CREATE FUNCTION IF NOT EXISTS sqlock_assert_held(lock_name VARBINARY(255), lock_token BIGINT)
RETURNS INT SQL SECURITY DEFINER READS SQL DATA
BEGIN
  DECLARE current_token BIGINT DEFAULT NULL;
  DECLARE found_expiry BIGINT DEFAULT NULL;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET current_token = NULL;
  -- A plain read first: InnoDB's locking read locks the row it reads whatever its token, and a
  -- failed check must lock nothing. (In a REPEATABLE READ transaction this read uses the
  -- transaction's snapshot: a lease granted after that snapshot reads as stale, a refusal
  -- that is only ever safe. Take the lease before starting the transaction.)
  SELECT token INTO current_token FROM sqlock_locks WHERE name = lock_name;
  IF current_token IS NULL THEN
    SIGNAL SQLSTATE '45001' SET MESSAGE_TEXT = 'sqlock: lease lost: there is no such lock';
  END IF;
  IF lock_token IS NULL OR current_token <> lock_token THEN
    SIGNAL SQLSTATE '45001'
      SET MESSAGE_TEXT = 'sqlock: lease lost: the token is stale (the lock was granted again)';
  END IF;
  -- The current token: lock the row and decide on its latest version.
  SELECT token, expires_at INTO current_token, found_expiry FROM sqlock_locks
  WHERE name = lock_name LOCK IN SHARE MODE;
  IF current_token IS NULL OR current_token <> lock_token THEN
    SIGNAL SQLSTATE '45001'
      SET MESSAGE_TEXT = 'sqlock: lease lost: the token is stale (the lock was granted again)';
  END IF;
  IF found_expiry <= TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)) THEN
    SIGNAL SQLSTATE '45001' SET MESSAGE_TEXT = 'sqlock: lease lost: the lease has expired';
  END IF;
  RETURN 1;
END;

INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (1, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
