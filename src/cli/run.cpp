// SPDX-License-Identifier: Apache-2.0
// `sqlock run NAME -- CMD...`: flock(1) across machines. Holds the lock NAME (or units of the
// semaphore NAME: --shared, --exclusive, --count/--limit) while CMD runs, keeps the lease
// alive, and stops CMD before the lease can pass to anyone else. The machinery (signals, the
// child, its supervision) is in supervise.cpp, shared with `elect`.

#include <fmt/core.h>

#include <sqlock/validate.hpp>

#include "supervise.hpp"

namespace sqlock::cli {

namespace {

using std::chrono::milliseconds;

struct run_options {
  std::string name;
  std::string ttl = "30s";
  std::string wait;
  bool nonblock = false;
  std::string metadata;
  int conflict_exit_code = exit_code::busy;
  std::string kill_grace;  // empty: 5s, or ttl/3 if shorter
  bool shared = false;
  bool exclusive = false;
  std::int64_t count = 1;
  std::int64_t limit = 0;
  bool count_given = false;
  bool limit_given = false;
  bool fair = false;
  std::vector<std::string> command;
};

// The semaphore a `run` takes, or empty for the lock NAME. Throws usage errors for flags that
// do not combine.
std::optional<semaphore_options> semaphore_mode(const run_options& o) {
  const bool counting = o.count_given || o.limit_given;
  if (o.shared && o.exclusive) usage_error("--shared and --exclusive exclude each other");
  if ((o.shared || o.exclusive) && counting)
    usage_error(
        fmt::format("{} is the readers/writer lock NAME (a semaphore of {} units: "
                    "shared = 1, exclusive = all); it takes no --count or --limit",
                    o.shared ? "--shared" : "--exclusive", max_semaphore_limit));
  if (!o.shared && !o.exclusive && !counting) return std::nullopt;
  semaphore_options so;
  so.fair = o.fair;
  if (o.shared || o.exclusive) {
    so.limit = max_semaphore_limit;
    so.count = 1;
    so.exclusive = o.exclusive;
    return so;
  }
  if (!o.limit_given)
    usage_error(
        "--count needs --limit M: the semaphore's capacity, which every user of NAME states alike");
  if (o.limit < 1 || o.limit > max_semaphore_limit)
    usage_error(fmt::format("--limit: must be 1..{}, not {}", max_semaphore_limit, o.limit));
  so.limit = o.limit;
  so.count = o.count;
  if (so.count < 1) usage_error(fmt::format("--count: must be at least 1, not {}", so.count));
  if (so.count > so.limit)
    usage_error(
        fmt::format("--count {} is more than --limit {}: the semaphore could never grant it",
                    so.count, so.limit));
  return so;
}

// "': held by ...'" for a busy message; empty when it cannot be told.
std::string holder_description(client& c, const std::string& name) {
  try {
    if (auto r = c.inspect(name); r && r->held)
      return fmt::format(": held by {} (token {}, {})", printable(r->owner), r->token,
                         describe_expiry(*r));
  } catch (const error&) {
  }
  return "";
}

std::string semaphore_description(client& c, const std::string& name) {
  try {
    if (auto r = c.inspect_semaphore(name)) {
      std::string s = ": " + describe_usage(*r);
      if (r->limit != max_semaphore_limit)  // a readers/writer lock's usage names its holders
        s += fmt::format(" by {} {}", r->holders.size(),
                         r->holders.size() == 1 ? "holder" : "holders");
      if (!r->waiters.empty()) s += fmt::format(", {} queued", r->waiters.size());
      return s;
    }
  } catch (const error&) {
  }
  return "";
}

int run_run(const globals& g, const run_options& o) {
  if (o.command.empty())
    usage_error("run: no command given (sqlock run NAME [options] -- CMD [ARGS...])");
  if (o.conflict_exit_code < 0 || o.conflict_exit_code > 255)
    usage_error("--conflict-exit-code: must be 0..255");
  const std::optional<semaphore_options> sem = semaphore_mode(o);
  lock_options lo;
  lo.ttl = parse_duration(o.ttl, "--ttl");
  lo.metadata = o.metadata;
  lo.fair = o.fair;
  std::optional<milliseconds> wait;
  if (!o.wait.empty()) wait = parse_duration(o.wait, "--wait");
  sqlock::validate_name(o.name);
  sqlock::validate_ttl(lo.ttl);
  sqlock::validate_metadata(lo.metadata);
  const milliseconds grace = kill_grace(g, o.kill_grace, lo.ttl);
  // Fail fast, before taking the lock, if CMD cannot be found.
  const std::string path = find_command(o.command);

  const std::string quoted = (sem ? "semaphore '" : "'") + printable(o.name) + "'";
  lease_session session(g);
  client& c = session.get_client();
  lo.on_lost = session.on_lost();
  semaphore_options so;
  if (sem) {
    so = *sem;
    static_cast<lock_options&>(so) = lo;
  }
  std::optional<lease> held = session.acquire(
      [&]() -> std::optional<lease> {
        if (sem) {
          if (o.nonblock) return c.try_acquire_semaphore(o.name, so);
          if (wait) return c.try_acquire_semaphore_for(o.name, *wait, so);
          return c.acquire_semaphore(o.name, so);
        }
        if (o.nonblock) return c.try_acquire(o.name, lo);
        if (wait) return c.try_acquire_for(o.name, *wait, lo);
        return c.acquire(o.name, lo);
      },
      quoted);
  if (!held) {
    info(g, quoted + " is busy" +
                (sem ? semaphore_description(c, o.name) : holder_description(c, o.name)) +
                (wait ? " (waited " + format_duration(*wait) + ")" : ""));
    return o.conflict_exit_code;
  }

  std::vector<std::pair<std::string, std::string>> vars = {
      {"SQLOCK_LOCK_NAME", o.name},
      {"SQLOCK_LOCK_TOKEN", std::to_string(held->token())},
      {"SQLOCK_LOCK_OWNER", c.owner()}};
  if (sem) vars.emplace_back("SQLOCK_LOCK_COUNT", std::to_string(held->count()));
  // A SQLOCK_LOCK_COUNT inherited from an outer `run` must not describe this lease.
  const auto env = command_environment({"SQLOCK_LOCK_COUNT"}, vars);

  const std::string what = sem ? fmt::format("{} (token {}, {} {})", quoted, held->token(),
                                             held->count(), held->count() == 1 ? "unit" : "units")
                               : fmt::format("{} (token {})", quoted, held->token());
  return session.run_command(*held, path, o.command, env, grace, what);
}

}  // namespace

void add_run(CLI::App& app, globals& g) {
  auto o = std::make_shared<run_options>();
  auto* sub = app.add_subcommand(
      "run", "Run a command while holding a lock or semaphore units (flock(1) across machines)");
  sub->add_option("name", o->name, "Lock (or semaphore) name")->required();
  sub->add_option("command", o->command, "The command and its arguments, after --")
      ->type_name("CMD...");
  sub->add_option("--ttl", o->ttl, "Lease length, renewed every ttl/3 while CMD runs (default 30s)")
      ->type_name("DURATION");
  auto* wait =
      sub->add_option("--wait", o->wait, "Give up after waiting this long (default: wait forever)")
          ->type_name("DURATION");
  auto* nb =
      sub->add_flag("-n,--nonblock", o->nonblock, "Do not wait: exit at once if the lock is busy");
  wait->excludes(nb);
  sub->add_option("--metadata", o->metadata,
                  "Text stored with the lease, shown by `list` and `show`")
      ->type_name("TEXT");
  sub->add_option("--conflict-exit-code", o->conflict_exit_code,
                  "Exit code when the lock is busy or the wait times out (default 1)")
      ->type_name("N");
  sub->add_option(
         "--kill-grace", o->kill_grace,
         "Time between SIGTERM and SIGKILL when the lease is lost, and what CMD's leftover "
         "processes get after it exits (default 5s, or ttl/3 if shorter)")
      ->type_name("DURATION");
  sub->add_flag("--shared", o->shared,
                "Take a shared lock: 1 unit of the readers/writer semaphore NAME");
  sub->add_flag("--exclusive", o->exclusive,
                "Take the exclusive lock: all units of the readers/writer semaphore NAME");
  auto* count =
      sub->add_option("--count", o->count,
                      "Units of the counting semaphore NAME to take (default 1; needs --limit)")
          ->type_name("N");
  auto* limit =
      sub->add_option(
             "--limit", o->limit,
             "Capacity of the counting semaphore NAME; every user of NAME must give the same")
          ->type_name("M");
  sub->add_flag("--fair", o->fair,
                "Wait in arrival order: a queued waiter is never passed by a later one (every user "
                "of NAME should pass it)");
  sub->footer(
      "CMD runs directly (no shell) in its own process group, with stdio inherited and\n"
      "SQLOCK_LOCK_NAME, SQLOCK_LOCK_TOKEN (the fencing token) and SQLOCK_LOCK_OWNER in its\n"
      "environment, plus SQLOCK_LOCK_COUNT (units held) for a semaphore. SIGINT, SIGTERM and\n"
      "SIGHUP are forwarded to it. If the lease is lost, CMD's process group gets SIGTERM, then\n"
      "SIGKILL after --kill-grace, and sqlock exits 75; while renewals fail, that starts\n"
      "--kill-grace before the lease's safety deadline. CMD is killed if sqlock itself dies.\n"
      "The lease is released only when CMD's whole process group is gone: processes CMD left\n"
      "behind get --kill-grace after it exits, then SIGTERM, then SIGKILL after --kill-grace\n"
      "(exit status: still CMD's). A process that leaves the group (setsid) escapes.\n"
      "Semaphores are a namespace of their own: `run x --shared` never conflicts with `run x`.\n"
      "Exit: CMD's status (128+N if killed by signal N; 126 cannot execute; 127 not found);\n"
      "1 (or --conflict-exit-code) if busy or timed out; 75 lease lost.\n"
      "\n"
      "Examples:\n"
      "  sqlock run nightly-report -n -- /usr/local/bin/report --full\n"
      "  sqlock run deploy --wait 5m --ttl 1m -- make deploy\n"
      "  sqlock run config --shared -- ./read-config        # many readers at once\n"
      "  sqlock run config --exclusive -- ./rewrite-config  # alone, after the readers\n"
      "  sqlock run gpu-pool --limit 4 --count 2 --fair -- ./train   # 2 of 4 GPUs\n"
      "  # crontab: at most one instance across all hosts, quietly skipping when busy\n"
      "  */5 * * * * sqlock -q run sync-orders -n --conflict-exit-code 0 -- /opt/app/sync");
  sub->callback([&g, o, count, limit] {
    o->count_given = count->count() > 0;
    o->limit_given = limit->count() > 0;
    g.action = [&g, o] { return run_run(g, *o); };
  });
}

}  // namespace sqlock::cli
