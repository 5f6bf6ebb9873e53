// SPDX-License-Identifier: Apache-2.0
#pragma once
// The environment the database tests need (set by scripts/with-postgres, scripts/with-mariadb).

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace sqlock_test {

/// The value of an environment variable the server tests need; throws when missing, so a test
/// without its server FAILS (never skips).
inline std::string required_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    const bool mariadb = std::string(name).find("MARIADB") != std::string::npos;
    throw std::runtime_error(std::string(name) + " is not set: run the " +
                             (mariadb ? "MariaDB tests under scripts/with-mariadb"
                                      : "PostgreSQL tests under scripts/with-postgres") +
                             " (they fail rather than skip without a server)");
  }
  return v;
}

}  // namespace sqlock_test
