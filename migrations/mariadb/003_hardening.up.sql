-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 3 for MariaDB/MySQL: nothing changes. PostgreSQL's schema 3 revokes EXECUTE from PUBLIC and pins search_path; here no routine is granted to anyone by default and routines name their own database.
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (3, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
