-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 8 for SQLite: nothing changes in the file. PostgreSQL's schema 8 adds the
-- semaphore SQL functions (sqlock_semaphore_try_acquire, ...); on SQLite they are registered on
-- the application's connection (sqlock::sqlite::register_functions). The version is recorded so
-- that both backends keep the same numbers.
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (8, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
