// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend's history statements (schema 10, 010_history.up.sql): reading the
// history, the switch, trimming it, and the abandons that mark their transaction so that the
// trigger records the lease they end as 'lost'. A part of the constructor of `statements`.

#include "backends/postgresql/statements.hpp"

namespace sqlock::detail::pg {

void statements::history_statements() {
  // $1 name ('' = every name), $2 since ms (NULL: no bound), $3 limit (NULL: none).
  // The recorded leases, and the current rows' leases not recorded (NOT EXISTS by the
  // primary key): live ones, and lapsed ones nothing has touched since (classified from the
  // row as the DELETE trigger would: force-released, revoked or expired). One statement, one
  // snapshot: a lease recorded between two reads can neither vanish nor show twice. Newest
  // grants first, so that LIMIT keeps the latest; the caller reverses them.
  auto by_name = [](const std::string& alias) {
    return "($1::text = '' OR " + alias + ".name = $1::text)";
  };
  const std::string horizon = "now() - $2::bigint * interval '1 millisecond'";
  auto current = [&](const char* kind, const std::string& table, const char* units,
                     const char* forced) {
    return std::string("SELECT '") + kind + "'::text AS kind, c.name, c.token, c.owner, " +
           "c.metadata, " + units + " AS units, c.acquired_at AS granted_at, " +
           "CASE WHEN c.expires_at > now() THEN NULL ELSE c.expires_at END AS ended_at, " +
           "CASE WHEN c.expires_at > now() THEN 'live' WHEN " + forced +
           " THEN 'force-released' WHEN c.revoke_token = c.token THEN 'revoked' " +
           "ELSE 'expired' END AS ended_how FROM " + table + " c WHERE " + by_name("c") +
           " AND ($2::bigint IS NULL OR c.expires_at > " + horizon + ") " +
           "AND NOT EXISTS (SELECT 1 FROM " + history_table + " x WHERE x.name = c.name " +
           "AND x.kind = '" + kind + "' AND x.token = c.token)";
  };
  history = "SELECT kind, name, token, owner, metadata, units, " + epoch_us("granted_at") + ", " +
            epoch_us("coalesce(ended_at, granted_at)") + ", ended_how FROM (" +
            "SELECT h.kind, h.name, h.token, h.owner, h.metadata, h.units, h.granted_at, " +
            "h.ended_at, h.ended_how FROM " + history_table + " h WHERE " + by_name("h") +
            " AND ($2::bigint IS NULL OR h.ended_at > " + horizon + ") UNION ALL " +
            current("lock", locks, "1::bigint", "c.nonce = ''") + " UNION ALL " +
            current("semaphore", holders, "c.units", "c.forced") +
            ") a ORDER BY granted_at DESC, token DESC LIMIT $3::bigint";
  history_enabled =
      "SELECT coalesce((SELECT value = 'on' FROM " + settings + " WHERE key = 'history'), false)";
  // The switch is a SECURITY DEFINER function: enabling the triggers takes the tables' owner.
  set_history = "SELECT " + schema_ident + ".sqlock_set_history($1::boolean)";
  // $1 older_than ms. In batches (each its own autocommit statement), skipping rows another
  // purge is deleting.
  purge_history = "WITH d AS (DELETE FROM " + history_table +
                  " h WHERE (h.name, h.kind, h.token) IN (SELECT x.name, x.kind, x.token FROM " +
                  history_table +
                  " x WHERE x.ended_at <= now() - $1::bigint * interval '1 millisecond' LIMIT " +
                  std::to_string(purge_batch) +
                  " FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM d";
}

}  // namespace sqlock::detail::pg
