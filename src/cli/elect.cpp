// SPDX-License-Identifier: Apache-2.0
// `sqlock elect NAME VALUE [-- CMD...]`: campaign, stay leader until interrupted (or while CMD
// runs), resign; `sqlock elect NAME` / `elect -l NAME`: print the leader and each change.
// In the spirit of `etcdctl elect`.
//
// A campaign holds the lock NAME with VALUE as its metadata: exactly what sqlock::election's
// campaign does (src/core/election.cpp), so CLI candidates and library candidates compete in one
// election and `sqlock show NAME` shows the leader. The CLI takes that lease itself rather than
// through sqlock::election because the supervision it shares with `run` (supervise.hpp) works
// on a lease handle, to stop CMD before the lease's safety deadline while renewals fail.
// Observing uses sqlock::election::observe.

#include <pthread.h>
#include <signal.h>

#include <fstream>
#include <iterator>
#include <mutex>

#include <fmt/core.h>

#include <sqlock/validate.hpp>

#include "supervise.hpp"

namespace sqlock::cli {

namespace {

using std::chrono::milliseconds;

struct elect_options {
  std::string name;
  std::string value;
  bool value_given = false;
  bool listen = false;
  std::string ttl = "30s";
  bool ttl_given = false;
  std::string wait;
  bool nonblock = false;
  std::string kill_grace;
  int conflict_exit_code = exit_code::busy;
  std::string interval;    // empty: 1s
  std::string value_file;  // --value-file: VALUE read from it, again on SIGHUP (proclaim)
  std::vector<std::string> command;
};

// logfmt-style quoting: bare when the value has no space, quote, backslash or '='.
std::string logfmt_value(const std::string& raw) {
  std::string v = printable(raw);
  bool bare = !v.empty() && v.find_first_of(" \"\\=") == std::string::npos;
  if (bare) return v;
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

std::string leader_line(std::int64_t term, const std::string& value, const std::string& owner) {
  return fmt::format("term={} value={} owner={}", term, logfmt_value(value), logfmt_value(owner));
}

void print_line(const std::string& line) {
  print(stdout, "{}\n", line);
  std::fflush(stdout);
}

std::string leader_description(client& c, const std::string& name) {
  try {
    if (auto r = c.inspect(name); r && r->held)
      return fmt::format(": {} (term {}, value {}, {})", printable(r->owner), r->token,
                         logfmt_value(r->metadata), describe_expiry(*r));
  } catch (const error&) {
  }
  return "";
}

// --value-file: the file's content, less one trailing newline (as `echo` writes it).
std::string read_value_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read --value-file " + printable(path));
  std::string v((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read --value-file " + printable(path));
  if (!v.empty() && v.back() == '\n') v.pop_back();
  if (!v.empty() && v.back() == '\r') v.pop_back();
  sqlock::validate_metadata(v);
  return v;
}

// The published value of a campaign with --value-file: SIGHUP re-reads the file, and the leader
// proclaims what changed (lease::update_metadata, as election::proclaim does). Shared by the
// signal thread (SIGHUP) and the main thread (winning, then letting go of the lease).
struct proclaimer {
  std::mutex mu;
  std::string path;
  std::string wanted;                             // the file's content as last read
  std::string published;                          // what the lease's row carries
  lease* held = nullptr;                          // while leader
  std::function<void(const std::string&)> print;  // prints the leader line with a value

  // Proclaims `wanted` when it differs from what is published (mu held).
  void sync_locked(const globals& g, const std::string& what) {
    if (held == nullptr || wanted == published) return;
    try {
      held->update_metadata(wanted);
      published = wanted;
      print(published);
    } catch (const std::exception& e) {
      warn(g, what + ": proclaiming the new value failed (SIGHUP to try again): " + e.what());
    }
  }
};

int campaign(const globals& g, const elect_options& o) {
  if (!o.interval.empty())
    usage_error("--interval applies to observing (elect NAME, or elect -l NAME)");
  if (o.conflict_exit_code < 0 || o.conflict_exit_code > 255)
    usage_error("--conflict-exit-code: must be 0..255");
  lock_options lo;
  lo.ttl = parse_duration(o.ttl, "--ttl");
  lo.metadata = o.value;
  auto values = std::make_shared<proclaimer>();
  if (!o.value_file.empty()) {
    values->path = o.value_file;
    try {
      lo.metadata = read_value_file(o.value_file);
    } catch (const std::exception& e) {
      usage_error(e.what());
    }
    values->wanted = values->published = lo.metadata;
  }
  std::optional<milliseconds> wait;
  if (!o.wait.empty()) wait = parse_duration(o.wait, "--wait");
  sqlock::validate_name(o.name);
  sqlock::validate_ttl(lo.ttl);
  sqlock::validate_metadata(lo.metadata);
  const milliseconds grace = kill_grace(g, o.kill_grace, lo.ttl);
  std::string path;
  if (!o.command.empty()) path = find_command(o.command);

  const std::string quoted = "election '" + printable(o.name) + "'";
  lease_session session(g);
  client& c = session.get_client();
  lo.on_lost = session.on_lost();
  lo.on_revoke_requested = session.on_revoke_requested();
  const std::string quoted_name = quoted;
  if (!o.value_file.empty()) {
    // SIGHUP re-reads the file (during the campaign too: the winner proclaims what it read).
    session.on_signal(SIGHUP, [&g, values, quoted_name] {
      std::string v;
      try {
        v = read_value_file(values->path);
      } catch (const std::exception& e) {
        warn(g, quoted_name + ": SIGHUP: " + e.what() + "; the value stays");
        return;
      }
      std::lock_guard<std::mutex> lock(values->mu);
      values->wanted = std::move(v);
      values->sync_locked(g, quoted_name);
    });
  }
  // election::campaign / try_campaign_for, with the lease in hand (see the file comment).
  std::optional<lease> held = session.acquire(
      [&]() -> std::optional<lease> {
        if (o.nonblock) return c.try_acquire(o.name, lo);
        if (wait) return c.try_acquire_for(o.name, *wait, lo);
        return c.acquire(o.name, lo);
      },
      quoted);
  if (!held) {
    info(g, quoted + " has a leader" + leader_description(c, o.name) +
                (wait ? " (waited " + format_duration(*wait) + ")" : ""));
    return o.conflict_exit_code;
  }
  const std::int64_t term = held->token();
  const std::string what = fmt::format("{} (term {})", quoted, term);
  values->print = [&g, name = o.name, term, owner = c.owner()](const std::string& value) {
    if (g.format() == output_format::json)
      print_json({{"name", name}, {"term", term}, {"value", value}, {"owner", owner}});
    else
      print_line(leader_line(term, value, owner));
  };
  // The signal thread stops proclaiming through `held` before it goes.
  struct unpublish {
    proclaimer& p;
    ~unpublish() {
      std::lock_guard<std::mutex> lock(p.mu);
      p.held = nullptr;
    }
  } unpublish_guard{*values};
  auto announce = [&] {
    std::lock_guard<std::mutex> lock(values->mu);
    values->print(lo.metadata);
    if (o.value_file.empty()) return;
    values->held = &*held;
    values->sync_locked(g, what);  // a SIGHUP during the campaign
  };

  if (!o.command.empty()) {
    announce();
    const auto env = command_environment({}, {{"SQLOCK_ELECTION_NAME", o.name},
                                              {"SQLOCK_ELECTION_TERM", std::to_string(term)},
                                              {"SQLOCK_ELECTION_VALUE", lo.metadata},
                                              {"SQLOCK_ELECTION_OWNER", c.owner()}});
    // The command's end resigns (run_command releases the lease).
    return session.run_command(*held, path, o.command, env, grace, what);
  }
  int sig = session.hold(*held, what, announce);
  info(g, "resigned " + what + ": " + (sig != 0 ? strsignal(sig) : "release requested"));
  return exit_code::ok;
}

int observe(const globals& g, const elect_options& o) {
  if (!o.wait.empty() || o.nonblock || !o.kill_grace.empty() || o.ttl_given ||
      o.conflict_exit_code != exit_code::busy)
    usage_error(
        "--ttl, --wait, -n, --kill-grace and --conflict-exit-code apply to a campaign "
        "(elect NAME VALUE); without VALUE, elect observes");
  const milliseconds interval =
      o.interval.empty() ? milliseconds{1000} : parse_duration(o.interval, "--interval");
  if (interval < milliseconds{100}) usage_error("--interval: at least 100ms");
  sqlock::validate_name(o.name);
  // SIGINT, SIGTERM and SIGHUP end the observation: blocked before the client (and the
  // observer) start any thread, and taken synchronously here.
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto c = open_client(g);
  election e(*c, o.name);
  const bool json = g.format() == output_format::json;
  const std::string name = o.name;
  observation watching = e.observe(
      [json, name](const std::optional<leader_info>& l) {
        if (json) {
          nlohmann::json doc = {{"name", name},
                                {"term", nullptr},
                                {"value", nullptr},
                                {"owner", nullptr},
                                {"expires_in_seconds", nullptr}};
          if (l) {
            doc["term"] = l->term;
            doc["value"] = l->value;
            doc["owner"] = l->owner;
            doc["expires_in_seconds"] = seconds(l->expires_in);
          }
          print_json(doc);
        } else if (l) {
          print_line(leader_line(l->term, l->value, l->owner));
        } else {
          print_line("no leader");
        }
      },
      interval);
  int sig = 0;
  while (sig <= 0) sig = sigwaitinfo(&stop, nullptr);
  watching.stop();
  return exit_code::ok;
}

int run_elect(const globals& g, elect_options o) {
  // CLI11 fills the positionals in order across `--`: put back what followed it into CMD.
  std::vector<std::string> positionals = {o.name};
  if (o.value_given) positionals.push_back(o.value);
  positionals.insert(positionals.end(), o.command.begin(), o.command.end());
  std::size_t tail = g.args_after_dash < 0 ? 0 : static_cast<std::size_t>(g.args_after_dash);
  tail = std::min(tail, positionals.size());
  std::vector<std::string> head(positionals.begin(),
                                positionals.end() - static_cast<std::ptrdiff_t>(tail));
  o.command.assign(positionals.end() - static_cast<std::ptrdiff_t>(tail), positionals.end());
  if (head.empty())
    usage_error("elect: NAME goes before -- (sqlock elect NAME [VALUE] [-- CMD...])");
  if (head.size() > 2)
    usage_error("elect: unexpected argument '" + printable(head[2]) +
                "' (sqlock elect NAME [VALUE] [-- CMD...]; the command goes after --)");
  o.name = head[0];
  o.value_given = head.size() == 2;
  o.value = o.value_given ? head[1] : std::string();

  if (!o.value_file.empty()) {
    if (o.value_given) usage_error("elect: VALUE and --value-file exclude each other");
    if (o.listen) usage_error("elect --listen observes: it takes no --value-file");
    return campaign(g, o);
  }
  if (o.listen || !o.value_given) {
    if (o.listen && o.value_given) usage_error("elect --listen observes: it takes no VALUE");
    if (!o.command.empty())
      usage_error(
          "elect: a command runs while leader: campaign with a VALUE (sqlock elect NAME VALUE -- "
          "CMD...)");
    return observe(g, o);
  }
  return campaign(g, o);
}

}  // namespace

void add_elect(CLI::App& app, globals& g) {
  auto o = std::make_shared<elect_options>();
  auto* sub = app.add_subcommand("elect",
                                 "Leader election: campaign with VALUE and stay leader (optionally "
                                 "while CMD runs), or observe the leader");
  sub->add_option("name", o->name, "Election name (the lock NAME that the leader holds)")
      ->required();
  auto* value = sub->add_option(
      "value", o->value,
      "Campaign, publishing VALUE (the lock's metadata) when elected; without it, observe");
  sub->add_option("command", o->command, "A command to run while leader, after --")
      ->type_name("CMD...");
  sub->add_flag("-l,--listen", o->listen,
                "Observe: print the leader and each change until interrupted");
  auto* ttl =
      sub->add_option("--ttl", o->ttl, "Leadership lease length, renewed every ttl/3 (default 30s)")
          ->type_name("DURATION");
  auto* wait =
      sub->add_option("--wait", o->wait,
                      "Give up the campaign after waiting this long (default: wait forever)")
          ->type_name("DURATION");
  auto* nb =
      sub->add_flag("-n,--nonblock", o->nonblock, "Do not wait: exit at once if there is a leader");
  wait->excludes(nb);
  sub->add_option("--conflict-exit-code", o->conflict_exit_code,
                  "Exit code when another candidate leads and -n or --wait gives up (default 1)")
      ->type_name("N");
  sub->add_option(
         "--kill-grace", o->kill_grace,
         "Time between SIGTERM and SIGKILL when the leadership is lost, and what CMD's leftover "
         "processes get after it exits (default 5s, or ttl/3 if shorter)")
      ->type_name("DURATION");
  sub->add_option("--value-file", o->value_file,
                  "Campaign with the content of PATH as VALUE (less a trailing newline); on "
                  "SIGHUP, read it again and, while leader, publish it (proclaim)")
      ->type_name("PATH");
  sub->add_option("--interval", o->interval,
                  "Observing: look at least this often (default 1s; releases are seen at once on "
                  "PostgreSQL)")
      ->type_name("DURATION");
  sub->footer(
      "Campaign (elect NAME VALUE): waits until leader, prints `term=T value=V owner=O` (the\n"
      "term is the leadership's fencing token: larger for every new leader), then stays leader\n"
      "until SIGINT, SIGTERM or SIGHUP (it resigns and exits 0) or until the leadership is lost\n"
      "(exit 75). With -- CMD, CMD runs while leader, as with `run` (signals forwarded, CMD\n"
      "stopped before the leadership can pass, exit with CMD's status), with "
      "SQLOCK_ELECTION_NAME,\n"
      "SQLOCK_ELECTION_TERM, SQLOCK_ELECTION_VALUE and SQLOCK_ELECTION_OWNER in its environment;\n"
      "CMD's exit resigns, once CMD's whole process group is gone (as with `run`: leftovers get\n"
      "--kill-grace, then SIGTERM, then SIGKILL after --kill-grace).\n"
      "With --value-file PATH instead of VALUE, SIGHUP neither resigns nor reaches CMD: it reads\n"
      "PATH again and the leader publishes the new value in its term (proclaim), printing the\n"
      "leader line again; observers see it (at once on PostgreSQL).\n"
      "Observe (elect NAME, or elect -l NAME): prints the current leader (or `no leader`), then\n"
      "one line per change, until SIGINT or SIGTERM (exit 0). With -o json, one JSON document per\n"
      "line: {\"name\", \"term\", \"value\", \"owner\", \"expires_in_seconds\"} (null when "
      "vacant).\n"
      "\n"
      "Examples:\n"
      "  sqlock elect scheduler \"$(hostname)\"               # leader until Ctrl-C\n"
      "  sqlock elect scheduler \"$(hostname)\" -- ./scheduler # run it on one host only\n"
      "  sqlock elect scheduler                              # who leads, and each change\n"
      "  sqlock elect scheduler --value-file /run/sched.addr # kill -HUP to publish a new one\n"
      "  sqlock elect -l scheduler -o json | jq -c '{term, value}'");
  sub->callback([&g, o, value, ttl] {
    o->value_given = value->count() > 0;
    o->ttl_given = ttl->count() > 0;
    g.action = [&g, o] { return run_elect(g, *o); };
  });
}

}  // namespace sqlock::cli
