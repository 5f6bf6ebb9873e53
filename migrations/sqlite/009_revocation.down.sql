-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 9 for SQLite: release requests go.
ALTER TABLE sqlock_locks DROP COLUMN revoke_token;
ALTER TABLE sqlock_locks DROP COLUMN revoke_by;
ALTER TABLE sqlock_semaphore_holders DROP COLUMN revoke_token;
ALTER TABLE sqlock_semaphore_holders DROP COLUMN revoke_by;
DELETE FROM sqlock_schema_version WHERE version = 9;
