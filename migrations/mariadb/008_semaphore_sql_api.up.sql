-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 8 for MariaDB/MySQL: nothing changes (see 007).
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (8, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
