-- SPDX-License-Identifier: Apache-2.0
-- Drops schema 1 (and with it every lock row and the token counter).
DROP FUNCTION IF EXISTS sqlock_assert_held;
DROP TABLE IF EXISTS sqlock_locks;
DROP TABLE IF EXISTS sqlock_counters;
DROP TABLE IF EXISTS sqlock_schema_version;
