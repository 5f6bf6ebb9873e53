-- SPDX-License-Identifier: Apache-2.0
-- One SQL API semaphore cycle (schema 8): sqlock_semaphore_try_acquire, then
-- sqlock_semaphore_release (bench/sql/run).
SELECT sqlock_semaphore_try_acquire('bench-sem-fn', 4, 1, interval '30 seconds') AS token \gset
SELECT sqlock_semaphore_release('bench-sem-fn', :token);
