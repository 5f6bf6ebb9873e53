// SPDX-License-Identifier: Apache-2.0
// `sqlock run NAME... -- CMD...`: flock(1) across machines. Holds the lock NAME (or units of the
// semaphore NAME: --shared, --exclusive, --count/--limit; or several locks at once, all or none)
// while CMD runs, keeps the leases alive, and stops CMD before a lease can pass to anyone else. The
// machinery (signals, the child, its supervision) is in supervise.cpp, shared with `elect`.

#include <fmt/core.h>

#include <sqlock/validate.hpp>

#include "supervise.hpp"

namespace sqlock::cli {

namespace {

using std::chrono::milliseconds;

struct run_options {
  std::string name;
  std::string never;               // see add_run
  std::vector<std::string> names;  // every NAME (set by run_run)
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

// `run a b c -- CMD`: every lock or none, held while CMD runs (client::try_acquire_all).
int run_several(const globals& g, const run_options& o, lock_options lo,
                std::optional<milliseconds> wait, milliseconds grace, const std::string& path) {
  std::string quoted;
  for (std::size_t i = 0; i < o.names.size(); ++i) {
    sqlock::validate_name(o.names[i]);
    for (std::size_t j = 0; j < i; ++j)
      if (o.names[j] == o.names[i])
        usage_error("run: NAME '" + printable(o.names[i]) + "' is given twice");
    quoted += (i ? ", '" : "'") + printable(o.names[i]) + "'";
  }
  lease_session session(g);
  client& c = session.get_client();
  lo.on_lost = session.on_lost();
  lo.on_revoke_requested = session.on_revoke_requested();
  const milliseconds budget =
      o.nonblock ? milliseconds::zero() : wait.value_or(milliseconds::max());
  // (session.acquire handles a signal during the wait; it returns one lease, so the leases
  // come out through `held`.)
  std::optional<std::vector<lease>> held;
  (void)session.acquire(
      [&]() -> std::optional<lease> {
        held = c.try_acquire_all(o.names, budget, lo);
        return std::nullopt;
      },
      quoted);
  if (!held) {
    std::string holders;
    for (const auto& name : o.names) {
      auto d = holder_description(c, name);
      if (!d.empty()) holders += (holders.empty() ? ": '" : "; '") + printable(name) + "'" + d;
    }
    info(g,
         quoted + " are busy" + holders + (wait ? " (waited " + format_duration(*wait) + ")" : ""));
    return o.conflict_exit_code;
  }
  std::string tokens;
  std::string names;
  std::vector<lease*> leases;
  for (auto& l : *held) {
    tokens += (tokens.empty() ? "" : " ") + std::to_string(l.token());
    names += (names.empty() ? "" : "\n") + l.name();
    leases.push_back(&l);
  }
  const auto env = command_environment(
      {"SQLOCK_LOCK_COUNT"}, {{"SQLOCK_LOCK_NAME", o.names.front()},
                              {"SQLOCK_LOCK_TOKEN", std::to_string(held->front().token())},
                              {"SQLOCK_LOCK_OWNER", c.owner()},
                              {"SQLOCK_LOCK_NAMES", names},
                              {"SQLOCK_LOCK_TOKENS", tokens}});
  std::string what = quoted + " (tokens ";
  for (std::size_t i = 0; i < held->size(); ++i)
    what += (i ? ", " : "") + std::to_string((*held)[i].token());
  return session.run_command(leases, path, o.command, env, grace, what + ")");
}

int run_run(const globals& g, run_options o) {
  // CLI11 fills the positionals in order across `--`: with `--`, every argument before it is a
  // NAME; without, NAME is the first and CMD the rest (as before several names existed).
  {
    std::vector<std::string> positionals = {o.name};
    positionals.insert(positionals.end(), o.command.begin(), o.command.end());
    std::size_t tail = g.args_after_dash < 0 ? positionals.size() - 1
                                             : static_cast<std::size_t>(g.args_after_dash);
    tail = std::min(tail, positionals.size());
    o.names.assign(positionals.begin(), positionals.end() - static_cast<std::ptrdiff_t>(tail));
    o.command.assign(positionals.end() - static_cast<std::ptrdiff_t>(tail), positionals.end());
    if (o.names.empty()) usage_error("run: NAME goes before -- (sqlock run NAME... -- CMD...)");
    o.name = o.names.front();
  }
  if (o.command.empty())
    usage_error("run: no command given (sqlock run NAME [options] -- CMD [ARGS...])");
  if (o.conflict_exit_code < 0 || o.conflict_exit_code > 255)
    usage_error("--conflict-exit-code: must be 0..255");
  if (o.names.size() > 1 && (o.shared || o.exclusive || o.count_given || o.limit_given))
    usage_error(
        "several NAMEs take locks only: --shared, --exclusive, --count and --limit take one NAME");
  if (o.names.size() > 1 && o.fair)
    usage_error("--fair takes one NAME: several locks are taken without queueing (not fair)");
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
  if (o.names.size() > 1) return run_several(g, o, lo, wait, grace, path);

  const std::string quoted = (sem ? "semaphore '" : "'") + printable(o.name) + "'";
  lease_session session(g);
  client& c = session.get_client();
  lo.on_lost = session.on_lost();
  lo.on_revoke_requested = session.on_revoke_requested();
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
  // As with several names, so a script can read either form.
  if (!sem) vars.emplace_back("SQLOCK_LOCK_NAMES", o.name);
  if (!sem) vars.emplace_back("SQLOCK_LOCK_TOKENS", std::to_string(held->token()));
  // Variables inherited from an outer `run` must not describe this lease.
  const auto env =
      command_environment({"SQLOCK_LOCK_COUNT", "SQLOCK_LOCK_NAMES", "SQLOCK_LOCK_TOKENS"}, vars);

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
  sub->add_option("name", o->name,
                  "Lock (or semaphore) name; several lock names before -- take them all at once")
      ->required();
  sub->add_option("command", o->command, "The command and its arguments, after --")
      ->type_name("CMD...");
  // Never filled (`command` takes every later positional): it keeps CLI11 (2.1) from handing
  // what follows `--` back to the main app once `command` holds a value, as it does when no
  // positional still wants one; `command` then holds more NAMEs and, after `--`, CMD, which
  // run_run tells apart.
  sub->add_option("never", o->never)->group("");
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
      "Several lock NAMEs before -- are taken all at once or not at all (in byte order of the\n"
      "names, so overlapping runs never deadlock; not fair: --fair, --shared, --exclusive,\n"
      "--count and --limit take one NAME). CMD gets the first NAME's SQLOCK_LOCK_NAME and\n"
      "SQLOCK_LOCK_TOKEN, plus SQLOCK_LOCK_NAMES (one per line) and SQLOCK_LOCK_TOKENS\n"
      "(space-separated), in the order given; losing any lease stops CMD as above.\n"
      "Exit: CMD's status (128+N if killed by signal N; 126 cannot execute; 127 not found);\n"
      "1 (or --conflict-exit-code) if busy or timed out; 75 lease lost.\n"
      "\n"
      "Examples:\n"
      "  sqlock run nightly-report -n -- /usr/local/bin/report --full\n"
      "  sqlock run deploy --wait 5m --ttl 1m -- make deploy\n"
      "  sqlock run db-primary db-replica --wait 1m -- ./migrate   # both, or neither\n"
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
