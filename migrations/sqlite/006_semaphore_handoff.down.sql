-- SPDX-License-Identifier: Apache-2.0
-- Reverts schema 6 for SQLite: the ticket columns go.
ALTER TABLE sqlock_semaphore_tickets DROP COLUMN attempt;
ALTER TABLE sqlock_semaphore_tickets DROP COLUMN ttl_ms;
ALTER TABLE sqlock_semaphore_tickets DROP COLUMN metadata;
DELETE FROM sqlock_schema_version WHERE version = 6;
