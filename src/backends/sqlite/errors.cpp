// SPDX-License-Identifier: Apache-2.0
// SQLite result codes -> sqlock::errc (fail()), and the result code names the errors carry.

#include "backends/sqlite/errors.hpp"

#include <cerrno>
#include <cstring>

#include <sqlock/error.hpp>

namespace sqlock::detail::sqlite {
namespace {

std::string code_name(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_CONSTRAINT:
      return "SQLITE_CONSTRAINT";
    case SQLITE_NOTADB:
      return "SQLITE_NOTADB";
    case SQLITE_PERM:
      return "SQLITE_PERM";
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    default:
      return "SQLITE_" + std::to_string(rc & 0xff);
  }
}

}  // namespace

// Chooses the errc by what the caller should do next. `db`, when known, tells a transient
// open failure (out of file descriptors) from a configuration one (a directory, no such
// directory, no permission).
[[noreturn]] void fail(int rc, const std::string& what, const char* detail_msg, sqlite3* db) {
  std::string msg = what + " on sqlite: " + (detail_msg ? detail_msg : sqlite3_errstr(rc));
  errc code = errc::unavailable;
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      code = errc::invalid_argument;
      break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISUSE:
    case SQLITE_RANGE:
      code = errc::internal;
      break;
    case SQLITE_CANTOPEN: {
      int e = db ? sqlite3_system_errno(db) : 0;
      if (e == EMFILE || e == ENFILE || e == ENOMEM || e == EAGAIN || e == EINTR) break;
      code = errc::invalid_argument;
      msg +=
          " (is the path a regular file in an existing directory that this process may "
          "write to?)";
      break;
    }
    case SQLITE_READONLY:
      // A recovery another connection must finish is transient; every other read-only case
      // (mode=ro, a read-only file, directory or mount) needs the setup fixed.
      if (rc == SQLITE_READONLY_RECOVERY) break;
      code = errc::invalid_argument;
      msg +=
          " (sqlock writes to the database file, its -wal and -shm files and their "
          "directory: open it read-write)";
      break;
    case SQLITE_PERM:
    case SQLITE_AUTH:
      code = errc::invalid_argument;
      break;
    case SQLITE_ERROR:
      if (detail_msg && std::strstr(detail_msg, "no such table")) {
        code = errc::schema_mismatch;
        msg += " (run `sqlock migrate up`)";
      } else if (detail_msg && std::strstr(detail_msg, "no such column")) {
        code = errc::schema_mismatch;
      }
      break;
    default:
      break;
  }
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    msg += " (the database stayed locked until the call's deadline)";
  throw error(code, msg, kind_name, code_name(rc));
}

}  // namespace sqlock::detail::sqlite
