-- SPDX-License-Identifier: Apache-2.0
-- Drops the history (schema 10): its triggers, its table and the settings.
DROP TRIGGER IF EXISTS sqlock_semaphore_holders_history_delete;
DROP TRIGGER IF EXISTS sqlock_semaphore_holders_history;
DROP TRIGGER IF EXISTS sqlock_locks_history_delete;
DROP TRIGGER IF EXISTS sqlock_locks_history;
DROP TABLE IF EXISTS sqlock_history;
DROP TABLE IF EXISTS sqlock_settings;
