// SPDX-License-Identifier: Apache-2.0
#pragma once
// Factories of the concrete backends; only url.cpp calls them.

#include <memory>
#include <string>

#include <sqlock/backend.hpp>

namespace sqlock::detail {

/// `location` is a filesystem path, or a `file:` URI when `uri` is true.
std::shared_ptr<backend> make_sqlite_backend(const std::string& location, bool uri,
                                             const backend_options& options);
/// `conninfo` is a libpq URI or key=value string, as the user gave it.
std::shared_ptr<backend> make_postgresql_backend(const std::string& conninfo,
                                                 const backend_options& options);
/// `url` is a mariadb:// or mysql:// URL as the user gave it.
std::shared_ptr<backend> make_mariadb_backend(const std::string& url,
                                              const backend_options& options);
/// The process-wide memory database `name` (src/testing/, <sqlock/testing.hpp>).
std::shared_ptr<backend> make_memory_backend(const std::string& name,
                                             const backend_options& options);

}  // namespace sqlock::detail
