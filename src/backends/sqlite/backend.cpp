// SPDX-License-Identifier: Apache-2.0
// The SQLite backend's construction (the SQLite version check), its factory, and what it says
// about itself.

#include "backends/sqlite/backend.hpp"

#include <sqlite3.h>

#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"
#include "util/util.hpp"

namespace sqlock::detail {
namespace sqlite {

sqlite_backend::sqlite_backend(std::string location, bool uri, backend_options options)
    : location_(std::move(location)), uri_(uri), options_(std::move(options)) {
  if (sqlite3_libversion_number() < 3035000)
    throw error(
        errc::invalid_argument,
        std::string("sqlock needs SQLite 3.35 or newer; this process has ") + sqlite3_libversion(),
        kind_name);
}

std::string_view sqlite_backend::kind() const noexcept { return kind_name; }
std::string sqlite_backend::describe() const { return quoted(location_); }
int sqlite_backend::latest_schema_version() const noexcept { return latest_migration(kind_name); }
bool sqlite_backend::wakes_other_processes() const noexcept { return false; }

std::shared_ptr<release_watch> sqlite_backend::watch(std::string_view name) {
  return registry()->watch(name);
}

}  // namespace sqlite

std::shared_ptr<backend> make_sqlite_backend(const std::string& location, bool uri,
                                             const backend_options& options) {
  return std::make_shared<sqlite::sqlite_backend>(location, uri, options);
}

}  // namespace sqlock::detail
