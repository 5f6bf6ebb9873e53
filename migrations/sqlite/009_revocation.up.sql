-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 9 for SQLite: cooperative revocation (see the PostgreSQL file for the design).
-- revoke_token names the lease a release request applies to (a later grant's larger token makes
-- a stale mark inert), revoke_by is the request's deadline (epoch ms, database clock). The
-- request caps the lease's expiry at that deadline, and every renewal statement keeps a marked
-- lease's expiry (SQLite's triggers cannot rewrite the row being updated, so the statements
-- say it themselves).
ALTER TABLE sqlock_locks ADD COLUMN revoke_token INTEGER;
ALTER TABLE sqlock_locks ADD COLUMN revoke_by INTEGER;
ALTER TABLE sqlock_semaphore_holders ADD COLUMN revoke_token INTEGER;
ALTER TABLE sqlock_semaphore_holders ADD COLUMN revoke_by INTEGER;
INSERT INTO sqlock_schema_version (version, applied_at)
VALUES (9, CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER));
