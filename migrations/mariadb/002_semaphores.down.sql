-- SPDX-License-Identifier: Apache-2.0
DROP FUNCTION IF EXISTS sqlock_semaphore_assert_held;
DROP TABLE IF EXISTS sqlock_semaphore_tickets;
DROP TABLE IF EXISTS sqlock_semaphore_holders;
DROP TABLE IF EXISTS sqlock_semaphores;
