-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 6 for MariaDB/MySQL: nothing changes: the ticket columns of a semaphore handoff (metadata, ttl_us, attempt) are in schema 2 here.
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (6, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
