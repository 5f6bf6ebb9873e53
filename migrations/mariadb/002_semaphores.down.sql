-- SPDX-License-Identifier: Apache-2.0
DROP TABLE IF EXISTS sqlock_semaphore_tickets;
DROP TABLE IF EXISTS sqlock_semaphore_holders;
DROP TABLE IF EXISTS sqlock_semaphores;
