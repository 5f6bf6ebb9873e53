// SPDX-License-Identifier: Apache-2.0
// `sqlock history`: who held what, when (schema 10), and its switch.

#include "common.hpp"

namespace sqlock::cli {

namespace {

struct history_options {
  std::string name;
  std::string since;
  std::size_t limit = 0;
  bool enable = false;
  bool disable = false;
};

nlohmann::json to_json(const history_record& h) {
  const bool live = h.ended_how == lease_end::live;
  return nlohmann::json{
      {"kind", h.kind == lease_kind::lock ? "lock" : "semaphore"},
      {"name", h.name},
      {"token", h.token},
      {"owner", h.owner},
      {"count", h.count},
      {"granted_at", format_time(h.granted_at)},
      {"ended_at", live ? nlohmann::json(nullptr) : nlohmann::json(format_time(h.ended_at))},
      {"ended_how", live ? nlohmann::json(nullptr) : nlohmann::json(to_string(h.ended_how))},
      {"metadata", h.metadata}};
}

int run_switch(const globals& g, bool on) {
  auto c = open_client(g);
  const bool was = c->enable_history(on);
  if (g.format() == output_format::json) {
    print_json({{"history_enabled", on}, {"was_enabled", was}});
  } else if (!g.quiet) {
    print(stdout, "history {}{}\n", on ? "enabled" : "disabled",
          was == on ? " (it already was)" : "");
  }
  return exit_code::ok;
}

int run_history(const globals& g, const history_options& o) {
  if (o.enable && o.disable) usage_error("--enable and --disable exclude each other");
  if ((o.enable || o.disable) && (!o.name.empty() || !o.since.empty() || o.limit != 0))
    usage_error("--enable and --disable take no NAME, --since or --limit");
  history_filter filter;
  filter.name = o.name;
  filter.limit = o.limit;
  if (!o.since.empty()) {
    filter.since = parse_duration(o.since, "--since");
    if (filter.since <= std::chrono::milliseconds::zero()) usage_error("--since must be positive");
  }
  if (o.enable || o.disable) return run_switch(g, o.enable);
  auto c = open_client(g);
  const bool enabled = c->history_enabled();
  auto leases = c->history(filter);
  if (g.format() == output_format::json) {
    auto arr = nlohmann::json::array();
    for (const auto& h : leases) arr.push_back(to_json(h));
    print_json({{"history_enabled", enabled}, {"leases", arr}});
    return exit_code::ok;
  }
  if (!enabled)
    info(g,
         "the history is off: only the current rows' leases are shown (`sqlock history "
         "--enable` records every lease that ends from now on)");
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<const char*>> styles;
  for (const auto& h : leases) {
    const bool live = h.ended_how == lease_end::live;
    const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(
        live ? std::chrono::system_clock::now() - h.granted_at : h.ended_at - h.granted_at);
    std::string kind = h.kind == lease_kind::lock ? "lock" : "semaphore";
    if (h.kind == lease_kind::semaphore) kind += " x" + std::to_string(h.count);
    rows.push_back({printable(h.name), kind, std::to_string(h.token), printable(h.owner),
                    format_time(h.granted_at), live ? "-" : format_time(h.ended_at),
                    to_string(h.ended_how), format_duration(held), printable(h.metadata)});
    const char* how = live                                   ? green
                      : h.ended_how == lease_end::released   ? nullptr
                      : h.ended_how == lease_end::expired    ? dim
                      : h.ended_how == lease_end::taken_over ? yellow
                                                             : red;
    styles.push_back({bold, nullptr, nullptr, nullptr, nullptr, nullptr, how, nullptr, dim});
  }
  print_table(stdout,
              {"NAME", "KIND", "TOKEN", "OWNER", "GRANTED", "ENDED", "HOW", "HELD_FOR", "METADATA"},
              rows, styles, g.color_stdout());
  std::fflush(stdout);
  return exit_code::ok;
}

}  // namespace

void add_history(CLI::App& app, globals& g) {
  auto o = std::make_shared<history_options>();
  auto* sub = app.add_subcommand(
      "history", "Who held what, when: the leases of locks and semaphores, oldest grant first");
  sub->add_option("name", o->name, "Only this lock or semaphore name");
  sub->add_option("--since", o->since,
                  "Only leases live at some moment of the last DURATION (database clock)")
      ->type_name("DURATION");
  sub->add_option("--limit", o->limit, "Only the N most recently granted leases")->type_name("N");
  auto* enable = sub->add_flag("--enable", o->enable,
                               "Record every lease that ends, from now on (for every client)");
  auto* disable = sub->add_flag("--disable", o->disable, "Stop recording (the history stays)");
  enable->excludes(disable);
  sub->footer(
      "The history is off by default; it is one switch per database (per PostgreSQL schema).\n"
      "While on, the statement that ends a lease records it (a trigger), so the history never\n"
      "disagrees with the rows. HOW: released, expired (lapsed, nobody took it yet), taken over\n"
      "(lapsed, then granted to another: ENDED is its expiry), force-released, revoked (ended\n"
      "while a release request was pending), lost (a grant its client never learnt of, cleaned\n"
      "up), or live. Times are UTC, by the database clock. `sqlock purge --history-older-than D`\n"
      "trims it.\n"
      "\n"
      "Examples:\n"
      "  sqlock history --enable\n"
      "  sqlock history nightly-report --since 2d\n"
      "  sqlock history -o json | jq '.leases[] | select(.ended_how == \"taken over\")'");
  sub->callback([&g, o] { g.action = [&g, o] { return run_history(g, *o); }; });
}

}  // namespace sqlock::cli
