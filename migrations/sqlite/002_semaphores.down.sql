-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 2 for SQLite: every semaphore, holder and ticket is lost. Lock rows and
-- the token counter stay.
DROP TABLE sqlock_semaphore_tickets;
DROP TABLE sqlock_semaphore_holders;
DROP TABLE sqlock_semaphores;
DELETE FROM sqlock_schema_version WHERE version = 2;
