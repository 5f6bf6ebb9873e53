-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 7 for SQLite: nothing changes in the file. PostgreSQL's schema 7 adds the SQL
-- functions (sqlock_try_acquire, ...); SQLite has no stored functions. The version is recorded
-- so that both backends keep the same numbers.
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (7, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
