// SPDX-License-Identifier: Apache-2.0
// PostgreSQL errors as sqlock errors: the SQLSTATE classes mapped to errc, the SQLSTATEs the
// backend retries, and the message of a failed statement.

#include "backends/postgresql/errors.hpp"

#include "backends/postgresql/connection.hpp"

namespace sqlock::detail::pg {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

errc classify(std::string_view s) noexcept {
  if (s.size() != 5) return errc::internal;
  auto cls = s.substr(0, 2);
  if (cls == "08" || cls == "53" || cls == "57" || cls == "58" || cls == "40" || cls == "55" ||
      cls == "HV" || s == "25006")
    return errc::unavailable;  // connection, resources, shutdown/cancel, lock timeout, read-only
  if (s == "42P01" || s == "42883" || s == "42703" || s == "3F000" || s == "42704")
    return errc::schema_mismatch;  // undefined table/function/column/schema/object
  // sequence_generator_limit_exceeded: the token sequence is at its end. Not the caller's
  // input (usage) and retrying cannot help (unavailable): the database needs an operator.
  if (s == "2200H") return errc::schema_mismatch;
  if (s == "42501" || cls == "28") return errc::invalid_argument;  // privileges: fix the setup
  if (cls == "22" || cls == "23") return errc::invalid_argument;   // data rejected by a CHECK
  return errc::internal;
}

bool retryable(std::string_view s) noexcept { return s == "40001" || s == "40P01"; }

void throw_server_error(const std::string& what, const PGresult* r) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  std::string sqlstate = state ? state : "";
  std::string msg = what + " on postgresql: " +
                    (primary ? std::string(primary) : trimmed(PQresultErrorMessage(r)));
  errc code = classify(sqlstate);
  if (code == errc::schema_mismatch && sqlstate != "2200H") msg += " (run `sqlock migrate up`)";
  if (sqlstate == "2200H")
    msg +=
        " (the fencing token sequence sqlock_token_seq is exhausted: no lock or semaphore can "
        "be granted until an operator restarts it below its maximum, above every token "
        "already issued if any remain; it only gets there if it was set by hand)";
  if (sqlstate == "42501")
    msg += " (see docs/postgresql.md for the grants sqlock's runtime role needs)";
  throw error(code, msg, kind_name, sqlstate);
}

}  // namespace sqlock::detail::pg
