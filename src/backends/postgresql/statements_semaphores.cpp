// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend's semaphore statements: acquire, release, force, inspect and list. A
// part of the constructor of `statements` (statements.cpp).

#include "backends/postgresql/statements.hpp"

namespace sqlock::detail::pg {

void statements::semaphore_statements() {
  // A grant is one call of sqlock_semaphore_attempt (006_semaphore_handoff.up.sql): it must
  // lock the semaphore row before it counts the holders, in a later snapshot, which one SQL
  // statement cannot do. The function is called with parameters only, schema-qualified; it
  // runs with the search_path fixed at its creation.
  sem_acquire = "SELECT granted, token, acquired_us, expires_us, retry_us FROM " + schema_ident +
                ".sqlock_semaphore_attempt($1::text, $2::bigint, $3::bigint, $4::text, $5::text, "
                "$6::text, $7::bigint, $8::boolean, $9::boolean, $10::bigint, $11::text, "
                "$12::bigint, $13::bigint, $14::text)";
  // Releases and abandons are one call of sqlock_semaphore_release (006): it ends the holder
  // row (expires_at = now(), kept: the next grant deletes it) and hands the room to the oldest
  // queued tickets that fit, or wakes waiters as schema 2's release statement did. $1 name, $2
  // nonce, $3 token (NULL: abandon, whatever the token; it also drops the nonce's ticket, first),
  // $4 channel, $5 the handoff channel for a ticket without one. Rows as a lock release's:
  // (ended, notified, locked, unflushed, next, token, attempt, acquired_us, expires_us), one
  // per waiter handed units. The user's release waits for the holder row (briefly: see
  // release()); the others skip it when locked and report it.
  auto sem_end = [&](const char* wait) {
    return "SELECT ended, notified, locked, unflushed, next, token, attempt, acquired_us, "
           "expires_us FROM " +
           schema_ident +
           ".sqlock_semaphore_release($1::text, $2::text, $3::bigint, $4::text, $5::text, " + wait +
           ")";
  };
  sem_release = sem_end("false");
  sem_abandon = sem_release;  // called with a NULL token
  // As the lock's abandon_lost (schema 10): the function's arguments are evaluated before it
  // runs, so the channel argument carries the transaction-local mark for the history trigger.
  sem_abandon_lost =
      "SELECT ended, notified, locked, unflushed, next, token, attempt, "
      "acquired_us, expires_us FROM " +
      schema_ident +
      ".sqlock_semaphore_release($1::text, $2::text, $3::bigint, "
      "CASE WHEN pg_catalog.set_config('sqlock.ending', 'lost', true) = 'lost' "
      "THEN $4::text END, $5::text, false)";
  sem_release_waiting = sem_end("true");
  // $1 name, $2 token (0: every live holder), $3 channel. Waits for a fenced transaction,
  // like the lock's force release. `forced` tells the holder why its renewal failed. The
  // wake-up as for a release (the count, an aggregate, makes every holder row ended first).
  sem_force = "WITH ended AS (UPDATE " + holders +
              " SET expires_at = now(), forced = true "
              "WHERE name = $1::text AND ($2::bigint = 0 OR token = $2::bigint) "
              "AND expires_at > now() RETURNING 1), "
              "n AS (SELECT count(*) AS n FROM ended), "
              "sem AS (SELECT waiters_until > now() AS waited FROM " +
              semaphores +
              " WHERE name = $1::text AND (SELECT n FROM n) > 0 FOR SHARE SKIP LOCKED) "
              "SELECT n.n, CASE WHEN n.n > 0 AND coalesce((SELECT bool_or(waited) FROM sem), true) "
              "THEN pg_notify($3::text, $1::text)::text END FROM n";
  // One statement (one snapshot) answers a semaphore with its live holders and tickets, as
  // flat rows ordered by name: (part 0: the semaphore, its limit and used units; part 1: a
  // holder; part 2: a waiter's ticket), then token or ticket. Times are epoch microseconds
  // and remaining times are computed by the server.
  auto sem_select = [&](const std::string& which) {
    return "WITH sel AS (SELECT s.name, s.sem_limit, (SELECT coalesce(sum(h.units), 0) FROM " +
           holders + " h WHERE h.name = s.name AND h.expires_at > now()) AS used FROM " +
           semaphores + " s WHERE " + which + ") " +
           "SELECT 0 AS part, sel.name, sel.sem_limit, sel.used, NULL::text, NULL::text, "
           "0::bigint AS ord, 0::bigint, 0::bigint, 0::bigint FROM sel "
           "UNION ALL SELECT 1, h.name, 0, h.units, h.owner, h.metadata, h.token, " +
           epoch_us("h.acquired_at") + ", " + epoch_us("h.expires_at") + ", " +
           epoch_us("h.expires_at - now()") + " FROM " + holders +
           " h JOIN sel ON h.name = sel.name WHERE h.expires_at > now() "
           "UNION ALL SELECT 2, k.name, 0, k.units, k.owner, NULL, k.ticket, 0, " +
           epoch_us("k.expires_at") + ", " + epoch_us("k.expires_at - now()") + " FROM " + tickets +
           " k JOIN sel ON k.name = sel.name WHERE k.expires_at > now() "
           "ORDER BY 2, 1, 7";
  };
  sem_inspect = sem_select("s.name = $1::text");
  // As `list`: a byte-prefix range; held = some live holder, free = none; the limit counts
  // semaphores (the LIMIT sits in a subquery, before holders and tickets join).
  sem_list = sem_select(
      "s.name IN (SELECT f.name FROM (SELECT s2.name, EXISTS (SELECT 1 FROM " + holders +
      " h2 WHERE h2.name = s2.name AND h2.expires_at > now()) AS held FROM " + semaphores +
      " s2 WHERE s2.name >= $1::text AND ($2::text IS NULL OR s2.name < $2::text)) f "
      "WHERE $3::integer = 0 OR ($3::integer = 1 AND f.held) OR ($3::integer = 2 AND NOT "
      "f.held) ORDER BY f.name LIMIT $4::bigint)");
}

}  // namespace sqlock::detail::pg
