-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 1 for SQLite. Every lock row and the token counter are lost: tokens
-- restart at 1, so only run it when no protected resource still remembers old tokens.
DROP TABLE sqlock_counters;
DROP TABLE sqlock_locks;
DROP TABLE sqlock_schema_version;
