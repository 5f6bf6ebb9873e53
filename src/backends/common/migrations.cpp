// SPDX-License-Identifier: Apache-2.0
#include "backends/common/migrations.hpp"

#include <sqlock/error.hpp>

namespace sqlock {

int latest_migration(std::string_view backend) {
  const auto& m = embedded_migrations(backend);
  return m.empty() ? 0 : m.back().version;
}

namespace detail {

std::string migration_step::describe() const {
  return up ? "migrate up to " + std::to_string(m->version) + " (" + m->up_file + ")"
            : "migrate down from " + std::to_string(m->version) + " (" + m->down_file + ")";
}

void check_migration_target(std::string_view backend, int target) {
  if (target < 0 || target > latest_migration(backend))
    throw error(errc::invalid_argument, "migrate: no schema version " + std::to_string(target),
                std::string(backend));
}

std::optional<migration_step> next_migration_step(std::string_view backend, int version,
                                                  int target) {
  const int latest = latest_migration(backend);
  if (version > latest)
    throw error(errc::schema_mismatch,
                "migrate: the database has schema version " + std::to_string(version) +
                    ", newer than this sqlock knows (" + std::to_string(latest) + ")",
                std::string(backend));
  if (version == target) return std::nullopt;
  // Versions are 1..N in order: up from v runs migration v+1, down from v runs migration v.
  const auto& all = embedded_migrations(backend);
  if (version < target) return migration_step{&all.at(static_cast<std::size_t>(version)), true};
  return migration_step{&all.at(static_cast<std::size_t>(version - 1)), false};
}

}  // namespace detail
}  // namespace sqlock
