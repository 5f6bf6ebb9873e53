-- SPDX-License-Identifier: Apache-2.0
-- Reverts schema 10 for SQLite: the history of leases, its triggers and the settings go.
DROP TRIGGER sqlock_locks_history;
DROP TRIGGER sqlock_locks_history_delete;
DROP TRIGGER sqlock_semaphore_holders_history;
DROP TRIGGER sqlock_semaphore_holders_history_delete;
DROP TABLE sqlock_history;
DROP TABLE sqlock_settings;
DELETE FROM sqlock_schema_version WHERE version = 10;
