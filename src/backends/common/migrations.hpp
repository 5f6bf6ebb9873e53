// SPDX-License-Identifier: Apache-2.0
#pragma once
// The SQL migrations, embedded at build time from migrations/<backend>/*.sql (public:
// <sqlock/migrations.hpp>), and the stepping rules every backend's migrate applies the same way:
// one migration per transaction, the version re-read inside it.

#include <optional>
#include <string>
#include <string_view>

#include <sqlock/migrations.hpp>

namespace sqlock::detail {

using sqlock::embedded_migrations;
using sqlock::latest_migration;
using sqlock::migration;

/// One step of a migrate run: a migration's up or down script.
struct migration_step {
  const migration* m;
  bool up;
  const char* sql() const { return up ? m->up : m->down; }
  /// "migrate up to 2 (002_semaphores.up.sql)", "migrate down from 2 (002_...down.sql)".
  std::string describe() const;
  /// Whether the backend deletes the step's schema version row after running it (a down step
  /// above 1; version 1's down script drops the version table itself).
  bool deletes_version() const { return !up && m->version > 1; }
  /// Whether the down steps from this one to `target` drop the lock table (target 0) or the
  /// semaphore tables (target below 2, from 2 or above), and with them live leases: the backend
  /// counts those first.
  bool drops_locks(int target) const { return !up && target < 1; }
  bool drops_holders(int target) const { return !up && target < 2 && m->version >= 2; }
};

/// Throws invalid_argument (nothing changed) unless `target` is a version `backend` knows.
void check_migration_target(std::string_view backend, int target);

/// The next step from schema `version` towards `target`; none when they are equal. Throws
/// schema_mismatch when the database is newer than this sqlock knows.
std::optional<migration_step> next_migration_step(std::string_view backend, int version,
                                                  int target);

}  // namespace sqlock::detail
