// SPDX-License-Identifier: Apache-2.0
// The MariaDB backend's construction, factory, connection pool, watch registry, and what it
// says about itself.

#include "backends/mariadb/backend.hpp"

#include <map>

#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"
#include "backends/mariadb/errors.hpp"
#include "util/util.hpp"

namespace sqlock::detail {
namespace mariadb {

mariadb_backend::mariadb_backend(connection_params params, backend_options options)
    : params_(std::move(params)), options_(std::move(options)) {}

std::string_view mariadb_backend::kind() const noexcept { return kind_name; }
std::string mariadb_backend::describe() const { return params_.display; }
int mariadb_backend::latest_schema_version() const noexcept { return latest_migration(kind_name); }
bool mariadb_backend::wakes_other_processes() const noexcept { return false; }

std::shared_ptr<release_watch> mariadb_backend::watch(std::string_view name) {
  return registry()->watch(name);
}

// Releases by any backend of this process on the same database wake the waiters of all of
// them: registries are shared per server and database.
std::shared_ptr<watch_registry> mariadb_backend::registry() {
  std::lock_guard<std::mutex> lock(registry_mu_);
  if (!registry_) {
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<watch_registry>> registries;
    const std::string key =
        (params_.socket.empty() ? params_.host + ":" + std::to_string(params_.port)
                                : params_.socket) +
        "/" + params_.database;
    std::lock_guard<std::mutex> global(mu);
    auto& slot = registries[key];
    registry_ = slot.lock();
    if (!registry_) {
      registry_ = std::make_shared<watch_registry>();
      slot = registry_;
    }
  }
  return registry_;
}

mariadb_backend::pooled mariadb_backend::checkout(deadline until, const std::string& what) {
  std::unique_ptr<connection> c;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!c) c = std::make_unique<connection>(params_, until, what);
  c->set_deadline(until);
  return pooled(c.release(), pooled_deleter{this});
}

void mariadb_backend::give_back(connection* raw) noexcept {
  std::unique_ptr<connection> c(raw);
  if (c->broken()) return;
  c->rollback();  // a transaction left open by a throw
  if (c->broken() || c->in_transaction()) return;
  try {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (idle_.size() < std::max<std::size_t>(options_.pool_size, 4)) idle_.push_back(std::move(c));
  } catch (...) {
  }
}

}  // namespace mariadb

std::shared_ptr<backend> make_mariadb_backend(const std::string& url,
                                              const backend_options& options) {
  return std::make_shared<mariadb::mariadb_backend>(mariadb::parse_url(url), options);
}

}  // namespace sqlock::detail
