-- Reverts sqlock schema 2 for PostgreSQL: every semaphore, holder and ticket is lost. Lock rows
-- and the token sequence stay.
DROP FUNCTION sqlock_semaphore_assert_held(text, bigint);
DROP FUNCTION sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, boolean,
                                       boolean, bigint, text);
DROP TABLE sqlock_semaphore_tickets;
DROP TABLE sqlock_semaphore_holders;
DROP TABLE sqlock_semaphores;
DELETE FROM sqlock_schema_version WHERE version = 2;
