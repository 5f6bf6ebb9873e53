// `sqlock show NAME`: one lock row.

#include "common.hpp"

namespace sqlock::cli {

namespace {

int run_show(const globals& g, const std::string& name) {
  auto c = open_client(g);
  auto r = c->inspect(name);
  if (!r) throw exit_error(exit_code::busy, "no such lock: '" + printable(name) + "'");
  if (g.format() == output_format::json) {
    print_json(to_json(*r));
    return exit_code::ok;
  }
  bool color = g.color_stdout();
  auto line = [](const char* key, const std::string& value) {
    std::printf("%-12s %s\n", key, value.c_str());
  };
  line("name:", printable(r->name));
  line("state:", style(color, r->held ? green : dim, r->held ? "held" : "free") + " (" +
                     describe_expiry(*r) + ")");
  line("owner:", printable(r->owner));
  line("token:", std::to_string(r->token));
  line("acquired_at:", format_time(r->acquired_at));
  line("expires_at:", format_time(r->expires_at));
  line("metadata:", printable(r->metadata));
  std::fflush(stdout);
  return exit_code::ok;
}

}  // namespace

void add_show(CLI::App& app, globals& g) {
  auto name = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("show", "Show one lock (exit 1 if there is no such lock)");
  sub->add_option("name", *name, "Lock name")->required();
  sub->footer(
      "Examples:\n"
      "  sqlock show nightly-report\n"
      "  sqlock show nightly-report -o json");
  sub->callback([&g, name] { g.action = [&g, name] { return run_show(g, *name); }; });
}

}  // namespace sqlock::cli
