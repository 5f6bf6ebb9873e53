-- SPDX-License-Identifier: Apache-2.0
-- sqlock schema 5 for MariaDB/MySQL: nothing changes. PostgreSQL's schema 5 gives each queue ticket a NOTIFY channel; MariaDB has no NOTIFY: waiters of other processes poll.
-- The version is recorded so that every backend keeps the same numbers: one library version,
-- one schema version.
INSERT IGNORE INTO sqlock_schema_version (version, applied_at) VALUES (5, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)));
