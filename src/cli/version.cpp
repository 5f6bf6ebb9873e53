// SPDX-License-Identifier: Apache-2.0
// `sqlock version`.

#include <fmt/core.h>

#include <sqlock/config.hpp>

#include "common.hpp"

namespace sqlock::cli {

namespace {

int run_version(const globals& g) {
  auto backends = nlohmann::json::array();
  if (SQLOCK_HAVE_POSTGRESQL) backends.push_back("postgresql");
  if (SQLOCK_HAVE_SQLITE) backends.push_back("sqlite");
  if (SQLOCK_HAVE_MARIADB) backends.push_back("mariadb");
  if (g.format() == output_format::json) {
    print_json({{"version", version_string}, {"backends", backends}});
    return exit_code::ok;
  }
  std::string list;
  for (const auto& b : backends) list += (list.empty() ? "" : ", ") + b.get<std::string>();
  print(stdout, "sqlock {} (backends: {})\n", version_string, list);
  return exit_code::ok;
}

}  // namespace

void add_version(CLI::App& app, globals& g) {
  auto* sub = app.add_subcommand("version", "Print the version and the backends built in");
  sub->footer("Example:\n  sqlock version -o json");
  sub->callback([&g] { g.action = [&g] { return run_version(g); }; });
}

}  // namespace sqlock::cli
