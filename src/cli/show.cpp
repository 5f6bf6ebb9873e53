// SPDX-License-Identifier: Apache-2.0
// `sqlock show NAME`: the lock NAME and/or the semaphore NAME (separate namespaces), with a
// semaphore's holders and queued waiters.

#include <fmt/core.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

struct show_options {
  std::string name;
  bool lock_only = false;
  bool semaphore_only = false;
};

// "key:        value"; an empty value leaves no trailing blanks.
void line(const char* key, const std::string& value) {
  if (value.empty())
    print(stdout, "{}\n", key);
  else
    print(stdout, "{:<12} {}\n", key, value);
}

void print_lock(const globals& g, const lock_record& r) {
  const bool color = g.color_stdout();
  line("name:", printable(r.name));
  line("kind:", "lock");
  line("state:", style(color, r.held ? green : dim, r.held ? "held" : "free") + " (" +
                     describe_expiry(r) + ")");
  line("owner:", printable(r.owner));
  line("token:", std::to_string(r.token));
  line("acquired_at:", format_time(r.acquired_at));
  line("expires_at:", format_time(r.expires_at));
  line("metadata:", printable(r.metadata));
  line("waiters:", std::to_string(r.waiters.size()));
  std::fflush(stdout);
  if (!r.waiters.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : r.waiters)
      rows.push_back({"", std::to_string(w.ticket), printable(w.owner), w.fair ? "fair" : "",
                      format_time(w.since), "ticket expires in " + format_duration(w.expires_in)});
    print_table(stdout, {"", "TICKET", "OWNER", "FAIR", "SINCE", "EXPIRES_IN"}, rows, {},
                g.color_stdout());
  }
}

void print_semaphore(const globals& g, const semaphore_record& r) {
  const bool color = g.color_stdout();
  const std::string state = semaphore_state(r);
  line("name:", printable(r.name));
  line("kind:", "semaphore");
  line("state:", style(color,
                       state == "full"   ? yellow
                       : state == "held" ? green
                                         : dim,
                       state) +
                     " (" + describe_usage(r) + ")");
  line("limit:", std::to_string(r.limit));
  line("used:", std::to_string(r.used));
  line("holders:", std::to_string(r.holders.size()));
  std::fflush(stdout);
  // The first, empty column indents the tables under their key.
  if (!r.holders.empty()) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::vector<const char*>> styles;
    for (const auto& h : r.holders) {
      rows.push_back({"", printable(h.owner), std::to_string(h.token), std::to_string(h.count),
                      format_time(h.acquired_at), "expires in " + format_duration(h.expires_in),
                      printable(h.metadata)});
      styles.push_back({nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, dim});
    }
    print_table(stdout, {"", "OWNER", "TOKEN", "COUNT", "ACQUIRED", "EXPIRES_IN", "METADATA"}, rows,
                styles, color);
  }
  line("waiters:", std::to_string(r.waiters.size()));
  std::fflush(stdout);
  if (!r.waiters.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : r.waiters)
      rows.push_back({"", std::to_string(w.ticket), printable(w.owner), std::to_string(w.count),
                      "ticket expires in " + format_duration(w.expires_in)});
    print_table(stdout, {"", "TICKET", "OWNER", "COUNT", "EXPIRES_IN"}, rows, {}, color);
  }
}

int run_show(const globals& g, const show_options& o) {
  auto c = open_client(g);
  std::optional<lock_record> lock;
  std::optional<semaphore_record> semaphore;
  if (!o.semaphore_only) lock = c->inspect(o.name);
  if (!o.lock_only) semaphore = c->inspect_semaphore(o.name);
  if (!lock && !semaphore) {
    const char* what = o.lock_only        ? "no such lock"
                       : o.semaphore_only ? "no such semaphore"
                                          : "no such lock or semaphore";
    throw exit_error(exit_code::busy, std::string(what) + ": '" + printable(o.name) + "'");
  }
  if (g.format() == output_format::json) {
    // One document. The lock's, as before semaphores existed, whenever there is a lock (with
    // the semaphore of the same name under "semaphore" when there is one too); otherwise the
    // semaphore's. --lock and --semaphore give one shape always.
    if (lock) {
      auto doc = to_json(*lock);
      // The queue (show only: `list` does not read it).
      auto waiters = nlohmann::json::array();
      for (const auto& w : lock->waiters)
        waiters.push_back({{"ticket", w.ticket},
                           {"owner", w.owner},
                           {"fair", w.fair},
                           {"since", format_time(w.since)},
                           {"expires_in_seconds", seconds(w.expires_in)}});
      doc["waiters"] = waiters;
      if (semaphore) doc["semaphore"] = to_json(*semaphore);
      print_json(doc);
    } else {
      print_json(to_json(*semaphore));
    }
    return exit_code::ok;
  }
  if (lock) print_lock(g, *lock);
  if (lock && semaphore) print(stdout, "\n");
  if (semaphore) print_semaphore(g, *semaphore);
  std::fflush(stdout);
  return exit_code::ok;
}

}  // namespace

void add_show(CLI::App& app, globals& g) {
  auto o = std::make_shared<show_options>();
  auto* sub = app.add_subcommand(
      "show", "Show the lock NAME and/or the semaphore NAME (exit 1 if there is neither)");
  sub->add_option("name", o->name, "Lock or semaphore name")->required();
  auto* lock = sub->add_flag("--lock", o->lock_only, "Only the lock NAME");
  auto* semaphore = sub->add_flag("--semaphore", o->semaphore_only, "Only the semaphore NAME");
  lock->excludes(semaphore);
  sub->footer(
      "Locks and semaphores are separate namespaces: NAME may be both. A semaphore is shown\n"
      "with each live holder (owner, fencing token, units, expiry, metadata) and each queued\n"
      "fair waiter (ticket, owner, units, ticket expiry). With -o json: the lock's document\n"
      "(plus \"semaphore\" when both exist), else the semaphore's.\n"
      "\n"
      "Examples:\n"
      "  sqlock show nightly-report\n"
      "  sqlock show nightly-report -o json\n"
      "  sqlock show worker-pool --semaphore");
  sub->callback([&g, o] { g.action = [&g, o] { return run_show(g, *o); }; });
}

}  // namespace sqlock::cli
