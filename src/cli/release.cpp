// SPDX-License-Identifier: Apache-2.0
// `sqlock release NAME --force`: ends whoever's lease it is (an administrator breaking a stuck
// lock); with --semaphore, the holders of the semaphore NAME (or the one with --token T). The
// holders learn at their next renewal, at most ttl/3 later.
// `sqlock release NAME --request [--grace D]`: the polite form (schema 9): asks the holder to
// finish and let go within D (default 30s); its lease ends there at the latest.

#include <unistd.h>

#include <fmt/core.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

using std::chrono::milliseconds;

struct release_options {
  std::string name;
  bool force = false;
  bool yes = false;
  bool semaphore = false;
  std::int64_t token = 0;  // 0: every holder
  bool request = false;
  std::string grace;  // --grace, with --request
};

// `--request`: asks the holder(s) to let go within --grace. Changes nothing when not held.
int request_release(const globals& g, client& c, const release_options& o) {
  const milliseconds grace =
      o.grace.empty() ? milliseconds{30000} : parse_duration(o.grace, "--grace");
  const std::string quoted = (o.semaphore ? "semaphore '" : "'") + printable(o.name) + "'";
  std::size_t asked;
  std::string holder;
  if (o.semaphore) {
    asked = c.request_release_semaphore(o.name, grace, o.token);
  } else {
    auto r = c.inspect(o.name);
    asked = c.request_release(o.name, grace) ? 1 : 0;
    if (asked && r) holder = fmt::format(" ({}, token {})", printable(r->owner), r->token);
  }
  if (g.format() == output_format::json) {
    print_json({{"kind", o.semaphore ? "semaphore" : "lock"},
                {"name", o.name},
                {"requested", asked},
                {"grace_ms", grace.count()}});
  } else if (asked > 0) {
    if (!g.quiet)
      print(stdout,
            "asked the holder{} of {}{} to release within {} (it hears at its next renewal, at "
            "most ttl/3 later; its lease ends by then at the latest)\n",
            asked > 1 ? fmt::format("s ({})", asked) : std::string(), quoted, holder,
            format_duration(grace));
  } else {
    info(g, quoted + " is not held; nothing to ask");
  }
  return exit_code::ok;
}

// Asks before ending someone's lease; throws when declined or when no terminal can ask.
void confirm_or_throw(const release_options& o, const std::string& question,
                      const std::string& what) {
  if (o.yes) return;
  auto answer = confirm(question + " Its holder keeps running until its next renewal.");
  if (!answer)
    usage_error("not a terminal: pass --yes to force-release " + what +
                " without asking (its holder keeps running until its next renewal, at most "
                "ttl/3 later)");
  if (!*answer) throw exit_error(exit_code::busy, "not released: " + what + " is unchanged");
}

int release_lock(const globals& g, client& c, const release_options& o) {
  const std::string quoted = "'" + printable(o.name) + "'";
  // inspect first: "no such lock" (exit 1) differs from "not held" (nothing to do, exit 0).
  auto r = c.inspect(o.name);
  if (!r) {
    std::string hint;
    try {
      if (c.inspect_semaphore(o.name))
        hint = " (there is a semaphore " + quoted + ": add --semaphore)";
    } catch (const error&) {
    }
    throw exit_error(exit_code::busy, "no such lock: " + quoted + hint);
  }
  bool released = false;
  if (r->held) {
    confirm_or_throw(o,
                     fmt::format("Force-release {}, held by {} (token {}, {})?", quoted,
                                 printable(r->owner), r->token, describe_expiry(*r)),
                     quoted);
    released = c.force_release(o.name);
  }
  if (g.format() == output_format::json) {
    print_json({{"kind", "lock"},
                {"name", o.name},
                {"released", released},
                {"owner", r->owner},
                {"token", r->token}});
  } else if (released) {
    if (!g.quiet)
      print(stdout,
            "released {} (was held by {}, token {}; it learns at its next renewal, at most "
            "ttl/3 later)\n",
            quoted, printable(r->owner), r->token);
  } else {
    info(g, quoted + " is not held; nothing to release");
  }
  return exit_code::ok;
}

int release_semaphore(const globals& g, client& c, const release_options& o) {
  const std::string quoted = "semaphore '" + printable(o.name) + "'";
  auto r = c.inspect_semaphore(o.name);
  if (!r) throw exit_error(exit_code::busy, "no such semaphore: '" + printable(o.name) + "'");
  std::vector<semaphore_holder> targets;
  for (const auto& h : r->holders)
    if (o.token == 0 || h.token == o.token) targets.push_back(h);
  std::size_t released = 0;
  if (!targets.empty()) {
    std::string who;
    for (const auto& h : targets) {
      if (!who.empty()) who += "; ";
      who += fmt::format("{} (token {}, {} {}, expires in {})", printable(h.owner), h.token,
                         h.count, h.count == 1 ? "unit" : "units", format_duration(h.expires_in));
    }
    const std::string n = o.token != 0 ? std::string("the holder")
                                       : fmt::format("{} {}", targets.size(),
                                                     targets.size() == 1 ? "holder" : "holders");
    confirm_or_throw(o, fmt::format("Force-release {} of {}: {}?", n, quoted, who), quoted);
    released = c.force_release_semaphore(o.name, o.token);
  }
  if (g.format() == output_format::json) {
    auto holders = nlohmann::json::array();
    for (const auto& h : targets)
      holders.push_back({{"owner", h.owner}, {"token", h.token}, {"count", h.count}});
    print_json({{"kind", "semaphore"},
                {"name", o.name},
                {"released", released > 0},
                {"released_count", released},
                {"holders", holders}});
  } else if (released > 0) {
    if (!g.quiet) {
      print(stdout, "released {} {} of {}\n", released, released == 1 ? "holder" : "holders",
            quoted);
      for (const auto& h : targets)
        print(stdout, "  was held by {}, token {}, {} {}\n", printable(h.owner), h.token, h.count,
              h.count == 1 ? "unit" : "units");
    }
  } else if (o.token != 0) {
    info(g,
         fmt::format("{} has no live holder with token {}; nothing to release", quoted, o.token));
  } else {
    info(g, quoted + " has no live holder; nothing to release");
  }
  return exit_code::ok;
}

int run_release(const globals& g, const release_options& o) {
  if (o.request && o.force) usage_error("--request and --force: choose one");
  if (!o.grace.empty() && !o.request) usage_error("--grace applies to --request");
  if (o.request) {
    if (o.token != 0 && !o.semaphore) usage_error("--token applies to semaphores: add --semaphore");
    if (o.token < 0) usage_error("--token: must be a positive fencing token");
    auto c = open_client(g);
    return request_release(g, *c, o);
  }
  if (!o.force)
    usage_error(
        "release ends someone else's lease: pass --force to confirm that is intended, or "
        "--request to ask its holder to let go");
  if (o.token != 0 && !o.semaphore) usage_error("--token applies to semaphores: add --semaphore");
  if (o.token < 0) usage_error("--token: must be a positive fencing token");
  auto c = open_client(g);
  return o.semaphore ? release_semaphore(g, *c, o) : release_lock(g, *c, o);
}

}  // namespace

void add_release(CLI::App& app, globals& g) {
  auto o = std::make_shared<release_options>();
  auto* sub = app.add_subcommand(
      "release",
      "Force-release a lock or a semaphore's holders (--force), or ask them to let go (--request)");
  sub->add_option("name", o->name, "Lock (or, with --semaphore, semaphore) name")->required();
  sub->add_flag("--force", o->force, "Required: end a lease this process does not hold");
  sub->add_flag("--request", o->request,
                "Ask the holder to finish and let go within --grace (its lease ends by then)");
  sub->add_option("--grace", o->grace, "With --request: how long the holder has (default 30s)")
      ->type_name("D");
  sub->add_flag("-y,--yes", o->yes, "Do not ask for confirmation (required without a terminal)");
  sub->add_flag("--semaphore", o->semaphore,
                "Release the semaphore NAME's holders (all of them, or the one with --token)");
  sub->add_option("--token", o->token,
                  "With --semaphore: only the holder with this fencing token (see `sqlock show "
                  "NAME --semaphore`)")
      ->type_name("T");
  sub->footer(
      "The holder learns that its lease ended at its next renewal (at most ttl/3 later); until\n"
      "then only fencing tokens protect the resource. `sqlock run` holders stop their command.\n"
      "Exit 1 if there is no such lock or semaphore (or the confirmation is declined); 0 if it\n"
      "was not held.\n"
      "\n"
      "Examples:\n"
      "  sqlock release nightly-report --force\n"
      "  sqlock release nightly-report --force --yes    # from a script\n"
      "  sqlock release worker-pool --force --semaphore --token 4711 --yes\n"
      "  sqlock release nightly-report --request --grace 30s   # ask politely: `sqlock run`\n"
      "                                 # sends its command SIGTERM, `sqlock elect` resigns");
  sub->callback([&g, o] { g.action = [&g, o] { return run_release(g, *o); }; });
}

}  // namespace sqlock::cli
