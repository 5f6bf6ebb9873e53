// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// The SQL migrations this sqlock carries, embedded at build time from
/// migrations/<backend>/*.sql: what `sqlock migrate print` shows, for tools that apply schema
/// changes themselves (Flyway, Liquibase, a deploy script). `backend::migrate` applies them.

#include <string_view>
#include <vector>

#include <sqlock/export.hpp>

namespace sqlock {

struct migration {
  int version;
  const char* name;       // e.g. "locks"
  const char* up_file;    // e.g. "001_locks.up.sql"
  const char* down_file;  // e.g. "001_locks.down.sql"
  const char* up;         // the file's text
  const char* down;
};

/// Ordered by version (1..N); empty for an unknown backend ("postgresql", "sqlite").
SQLOCK_EXPORT const std::vector<migration>& embedded_migrations(std::string_view backend);
/// The newest version of `backend`'s migrations; 0 for an unknown backend.
SQLOCK_EXPORT int latest_migration(std::string_view backend);

}  // namespace sqlock
