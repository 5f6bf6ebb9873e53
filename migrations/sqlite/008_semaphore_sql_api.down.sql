-- SPDX-License-Identifier: Apache-2.0
-- Reverts sqlock schema 8 for SQLite: only the version record.
DELETE FROM sqlock_schema_version WHERE version = 8;
