-- Reverts sqlock schema 1 for PostgreSQL. Every lock row and the token sequence are lost:
-- tokens restart at 1, so only run it when no protected resource still remembers old tokens.
DROP FUNCTION sqlock_assert_held(text, bigint);
DROP TABLE sqlock_locks;
DROP SEQUENCE sqlock_token_seq;
DROP TABLE sqlock_schema_version;
