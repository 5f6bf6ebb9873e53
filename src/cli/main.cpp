// SPDX-License-Identifier: Apache-2.0
// The `sqlock` command-line tool: inspect, break, purge and migrate lock and semaphore rows, run
// a command under a lock or semaphore, and elect a leader. See docs/cli.md.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include <fmt/core.h>

#include "common.hpp"

namespace {

using namespace sqlock::cli;

int report(const globals& g, int code, const std::string& message) {
  if (!message.empty())
    print(stderr, "sqlock: {}{}\n", style(g.color_stderr(), red, "error: "), message);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  globals g;
  CLI::App app{
      "sqlock: distributed locks (leases with fencing tokens) stored as rows in "
      "PostgreSQL, MariaDB/MySQL or SQLite.",
      "sqlock"};
  // Global options are accepted after the command too (`sqlock list -o json`): subcommands
  // created below inherit fallthrough and pass options they do not know to the main app.
  app.fallthrough();
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default(false);
  app.add_option("-d,--database-url", g.database_url,
                 "Database URL: postgresql://..., a libpq key=value string, "
                 "mariadb://USER@HOST[:PORT]/DB (or mysql://...), sqlite:PATH or a file path. "
                 "Default: $SQLOCK_DATABASE_URL, then $DATABASE_URL, then libpq's PG* variables. "
                 "Prefer those (or PGPASSFILE, SQLOCK_MARIADB_PASSFILE) over a password here.")
      ->type_name("URL");
  app.add_option("-o,--output", g.output, "Output format: table (default) or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->type_name("FORMAT");
  app.add_option("--color", g.color,
                 "Colour: auto (default: only on a terminal, and not when NO_COLOR is set), "
                 "always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->type_name("WHEN");
  app.add_option("--schema", g.schema,
                 "PostgreSQL schema holding sqlock's tables (default: public; env SQLOCK_SCHEMA; "
                 "on MariaDB, the URL's database)")
      ->envname("SQLOCK_SCHEMA")
      ->type_name("NAME");
  app.add_flag("-q,--quiet", g.quiet, "Print no informational messages on stderr");
  app.add_flag("-v,--verbose", g.verbose, "Print the library's log on stderr (-vv: debug)");
  app.footer(
      "Examples:\n"
      "  sqlock -d sqlite:/var/lib/app/locks.db migrate up\n"
      "  SQLOCK_DATABASE_URL=postgresql://app@db/app sqlock list --held\n"
      "  sqlock run nightly-report --ttl 1m -n -- /usr/local/bin/report --full\n"
      "  sqlock run config --shared -- ./read-config\n"
      "  sqlock elect scheduler \"$(hostname)\" -- ./scheduler\n"
      "\n"
      "Exit codes: 0 ok; 1 busy, timed out or no such lock; 64 usage; 69 database "
      "unavailable;\n70 internal; 74 output not written; 75 lease lost during run or elect; 78 "
      "configuration or schema "
      "(bad URL, run `sqlock migrate up`).\nRun `sqlock COMMAND --help` for a command's options.");

  add_list(app, g);
  add_show(app, g);
  add_watch(app, g);
  add_release(app, g);
  add_purge(app, g);
  add_migrate(app, g);
  add_run(app, g);
  add_elect(app, g);
  add_history(app, g);
  add_version(app, g);

  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      g.args_after_dash = argc - i - 1;
      break;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    scrub_password(argc, argv, g.database_url);
    // --help is a "parse error" with exit code 0; every real one is a usage error (64), not
    // CLI11's own codes.
    if (e.get_exit_code() == 0) return app.exit(e);
    app.exit(e);
    return exit_code::usage;
  }
  scrub_password(argc, argv, g.database_url);

  try {
    if (!g.action) return report(g, exit_code::usage, "no command given");
    const int code = g.action();
    // Output that was asked for and lost (a full disk, a closed descriptor) is an error,
    // whatever the command did: the flag is sticky, so one check covers every write.
    if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0)
      return report(g, exit_code::io,
                    fmt::format("cannot write the output: {}", std::strerror(errno)));
    return code;
  } catch (const exit_error& e) {
    return report(g, e.code(), e.what());
  } catch (const sqlock::error& e) {
    return report(g, exit_code_for(e), e.what());
  } catch (const std::exception& e) {
    return report(g, exit_code::internal, std::string("internal error: ") + e.what());
  }
}
