-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 4 for SQLite: every lock's queue of waiters is lost. Tickets are not
-- leases (no token is anyone's to fence with), so nothing is refused. Lock rows and the token
-- counter stay.
DROP TABLE sqlock_lock_waiters;
DELETE FROM sqlock_schema_version WHERE version = 4;
