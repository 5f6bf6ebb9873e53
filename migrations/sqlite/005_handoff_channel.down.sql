-- SPDX-License-Identifier: Apache-2.0
-- Reverts schema 5 for SQLite (a version number only: see the up file).
DELETE FROM sqlock_schema_version WHERE version = 5;
