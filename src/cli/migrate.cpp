// SPDX-License-Identifier: Apache-2.0
// `sqlock migrate up|down|status|print`: sqlock's schema in the database.

#include <sys/stat.h>

#include <cerrno>

#include <fmt/core.h>

#include <sqlock/migrations.hpp>
#include <sqlock/url.hpp>

#include "common.hpp"

namespace sqlock::cli {

namespace {

std::chrono::steady_clock::time_point op_deadline() {
  // The library's default operation timeout; migrations are small.
  return std::chrono::steady_clock::now() + std::chrono::seconds{30};
}

int run_up(const globals& g) {
  auto c = open_client(g, true);
  int before = c->schema_version();
  int after = c->migrate();
  if (g.format() == output_format::json) {
    print_json({{"backend", std::string(c->get_backend()->kind())},
                {"previous_version", before},
                {"version", after},
                {"latest_version", c->get_backend()->latest_schema_version()}});
  } else if (!g.quiet) {
    if (before == after)
      print(stdout, "schema version {}: already up to date\n", after);
    else
      print(stdout, "migrated from schema version {} to {}\n", before, after);
  }
  return exit_code::ok;
}

struct down_options {
  int to = -1;
  bool yes = false;
  bool force = false;
};

int run_down(const globals& g, const down_options& o) {
  auto c = open_client(g);
  auto& db = c->get_backend();
  int before = db->schema_version(op_deadline());
  int target = o.to >= 0 ? o.to : std::max(0, before - 1);
  if (target > before)
    usage_error(fmt::format("migrate down --to {}: the schema is at version {} (use `migrate up`)",
                            target, before));
  if (target < before && !o.yes) {
    auto answer = confirm(fmt::format(
        "Migrate {} database {} down from schema version {} to {}? This can drop lock rows and "
        "the token counter.",
        db->kind(), db->describe(), before, target));
    if (!answer) usage_error("not a terminal: pass --yes to migrate down without asking");
    if (!*answer) throw exit_error(exit_code::busy, "not migrated: the schema is unchanged");
  }
  // The backend refuses (invalid_argument: exit 64, nothing changed) to drop live leases or
  // semaphore holders unless forced; it warns through the log when forced.
  migrate_options mo;
  mo.force = o.force;
  int after = target == before ? before : db->migrate_with(target, mo, op_deadline());
  if (g.format() == output_format::json) {
    print_json({{"backend", std::string(db->kind())},
                {"previous_version", before},
                {"version", after},
                {"latest_version", db->latest_schema_version()}});
  } else if (!g.quiet) {
    if (before == after)
      print(stdout, "schema version {}: nothing to do\n", after);
    else
      print(stdout, "migrated from schema version {} down to {}\n", before, after);
  }
  return exit_code::ok;
}

int run_status(const globals& g, bool exit_code_flag) {
  std::string url = resolve_database_url(g);
  auto c = open_client(g, true);
  auto& db = c->get_backend();
  int current = 0;
  // Only `migrate up` creates a missing SQLite file: before that it is simply not migrated.
  const bool missing_file = sqlite_file_missing(url);
  if (!missing_file) current = db->schema_version(op_deadline());
  int latest = db->latest_schema_version();
  std::string kind(db->kind());
  auto pending = nlohmann::json::array();
  for (const auto& m : sqlock::embedded_migrations(kind))
    if (m.version > current) pending.push_back({{"version", m.version}, {"name", m.name}});
  if (g.format() == output_format::json) {
    print_json({{"backend", kind},
                {"database", db->describe()},
                {"current_version", current},
                {"latest_version", latest},
                {"up_to_date", current == latest},
                {"pending", pending}});
  } else {
    print(stdout, "database:        {} {}\n", kind, printable(db->describe()));
    print(stdout, "current version: {}{}\n", current,
          missing_file ? " (the file does not exist yet)" : "");
    print(stdout, "latest version:  {}\n", latest);
    if (current == latest)
      print(stdout, "status:          up to date\n");
    else if (current < latest)
      print(stdout, "status:          {} migration{} pending: run `sqlock migrate up`\n",
            latest - current, latest - current == 1 ? "" : "s");
    else
      print(stdout, "status:          newer than this sqlock knows: upgrade sqlock\n");
    std::fflush(stdout);
  }
  if (exit_code_flag && current < latest) return exit_code::busy;
  if (exit_code_flag && current > latest) return exit_code::config;
  return exit_code::ok;
}

struct print_options {
  std::string backend;
  bool down = false;
};

int run_print(const globals& g, const print_options& o) {
  std::string kind = o.backend;
  if (kind.empty()) {
    std::string url;
    try {
      url = resolve_database_url(g);
    } catch (const exit_error&) {
      usage_error("migrate print: pass --backend postgresql|sqlite|mariadb (or a database URL)");
    }
    kind = url_backend_kind(url);
  }
  const auto& all = sqlock::embedded_migrations(kind);
  if (all.empty()) throw exit_error(exit_code::internal, "no embedded migrations for " + kind);
  std::string out;
  auto emit = [&](const sqlock::migration& m, bool up) {
    out += "-- sqlock migration " + std::string(up ? m.up_file : m.down_file) + " (" + kind + ")\n";
    out += up ? m.up : m.down;
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += '\n';
  };
  if (o.down)
    for (auto it = all.rbegin(); it != all.rend(); ++it) emit(*it, false);
  else
    for (const auto& m : all) emit(m, true);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return exit_code::ok;
}

}  // namespace

void add_migrate(CLI::App& app, globals& g) {
  auto* sub = app.add_subcommand("migrate", "Create, upgrade, downgrade or print sqlock's schema");
  sub->require_subcommand(1);
  sub->footer(
      "Examples:\n"
      "  sqlock migrate up\n"
      "  sqlock migrate status --exit-code || sqlock migrate up\n"
      "  sqlock migrate print --backend postgresql > 001_sqlock.sql   # for your own tool");

  auto* up = sub->add_subcommand("up", "Apply pending migrations (concurrent runners serialise)");
  up->footer("Example:\n  sqlock -d sqlite:/var/lib/app/locks.db migrate up");
  up->callback([&g] { g.action = [&g] { return run_up(g); }; });

  auto d = std::make_shared<down_options>();
  auto* down = sub->add_subcommand("down", "Revert one migration (or down to --to N)");
  down->add_option("--to", d->to, "Target schema version (0 drops everything)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  down->add_flag("-y,--yes", d->yes, "Do not ask for confirmation (required without a terminal)");
  down->add_flag("--force", d->force,
                 "Drop live leases and semaphore holders too (refused without it)");
  down->footer(
      "Reverting the first migration drops the lock table and the token counter: fencing\n"
      "tokens then start again from 1. Stop every application using the locks first: while\n"
      "a lock lease or semaphore holder that a step would drop is live, it is refused (exit\n"
      "64, nothing changed) unless --force.\n"
      "\n"
      "Example:\n  sqlock migrate down --to 0 --yes");
  down->callback([&g, d] { g.action = [&g, d] { return run_down(g, *d); }; });

  auto exit_flag = std::make_shared<bool>(false);
  auto* status = sub->add_subcommand("status", "Print the current and latest schema versions");
  status->add_flag("--exit-code", *exit_flag, "Exit 1 when migrations are pending");
  status->footer("Example:\n  sqlock migrate status --exit-code || sqlock migrate up");
  status->callback(
      [&g, exit_flag] { g.action = [&g, exit_flag] { return run_status(g, *exit_flag); }; });

  auto p = std::make_shared<print_options>();
  auto* print = sub->add_subcommand(
      "print", "Write the embedded migration SQL to stdout (no database needed)");
  print
      ->add_option("--backend", p->backend,
                   "postgresql, sqlite or mariadb (default: the URL's backend)")
      ->check(CLI::IsMember({"postgresql", "sqlite", "mariadb"}))
      ->type_name("BACKEND");
  print->add_flag("--down", p->down, "The down migrations, newest first");
  print->footer(
      "The files need no schema qualification: run them with your migration tool's search_path.\n"
      "\n"
      "Examples:\n"
      "  sqlock migrate print --backend postgresql\n"
      "  sqlock migrate print --backend sqlite --down");
  print->callback([&g, p] { g.action = [&g, p] { return run_print(g, *p); }; });
}

}  // namespace sqlock::cli
