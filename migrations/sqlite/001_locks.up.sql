-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 1 for SQLite: lock rows, the fencing token counter, the schema version.
-- Times are integer epoch milliseconds read from SQLite's clock (the host's wall clock):
--   CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)
-- Run it in one transaction (BEGIN IMMEDIATE); `sqlock migrate up` and client::migrate() do.

CREATE TABLE sqlock_schema_version (
  version    INTEGER NOT NULL PRIMARY KEY,
  applied_at INTEGER NOT NULL               -- epoch ms, database clock
);

-- One row per lock name. A row is never deleted by a release (it ends the lease by moving
-- expires_at), only by purge, so every later grant goes through the row and takes a larger token.
CREATE TABLE sqlock_locks (
  name          TEXT    NOT NULL PRIMARY KEY COLLATE BINARY   -- byte-exact
                CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 255),
  owner         TEXT    NOT NULL,            -- client instance, for humans
  nonce         TEXT    NOT NULL,            -- the lease's identity; '' after force release
  token         INTEGER NOT NULL,            -- fencing token of the current/last grant
  acquired_at   INTEGER NOT NULL,            -- epoch ms
  expires_at    INTEGER NOT NULL,            -- epoch ms; the lease is live while now < expires_at
  metadata      TEXT    NOT NULL DEFAULT ''
                CHECK (length(CAST(metadata AS BLOB)) <= 4096),
  waiters_until INTEGER NOT NULL DEFAULT 0   -- epoch ms; someone waits for a release until then
) WITHOUT ROWID;

-- The fencing token sequence: one counter row, updated in the same BEGIN IMMEDIATE transaction
-- as the grant, so tokens strictly increase across every grant, release, expiry and purge.
CREATE TABLE sqlock_counters (
  name  TEXT    NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL CHECK (value >= 0)  -- the last token issued
) WITHOUT ROWID;
INSERT INTO sqlock_counters (name, value) VALUES ('token', 0);

INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (1, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
