-- SPDX-License-Identifier: Apache-2.0
-- Nothing to undo (schema 6 adds nothing on MariaDB/MySQL).
SELECT 1;
