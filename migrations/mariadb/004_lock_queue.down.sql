-- SPDX-License-Identifier: Apache-2.0
DROP TABLE IF EXISTS sqlock_lock_waiters;
