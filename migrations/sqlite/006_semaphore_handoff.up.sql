-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 6 for SQLite: a semaphore's release hands the room it makes to the oldest fair
-- waiters that fit, in its own write transaction (as a lock's release does, schema 4). A ticket
-- now carries what such a grant needs: the waiter's metadata, the first term `ttl_ms` (0: a
-- ticket written before this migration, never handed anything) and the number of its last
-- attempt. Times are epoch ms.
ALTER TABLE sqlock_semaphore_tickets ADD COLUMN metadata TEXT NOT NULL DEFAULT ''
  CHECK (length(CAST(metadata AS BLOB)) <= 4096);
ALTER TABLE sqlock_semaphore_tickets ADD COLUMN ttl_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sqlock_semaphore_tickets ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (6, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
