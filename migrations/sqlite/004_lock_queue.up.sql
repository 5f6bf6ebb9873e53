-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 4 for SQLite: the waiting queue of locks. Adds a table only: lock rows, the
-- token counter and the semaphore tables are untouched. Times are epoch ms, database clock.

-- One ticket per queued waiter of a lock: taken at its first refused waiting attempt (its
-- number drawn from the token counter, so tickets and tokens never repeat) and refreshed by each
-- later one (expires_at, attempt); a ticket not refreshed lapses. A release hands the lock to the
-- oldest live ticket of the name, in its own write transaction: a new token, and this waiter's
-- nonce, owner, metadata and ttl.
CREATE TABLE sqlock_lock_waiters (
  name       TEXT    NOT NULL COLLATE BINARY,
  nonce      TEXT    NOT NULL,             -- the waiting acquisition's identity (its lease's)
  owner      TEXT    NOT NULL,
  metadata   TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(metadata AS BLOB)) <= 4096),
  ttl_ms     INTEGER NOT NULL,             -- the lease a handoff grants
  fair       INTEGER NOT NULL CHECK (fair IN (0, 1)),  -- the acquisition is fair
  ticket     INTEGER NOT NULL,             -- place in the queue, from the token counter
  attempt    INTEGER NOT NULL,             -- the waiter's attempt that last refreshed it
  since      INTEGER NOT NULL,             -- epoch ms; waiting since
  expires_at INTEGER NOT NULL,             -- epoch ms; live while now < expires_at
  PRIMARY KEY (name, nonce)
) WITHOUT ROWID;
CREATE INDEX sqlock_lock_waiters_queue ON sqlock_lock_waiters (name, ticket);

INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (4, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
