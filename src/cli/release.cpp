// `sqlock release NAME --force`: ends whoever's lease it is (an administrator breaking a stuck
// lock). The holder learns at its next renewal, at most ttl/3 later.

#include <unistd.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

struct release_options {
  std::string name;
  bool force = false;
  bool yes = false;
};

int run_release(const globals& g, const release_options& o) {
  if (!o.force)
    usage_error("release ends someone else's lease: pass --force to confirm that is intended");
  auto c = open_client(g);
  // inspect first: "no such lock" (exit 1) differs from "not held" (nothing to do, exit 0).
  auto r = c->inspect(o.name);
  if (!r) throw exit_error(exit_code::busy, "no such lock: '" + printable(o.name) + "'");
  const std::string quoted = "'" + printable(o.name) + "'";
  bool released = false;
  if (r->held) {
    if (!o.yes) {
      auto answer = confirm("Force-release " + quoted + ", held by " + printable(r->owner) +
                            " (token " + std::to_string(r->token) + ", " + describe_expiry(*r) +
                            ")? Its holder keeps running until its next renewal.");
      if (!answer)
        usage_error("not a terminal: pass --yes to force-release " + quoted + " without asking");
      if (!*answer) throw exit_error(exit_code::busy, "not released: " + quoted + " is unchanged");
    }
    released = c->force_release(o.name);
  }
  if (g.format() == output_format::json) {
    print_json({{"name", o.name},
                {"released", released},
                {"owner", r->owner},
                {"token", r->token}});
  } else if (released) {
    if (!g.quiet)
      std::printf("released %s (was held by %s, token %lld)\n", quoted.c_str(),
                  printable(r->owner).c_str(), static_cast<long long>(r->token));
  } else {
    info(g, quoted + " is not held; nothing to release");
  }
  return exit_code::ok;
}

}  // namespace

void add_release(CLI::App& app, globals& g) {
  auto o = std::make_shared<release_options>();
  auto* sub = app.add_subcommand(
      "release", "Force-release a lock: end whoever's lease it is (needs --force)");
  sub->add_option("name", o->name, "Lock name")->required();
  sub->add_flag("--force", o->force, "Required: end a lease this process does not hold");
  sub->add_flag("-y,--yes", o->yes, "Do not ask for confirmation (required without a terminal)");
  sub->footer(
      "The holder learns that its lease ended at its next renewal (at most ttl/3 later); until\n"
      "then only fencing tokens protect the resource. `sqlock run` holders stop their command.\n"
      "Exit 1 if there is no such lock (or the confirmation is declined); 0 if it was not held.\n"
      "\n"
      "Examples:\n"
      "  sqlock release nightly-report --force\n"
      "  sqlock release nightly-report --force --yes    # from a script");
  sub->callback([&g, o] { g.action = [&g, o] { return run_release(g, *o); }; });
}

}  // namespace sqlock::cli
