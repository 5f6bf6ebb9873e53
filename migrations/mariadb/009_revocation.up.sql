-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 9 for MariaDB/MySQL: nothing changes: the release-request columns (revoke_token, revoke_by) are in schemas 1 and 2 here; the library's statements cap a marked lease's renewals at revoke_by.
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (9, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
