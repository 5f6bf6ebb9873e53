-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 4 for MariaDB/MySQL: the waiting queue of locks. One ticket per queued waiter:
-- taken at its first refused waiting attempt (its number drawn from the token counter, so
-- tickets and tokens never repeat) and refreshed by each later one; a ticket not refreshed
-- lapses. A release hands the lock to the oldest live ticket in its own write transaction: a
-- new token, and this waiter's nonce, owner, metadata and first term (ttl_us).
CREATE TABLE IF NOT EXISTS sqlock_lock_waiters (
  name       VARBINARY(255)  NOT NULL,
  nonce      VARBINARY(255)  NOT NULL,
  owner      VARBINARY(255)  NOT NULL,
  metadata   VARBINARY(4096) NOT NULL DEFAULT '',
  ttl_us     BIGINT          NOT NULL,
  fair       TINYINT         NOT NULL,
  ticket     BIGINT          NOT NULL,
  attempt    BIGINT          NOT NULL,
  since      BIGINT          NOT NULL,
  expires_at BIGINT          NOT NULL,
  PRIMARY KEY (name, nonce),
  KEY sqlock_lock_waiters_queue (name, ticket)
) ENGINE=InnoDB;
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (4, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
