// SPDX-License-Identifier: Apache-2.0
// `sqlock list`: the lock rows and the semaphores, by the database clock.

#include "common.hpp"

namespace sqlock::cli {

namespace {

void print_lock_table(const globals& g, const std::vector<lock_record>& locks) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<const char*>> styles;
  for (const auto& r : locks) {
    rows.push_back({printable(r.name), printable(r.owner), std::to_string(r.token),
                    format_time(r.acquired_at), describe_expiry(r), r.held ? "held" : "free",
                    std::to_string(r.queued), printable(r.metadata)});
    const char* state = r.held ? green : dim;
    styles.push_back(
        {bold, nullptr, nullptr, nullptr, nullptr, state, r.queued ? yellow : nullptr, dim});
  }
  print_table(stdout,
              {"NAME", "OWNER", "TOKEN", "ACQUIRED", "EXPIRES_IN", "STATE", "QUEUED", "METADATA"},
              rows, styles, g.color_stdout());
}

void print_semaphore_table(const globals& g, const std::vector<semaphore_record>& semaphores) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<const char*>> styles;
  for (const auto& r : semaphores) {
    const std::string state = semaphore_state(r);
    rows.push_back({printable(r.name), std::to_string(r.limit), std::to_string(r.used),
                    std::to_string(r.holders.size()), std::to_string(r.waiters.size()), state});
    const char* color = state == "full" ? yellow : state == "held" ? green : dim;
    styles.push_back(
        {bold, nullptr, nullptr, nullptr, r.waiters.empty() ? nullptr : yellow, color});
  }
  print_table(stdout, {"SEMAPHORE", "LIMIT", "USED", "HOLDERS", "WAITERS", "STATE"}, rows, styles,
              g.color_stdout());
}

}  // namespace

void print_listing(const globals& g, listing_kinds kinds, const std::vector<lock_record>& locks,
                   const std::vector<semaphore_record>& semaphores) {
  if (g.format() == output_format::json) {
    nlohmann::json doc = nlohmann::json::object();
    if (kinds != listing_kinds::semaphores) {
      auto arr = nlohmann::json::array();
      for (const auto& r : locks) arr.push_back(to_json(r));
      doc["locks"] = arr;
    }
    if (kinds != listing_kinds::locks) {
      auto arr = nlohmann::json::array();
      for (const auto& r : semaphores) arr.push_back(to_json(r));
      doc["semaphores"] = arr;
    }
    print_json(doc);
    return;
  }
  // The lock table is what `list` always printed; the semaphore table follows only when there
  // is a semaphore to show (or only semaphores were asked for), so a database without
  // semaphores lists exactly as before.
  const bool lock_table = kinds == listing_kinds::locks ||
                          (kinds == listing_kinds::both && (!locks.empty() || semaphores.empty()));
  const bool semaphore_table =
      kinds == listing_kinds::semaphores || (kinds == listing_kinds::both && !semaphores.empty());
  if (lock_table) print_lock_table(g, locks);
  if (lock_table && semaphore_table) std::printf("\n");
  if (semaphore_table) print_semaphore_table(g, semaphores);
  std::fflush(stdout);
}

namespace {

struct list_options {
  bool held = false;
  bool free = false;
  bool locks_only = false;
  bool semaphores_only = false;
  std::string prefix;
  std::size_t limit = 0;
};

int run_list(const globals& g, const list_options& o) {
  list_filter filter;
  filter.prefix = o.prefix;
  filter.limit = o.limit;
  if (o.held) filter.show = list_filter::which::held;
  if (o.free) filter.show = list_filter::which::free;
  const listing_kinds kinds = o.locks_only        ? listing_kinds::locks
                              : o.semaphores_only ? listing_kinds::semaphores
                                                  : listing_kinds::both;
  auto c = open_client(g);
  std::vector<lock_record> locks;
  std::vector<semaphore_record> semaphores;
  if (kinds != listing_kinds::semaphores) locks = c->list(filter);
  if (kinds != listing_kinds::locks) semaphores = c->list_semaphores(filter);
  print_listing(g, kinds, locks, semaphores);
  return exit_code::ok;
}

}  // namespace

void add_list(CLI::App& app, globals& g) {
  auto o = std::make_shared<list_options>();
  auto* sub = app.add_subcommand(
      "list",
      "List locks and semaphores: holders, fencing tokens and expiry by the database clock");
  auto* held =
      sub->add_flag("--held", o->held, "Only locks that are held, semaphores with a holder");
  auto* free =
      sub->add_flag("--free", o->free,
                    "Only locks that are free (released or expired), semaphores without a holder");
  held->excludes(free);
  auto* locks = sub->add_flag("--locks", o->locks_only, "Only locks");
  auto* semaphores = sub->add_flag("--semaphores", o->semaphores_only, "Only semaphores");
  locks->excludes(semaphores);
  sub->add_option("--prefix", o->prefix, "Only names starting with these bytes")->type_name("P");
  sub->add_option("--limit", o->limit, "At most N locks and N semaphores (default: all)")
      ->type_name("N");
  sub->footer(
      "Locks: NAME OWNER TOKEN ACQUIRED EXPIRES_IN STATE METADATA. ACQUIRED is UTC;\n"
      "EXPIRES_IN (\"expires in 12.3s\", \"free for 3m\") is computed by the database.\n"
      "Semaphores (a second table, when there are any): SEMAPHORE LIMIT USED HOLDERS WAITERS\n"
      "STATE (full, held or free); `sqlock show NAME --semaphore` shows the holders and waiters.\n"
      "\n"
      "Examples:\n"
      "  sqlock list\n"
      "  sqlock list --held --prefix nightly-\n"
      "  sqlock list --semaphores\n"
      "  sqlock list -o json | jq '.locks[] | select(.held) | .name'\n"
      "  sqlock list -o json | jq '.semaphores[] | {name, used, limit}'");
  sub->callback([&g, o] { g.action = [&g, o] { return run_list(g, *o); }; });
}

}  // namespace sqlock::cli
