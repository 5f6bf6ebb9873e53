-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 5 for SQLite: no change. Schema 5 lets a PostgreSQL handoff notify only the
-- waiting client (a channel per queue ticket); SQLite wakes waiters in its own process directly
-- and other processes poll, so it needs no channel. The version follows PostgreSQL's, so one
-- library version means one schema version on every backend.
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (5, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
