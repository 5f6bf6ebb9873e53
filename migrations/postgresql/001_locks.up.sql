-- sqlock schema 1 for PostgreSQL: lock rows, the fencing token sequence, the schema version.
-- No schema qualification: the runner sets search_path to the target schema (default public).
-- Run it in one transaction; `sqlock migrate up` and client::migrate() do, serialised by
-- pg_advisory_xact_lock.

CREATE TABLE sqlock_schema_version (
  version    integer     NOT NULL PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Fencing tokens. NO CYCLE: a sequence that wrapped would hand out small tokens again.
-- CACHE 1: a cached range lost in a crash is harmless, but tokens drawn by different sessions
-- would then interleave out of grant order.
CREATE SEQUENCE sqlock_token_seq AS bigint MINVALUE 1 START WITH 1 INCREMENT BY 1 NO CYCLE CACHE 1;

-- One row per lock name. A release never deletes the row (it moves expires_at), only purge
-- does, so every later grant goes through the row-locked ON CONFLICT DO UPDATE path and takes
-- GREATEST(nextval, token + 1). No index on expires_at: renewals stay HOT updates.
CREATE TABLE sqlock_locks (
  name          text COLLATE "C" NOT NULL PRIMARY KEY
                CHECK (octet_length(name) BETWEEN 1 AND 255),
  owner         text        NOT NULL,
  nonce         text        NOT NULL,        -- the lease's identity; '' after force release
  token         bigint      NOT NULL,
  acquired_at   timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,        -- live while the server clock is before it
  metadata      text        NOT NULL DEFAULT ''
                CHECK (octet_length(metadata) <= 4096),
  waiters_until timestamptz NOT NULL DEFAULT '-infinity'  -- a release notifies only before it
) WITH (fillfactor = 70);

INSERT INTO sqlock_schema_version (version) VALUES (1);
