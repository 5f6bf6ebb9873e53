// SPDX-License-Identifier: Apache-2.0
// `sqlock purge`: deletes lock rows and semaphores that have been free for a while.

#include <fmt/core.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

int run_purge(const globals& g, const std::string& free_for_text) {
  auto free_for = parse_duration(free_for_text, "--free-for");
  auto c = open_client(g);
  auto n = c->purge(free_for);
  if (g.format() == output_format::json) {
    print_json({{"purged", n}, {"free_for_seconds", seconds(free_for)}});
  } else if (!g.quiet) {
    print(stdout, "purged {} lock{} free for at least {}\n", n, n == 1 ? "" : "s",
          format_duration(free_for));
  }
  return exit_code::ok;
}

}  // namespace

void add_purge(CLI::App& app, globals& g) {
  auto free_for = std::make_shared<std::string>("24h");
  auto* sub =
      app.add_subcommand("purge", "Delete lock rows and semaphores free for at least a duration");
  sub->add_option("--free-for", *free_for, "Minimum time free, by the database clock (default 24h)")
      ->type_name("DURATION");
  sub->footer(
      "Fencing tokens stay monotonic: a purged name later gets a larger token.\n"
      "\n"
      "Examples:\n"
      "  sqlock purge\n"
      "  sqlock purge --free-for 7d");
  sub->callback([&g, free_for] { g.action = [&g, free_for] { return run_purge(g, *free_for); }; });
}

}  // namespace sqlock::cli
