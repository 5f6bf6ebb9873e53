// SPDX-License-Identifier: Apache-2.0
// `sqlock purge`: deletes lock rows and semaphores that have been free for a while.

#include <fmt/core.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

int run_purge(const globals& g, const std::string& free_for_text, const std::string& history_text) {
  auto free_for = parse_duration(free_for_text, "--free-for");
  std::optional<std::chrono::milliseconds> history_age;
  if (!history_text.empty()) history_age = parse_duration(history_text, "--history-older-than");
  auto c = open_client(g);
  auto n = c->purge(free_for);
  // After the rows: purged lock rows are recorded (expired) while the history is on, and the
  // trim then applies to them too.
  std::size_t trimmed = 0;
  if (history_age) trimmed = c->purge_history(*history_age);
  if (g.format() == output_format::json) {
    nlohmann::json doc{{"purged", n}, {"free_for_seconds", seconds(free_for)}};
    if (history_age) {
      doc["history_purged"] = trimmed;
      doc["history_older_than_seconds"] = seconds(*history_age);
    }
    print_json(doc);
  } else if (!g.quiet) {
    print(stdout, "purged {} lock{} free for at least {}\n", n, n == 1 ? "" : "s",
          format_duration(free_for));
    if (history_age)
      print(stdout, "purged {} histor{} of leases that ended at least {} ago\n", trimmed,
            trimmed == 1 ? "y record" : "y records", format_duration(*history_age));
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
  auto history = std::make_shared<std::string>();
  sub->add_option("--history-older-than", *history,
                  "Also delete history records of leases that ended at least DURATION ago")
      ->type_name("DURATION");
  sub->footer(
      "Fencing tokens stay monotonic: a purged name later gets a larger token.\n"
      "\n"
      "Examples:\n"
      "  sqlock purge\n"
      "  sqlock purge --free-for 7d\n"
      "  sqlock purge --history-older-than 90d");
  sub->callback([&g, free_for, history] {
    g.action = [&g, free_for, history] { return run_purge(g, *free_for, *history); };
  });
}

}  // namespace sqlock::cli
