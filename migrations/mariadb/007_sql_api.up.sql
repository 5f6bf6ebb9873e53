-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 7 for MariaDB/MySQL: nothing changes. PostgreSQL's schema 7 adds SQL functions that grant, renew and release leases; on MariaDB only sqlock_assert_held exists (schema 1): grants go through the library or the CLI.
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (7, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
