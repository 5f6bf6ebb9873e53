// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL backend object: construction and option checks, the factory, the describing
// calls, watch() and log().

#include "backends/postgresql/backend.hpp"

#include "backends/common/backends.hpp"
#include "backends/common/migrations.hpp"

namespace sqlock::detail::pg {

postgresql_backend::postgresql_backend(const std::string& conn, backend_options options)
    : info_(parse_conninfo(conn)),
      listen_info_(options.listen_url.empty() ? info_ : parse_conninfo(options.listen_url)),
      options_(std::move(options)),
      channel_(channel_for(options_.schema)),
      handoff_channel_(handoff_channel_for(options_.schema) + "_" + random_hex(4)),
      listener_(*this) {
  if (options_.schema.empty() || options_.schema.find('\0') != std::string::npos ||
      options_.schema.size() > 63)
    throw error(errc::invalid_argument,
                "postgresql: backend_options::schema must be 1..63 bytes without NUL", kind_name);
  if (options_.pool_size == 0 || options_.pool_size > 64)
    throw error(errc::invalid_argument, "postgresql: backend_options::pool_size must be 1..64",
                kind_name);
}

postgresql_backend::~postgresql_backend() { listener_.stop(); }

std::string_view postgresql_backend::kind() const noexcept { return kind_name; }

std::string postgresql_backend::describe() const {
  return info_.redacted + " (schema " + quoted(options_.schema) + ")";
}

int postgresql_backend::latest_schema_version() const noexcept {
  return latest_migration(kind_name);
}

bool postgresql_backend::wakes_other_processes() const noexcept {
  return options_.notifications && listener_.works();
}

std::shared_ptr<release_watch> postgresql_backend::watch(std::string_view name) {
  auto w = registry_.watch(name);
  if (options_.notifications) {
    // Starts the listener without waiting for it: until its LISTEN and self-test are done,
    // wakes_other_processes() is false and waiters use the short backoff.
    listener_.ensure_started(milliseconds{0});
  } else if (!warned_off_.exchange(true)) {
    log(log_level::warn,
        "postgresql: notifications are off (backend_options::notifications): waiters poll "
        "with backoff instead of being woken by releases");
  }
  return w;
}

void postgresql_backend::log(log_level level, const std::string& message) const noexcept {
  if (!options_.log) return;
  try {
    options_.log(level, message);
  } catch (...) {
  }
}

}  // namespace sqlock::detail::pg

namespace sqlock::detail {

std::shared_ptr<backend> make_postgresql_backend(const std::string& conninfo,
                                                 const backend_options& options) {
  return std::make_shared<pg::postgresql_backend>(conninfo, options);
}

}  // namespace sqlock::detail
