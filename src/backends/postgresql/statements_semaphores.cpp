// The PostgreSQL backend's semaphore statements: acquire, release, force, inspect and list. A
// part of the constructor of `statements` (statements.cpp).

#include "backends/postgresql/statements.hpp"

namespace sqlock::detail::pg {

void statements::semaphore_statements() {
  const std::string unflushed = unflushed_commit;
  // A grant is one call of sqlock_semaphore_acquire (002_semaphores.up.sql): it must lock
  // the semaphore row before it counts the holders, in a later snapshot, which one SQL
  // statement cannot do. The function is called with parameters only, schema-qualified; it
  // runs with the search_path fixed at its creation.
  sem_acquire = "SELECT granted, token, acquired_us, expires_us, retry_us FROM " + schema_ident +
                ".sqlock_semaphore_acquire($1::text, $2::bigint, $3::bigint, $4::text, $5::text, "
                "$6::text, $7::bigint, $8::boolean, $9::boolean, $10::bigint, $11::text)";
  // Releases end the holder row (expires_at = now()) and keep it: the next grant deletes
  // it, under the semaphore row's lock and skipping rows others hold.
  //
  // The wake-up reads the semaphore's mark under a share lock, taken with SKIP LOCKED. A
  // plain read would race with a waiter that marks the semaphore (another row than the one
  // released) after its own look: each statement would miss the other's uncommitted write,
  // and the waiter would sleep through the release. With the share lock: when the release
  // gets it, a later mark waits for the release's commit and the waiter's second look (in
  // sqlock_semaphore_acquire) then sees the room; when the row is locked (a waiter marking,
  // a grant or a purge batch in progress) the release does not wait but notifies anyway, as
  // it does for a vanished row. Waiting instead queued every release behind contenders'
  // grant attempts on the semaphore row, while they were refused for want of that very
  // release (8 clients, limit 1: 92 -> 118 grants/s, 155 -> 155 at limit 2; with the
  // function's unflushed refusals 147 -> 164 and 220 -> 247; A/B measured, interleaved).
  // Nothing here waits for the semaphore row, so there is no lock-order question with
  // grants (which hold it and only ever skip locked holder rows).
  //
  // $1 name, $2 nonce, $3 token (NULL: abandon, whatever the token; it also drops the
  // nonce's queue ticket), $4 channel. Rows as for locks: (ended, notified, locked).
  const std::string hmine =
      "name = $1::text AND nonce = $2::text AND ($3::bigint IS NULL OR token = $3::bigint) "
      "AND expires_at > now()";
  const std::string sem_notify =
      "sem AS (SELECT waiters_until > now() AS waited FROM " + semaphores +
      " WHERE name = $1::text AND EXISTS (SELECT 1 FROM changed) FOR SHARE SKIP LOCKED), "
      "w AS (SELECT coalesce(bool_or(waited), true) AS waited FROM sem) "
      "SELECT EXISTS (SELECT 1 FROM ended), CASE WHEN w.waited THEN pg_notify($4::text, "
      "$1::text)::text END, false, " +
      unflushed + " FROM w WHERE EXISTS (SELECT 1 FROM changed)";
  sem_release = "WITH target AS (SELECT name, nonce FROM " + holders + " WHERE " + hmine +
                " FOR UPDATE SKIP LOCKED), "
                "ended AS (UPDATE " +
                holders +
                " h SET expires_at = now() FROM target "
                "WHERE h.name = target.name AND h.nonce = target.nonce RETURNING 1), "
                "gone AS (DELETE FROM " +
                tickets +
                " k WHERE $3::bigint IS NULL AND (k.name, k.nonce) "
                "IN (SELECT x.name, x.nonce FROM " +
                tickets +
                " x WHERE x.name = $1::text "
                "AND x.nonce = $2::text FOR UPDATE SKIP LOCKED) RETURNING 1), "
                "changed AS (SELECT 1 FROM ended UNION ALL SELECT 1 FROM gone), " +
                sem_notify + " UNION ALL SELECT false, NULL, true, NULL FROM " + holders +
                " WHERE " + hmine + " AND NOT EXISTS (SELECT 1 FROM target)";
  sem_abandon = sem_release;  // called with a NULL token
  sem_release_waiting = "WITH ended AS (UPDATE " + holders + " SET expires_at = now() WHERE " +
                        hmine + " RETURNING 1), changed AS (SELECT 1 FROM ended), " + sem_notify;
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
