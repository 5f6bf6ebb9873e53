-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 3 for SQLite: nothing changes. PostgreSQL's schema 3 hardens privileges and
-- search_path, which SQLite does not have; the version is recorded so that both backends keep
-- the same numbers.
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (3, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
