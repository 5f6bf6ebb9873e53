-- SPDX-License-Identifier: Apache-2.0
-- The raw statements sqlock_try_acquire and sqlock_release run, as one cycle (bench/sql/run).
INSERT INTO sqlock_locks AS l (name, owner, nonce, token, acquired_at, expires_at) VALUES ('bench-raw', 'raw', 'n', nextval('sqlock_token_seq'), clock_timestamp(), clock_timestamp() + interval '30 seconds') ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, nonce = excluded.nonce, token = GREATEST(nextval('sqlock_token_seq'), l.token + 1), acquired_at = excluded.acquired_at, expires_at = excluded.expires_at WHERE l.expires_at <= clock_timestamp() RETURNING l.token AS token \gset
UPDATE sqlock_locks SET expires_at = clock_timestamp() WHERE name = 'bench-raw' AND token = :token AND expires_at > clock_timestamp();
