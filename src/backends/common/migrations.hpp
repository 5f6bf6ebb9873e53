#pragma once
// The SQL migrations, embedded at build time from migrations/<backend>/*.sql.

#include <string_view>
#include <vector>

namespace sqlock::detail {

struct migration {
  int version;
  const char* name;       // e.g. "locks"
  const char* up_file;    // e.g. "001_locks.up.sql"
  const char* down_file;  // e.g. "001_locks.down.sql"
  const char* up;
  const char* down;
};

/// Ordered by version; empty for an unknown backend.
const std::vector<migration>& embedded_migrations(std::string_view backend);
/// The newest version of `backend`'s migrations.
int latest_migration(std::string_view backend);

}  // namespace sqlock::detail
