-- SPDX-License-Identifier: Apache-2.0
-- One SQL API cycle: sqlock_try_acquire, then sqlock_release (bench/sql/run).
SELECT sqlock_try_acquire('bench-fn', interval '30 seconds') AS token \gset
SELECT sqlock_release('bench-fn', :token);
