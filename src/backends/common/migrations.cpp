#include <sqlock/migrations.hpp>

namespace sqlock {

int latest_migration(std::string_view backend) {
  const auto& m = embedded_migrations(backend);
  return m.empty() ? 0 : m.back().version;
}

}  // namespace sqlock
