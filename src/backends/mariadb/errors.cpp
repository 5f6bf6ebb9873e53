// SPDX-License-Identifier: Apache-2.0
// MariaDB/MySQL error numbers -> sqlock::errc, chosen by what the caller should do next.

#include "backends/mariadb/errors.hpp"

namespace sqlock::detail::mariadb {

bool row_is_locked(unsigned errnum) noexcept {
  return errnum == 1205 || errnum == 3572 || errnum == 1213;
}

bool connection_lost(unsigned errnum) noexcept {
  return (errnum >= 2000 && errnum < 3000) || errnum == 1053 || errnum == 1927 || errnum == 4031;
}

errc code_for(unsigned errnum, errc after_send) noexcept {
  // Misuse and configuration first; any other loss of the connection: after_send.
  if (connection_lost(errnum) && errnum != 2005 && errnum != 2031 && errnum != 2014)
    return after_send;
  switch (errnum) {
    case 1146:  // ER_NO_SUCH_TABLE
    case 1054:  // ER_BAD_FIELD_ERROR
    case 1305:  // ER_SP_DOES_NOT_EXIST
      return errc::schema_mismatch;
    case 1044:  // ER_DBACCESS_DENIED_ERROR
    case 1045:  // ER_ACCESS_DENIED_ERROR
    case 1049:  // ER_BAD_DB_ERROR
    case 1142:  // ER_TABLEACCESS_DENIED_ERROR
    case 1143:  // ER_COLUMNACCESS_DENIED_ERROR
    case 1370:  // ER_PROCACCESS_DENIED_ERROR
    case 1227:  // ER_SPECIFIC_ACCESS_DENIED_ERROR
    case 2005:  // CR_UNKNOWN_HOST
    case 1251:  // ER_NOT_SUPPORTED_AUTH_MODE
    case 1698:  // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
      return errc::invalid_argument;
    case 1062:  // ER_DUP_ENTRY
    case 1064:  // ER_PARSE_ERROR
    case 1210:  // ER_WRONG_ARGUMENTS
    case 2031:  // CR_PARAMS_NOT_BOUND
    case 2014:  // CR_COMMANDS_OUT_OF_SYNC
      return errc::internal;
    default:
      return errc::unavailable;
  }
}

std::string advice_for(unsigned errnum) {
  switch (errnum) {
    case 1146:
    case 1054:
    case 1305:
      return " (run `sqlock migrate up`)";
    case 1049:
      return " (create the database first: sqlock's migrations create tables, not databases)";
    case 1205:
    case 3572:
      return " (a row is locked by another open transaction)";
    case 1461:
      return " (the server's max_prepared_stmt_count is reached: every sqlock connection keeps "
             "about 60 prepared statements; raise it, or lower backend_options::pool_size)";
    default:
      return {};
  }
}

}  // namespace sqlock::detail::mariadb
