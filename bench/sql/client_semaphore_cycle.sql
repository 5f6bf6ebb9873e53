-- SPDX-License-Identifier: Apache-2.0
-- The C++ client's semaphore cycle, as it sends it (src/backends/postgresql/
-- statements_semaphores.cpp): sqlock_semaphore_attempt, then sqlock_semaphore_release of
-- schema 6 (bench/sql/run), with a fresh nonce per lease as the client draws one. The SQL API's
-- release runs this same release function.
\set n random(1, 1000000000000)
SELECT token FROM sqlock_semaphore_attempt('bench-sem-raw', 4, 1, 'raw', 'n:' || :n, '', 30000, false, false, 0, 'bench', 1, 0, 'bench') AS token \gset
SELECT ended FROM sqlock_semaphore_release('bench-sem-raw', 'n:' || :n, :token, 'bench', 'bench', true);
