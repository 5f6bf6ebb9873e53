-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 2 for SQLite: counting semaphores, their holders and fair-waiting tickets.
-- Adds tables only: lock rows and the token counter are untouched. Times are epoch ms.

-- One row per semaphore name (a namespace of its own: the lock "x" and the semaphore "x" are
-- unrelated). Grants run in BEGIN IMMEDIATE transactions, so each sees every earlier holder.
CREATE TABLE sqlock_semaphores (
  name       TEXT    NOT NULL PRIMARY KEY COLLATE BINARY
             CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 255),
  sem_limit  INTEGER NOT NULL CHECK (sem_limit BETWEEN 1 AND 1000000000),
  token      INTEGER NOT NULL DEFAULT 0,   -- the last token granted on it
  changed_at INTEGER NOT NULL              -- holder and ticket rows deleted had ended by then
) WITHOUT ROWID;

-- One row per acquisition: a lease like a lock's, with its own token. A release ends it by
-- moving expires_at; the next grant on the semaphore deletes ended rows.
CREATE TABLE sqlock_semaphore_holders (
  name        TEXT    NOT NULL COLLATE BINARY,
  nonce       TEXT    NOT NULL,            -- the lease's identity
  owner       TEXT    NOT NULL,
  token       INTEGER NOT NULL,
  units       INTEGER NOT NULL CHECK (units BETWEEN 1 AND 1000000000),
  acquired_at INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,            -- live while now < expires_at
  forced      INTEGER NOT NULL DEFAULT 0,  -- ended by an admin (force release)
  metadata    TEXT    NOT NULL DEFAULT '' CHECK (length(CAST(metadata AS BLOB)) <= 4096),
  PRIMARY KEY (name, nonce)
) WITHOUT ROWID;

-- Fair waiting: one ticket per waiting acquisition, drawn from the token counter at its first
-- refused attempt and extended by each later one; a ticket not extended lapses.
CREATE TABLE sqlock_semaphore_tickets (
  name       TEXT    NOT NULL COLLATE BINARY,
  nonce      TEXT    NOT NULL,
  owner      TEXT    NOT NULL,
  ticket     INTEGER NOT NULL,
  units      INTEGER NOT NULL CHECK (units BETWEEN 1 AND 1000000000),
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (name, nonce)
) WITHOUT ROWID;

INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (2, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
