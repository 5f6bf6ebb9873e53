// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the subcommands of the `sqlock` tool share: global options, the database URL, durations,
// output formatting, colour and the mapping from errors to exit codes.

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <sqlock/sqlock.hpp>

namespace sqlock::cli {

/// Exit codes (sysexits.h where one fits). See docs/cli.md.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int busy = 1;          ///< lock busy, wait timed out, unknown lock, declined
inline constexpr int usage = 64;        ///< EX_USAGE: bad flags, durations, names
inline constexpr int unavailable = 69;  ///< EX_UNAVAILABLE: database unreachable, in doubt
inline constexpr int internal = 70;     ///< EX_SOFTWARE: API misuse, cancelled, bugs
inline constexpr int io = 74;           ///< EX_IOERR: the output could not be written
inline constexpr int lease_lost = 75;   ///< EX_TEMPFAIL: the lease was lost during `run`
inline constexpr int config = 78;       ///< EX_CONFIG: bad URL, no URL, schema missing or wrong
}  // namespace exit_code

/// Ends the command with `code`, after printing `message` (if any) to stderr.
class exit_error : public std::runtime_error {
 public:
  exit_error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Writes `text` to `out` without throwing (unlike fmt::print): a failed write of stdout
/// leaves its error flag set, and main turns that into exit 74 once the command is done, so
/// `sqlock list > file` on a full disk never exits 0. Diagnostics on stderr are best effort.
void write(std::FILE* out, std::string_view text) noexcept;

/// fmt::print through write().
template <typename... T>
void print(std::FILE* out, fmt::format_string<T...> format, T&&... args) {
  write(out, fmt::vformat(format, fmt::make_format_args(args...)));
}

[[noreturn]] inline void usage_error(const std::string& message) {
  throw exit_error(exit_code::usage, message);
}

enum class output_format { table, json };

/// Global options, accepted before or after the command.
struct globals {
  std::string database_url;  ///< -d; empty: environment
  std::string output = "table";
  std::string color = "auto";
  std::string schema;  ///< --schema or SQLOCK_SCHEMA; empty: the library's default
  bool quiet = false;
  int verbose = 0;

  /// Set by the chosen subcommand's parse callback; run after parsing.
  std::function<int()> action;
  /// How many arguments followed the first `--` on the command line (-1: there was none). CLI11
  /// fills positionals in order across `--`, so a command with an optional positional before
  /// `-- CMD...` (`elect NAME [VALUE] -- CMD`) needs it to tell VALUE from CMD.
  int args_after_dash = -1;

  output_format format() const {
    return output == "json" ? output_format::json : output_format::table;
  }
  /// Colour on stdout (auto: a terminal and NO_COLOR unset or empty).
  bool color_stdout() const;
  bool color_stderr() const;
};

/// The URL from -d, SQLOCK_DATABASE_URL, DATABASE_URL, or libpq's PG* variables (an otherwise
/// empty libpq conninfo that libpq completes from them). Throws exit_error(config) when none.
std::string resolve_database_url(const globals& g);
/// The backend kind ("sqlite"/"postgresql") a URL names, without opening it; throws
/// exit_error(config) for a bad URL.
std::string url_backend_kind(const std::string& url);

/// Whether `url` names a SQLite file (a path, not a file: URI) that does not exist.
bool sqlite_file_missing(const std::string& url);

/// A client for the resolved URL. Throws exit_error(config) for a bad URL, and (unless
/// `may_create`: `migrate`) for a SQLite file that does not exist, which no other command
/// creates.
std::unique_ptr<client> open_client(const globals& g, bool may_create = false);
/// Client options (owner default, log hook for -v, schema) for the resolved URL.
client_options make_client_options(const globals& g);

/// Maps a library error to an exit code, centrally (the table in docs/design.md, section 6).
int exit_code_for(const error& e) noexcept;

/// "500ms", "30s", "5m", "1h", "2d", "1m30s", "1.5s"; throws exit_error(usage) naming `what`.
std::chrono::milliseconds parse_duration(std::string_view text, std::string_view what);
/// "12.3s", "3m", "3m12s", "2h5m", "1d4h", "250ms".
std::string format_duration(std::chrono::milliseconds d);
/// RFC 3339, UTC, milliseconds: "2026-11-22T13:45:12.123Z".
std::string format_time(std::chrono::system_clock::time_point t);
/// Seconds as a double (JSON durations).
double seconds(std::chrono::milliseconds d);

/// A record as JSON (docs/cli.md, "JSON output"), with "kind": "lock".
nlohmann::json to_json(const lock_record& r);
/// A semaphore as JSON, with "kind": "semaphore", its holders and its waiters.
nlohmann::json to_json(const semaphore_record& r);
/// "expires in 12.3s" / "free for 3m".
std::string describe_expiry(const lock_record& r);
/// "full", "held" or "free".
const char* semaphore_state(const semaphore_record& r);
/// "2 of 3 units", or "readers/writer: 2 readers" style text for `max_semaphore_limit`.
std::string describe_usage(const semaphore_record& r);

/// Escapes control characters so that names and metadata cannot drive the terminal.
std::string printable(std::string_view s);

/// ANSI styling, applied only when `on`.
std::string style(bool on, const char* sgr, const std::string& text);
inline constexpr const char* bold = "1";
inline constexpr const char* dim = "2";
inline constexpr const char* red = "31";
inline constexpr const char* green = "32";
inline constexpr const char* yellow = "33";

/// Prints a table: columns padded to their widest cell; `colors[i]` styles column i of data rows.
void print_table(std::FILE* out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows,
                 const std::vector<std::vector<const char*>>& styles, bool color);

/// Writes `j` to stdout as one document followed by a newline.
void print_json(const nlohmann::json& j);

/// A diagnostic on stderr ("sqlock: ..."), unless -q for `info`.
void info(const globals& g, const std::string& message);
void warn(const globals& g, const std::string& message);

/// Asks a yes/no question on the terminal (stdin and stderr). Returns std::nullopt when stdin
/// is not a terminal.
std::optional<bool> confirm(const std::string& question);

/// Overwrites the password of `url` wherever it appears in argv (in place, same length), so
/// /proc/PID/cmdline and ps no longer show it.
void scrub_password(int argc, char** argv, const std::string& url);

// Subcommand registration (one file each).
void add_list(CLI::App& app, globals& g);
void add_show(CLI::App& app, globals& g);
void add_watch(CLI::App& app, globals& g);
void add_release(CLI::App& app, globals& g);
void add_purge(CLI::App& app, globals& g);
void add_migrate(CLI::App& app, globals& g);
void add_run(CLI::App& app, globals& g);
void add_elect(CLI::App& app, globals& g);
void add_history(CLI::App& app, globals& g);
void add_version(CLI::App& app, globals& g);

/// What `list` and `watch` show: locks, semaphores or both.
enum class listing_kinds { both, locks, semaphores };

/// `list`'s output (shared with `watch`): the lock table, then (when there are semaphores, or
/// only semaphores are asked for) the semaphore table; or one JSON document with "locks" and/or
/// "semaphores".
void print_listing(const globals& g, listing_kinds kinds, const std::vector<lock_record>& locks,
                   const std::vector<semaphore_record>& semaphores);

}  // namespace sqlock::cli
