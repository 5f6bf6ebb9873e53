// SPDX-License-Identifier: Apache-2.0
#include "common.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <iterator>
#include <limits>

#include <fmt/chrono.h>
#include <fmt/core.h>
#include <fmt/format.h>

#include <sqlock/url.hpp>
#include <sqlock/validate.hpp>

namespace sqlock::cli {

namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

bool color_for(const std::string& mode, int fd) {
  if (mode == "always") return true;
  if (mode == "never") return false;
  if (env_set("NO_COLOR")) return false;
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::strcmp(term, "dumb") == 0) return false;
  return isatty(fd) == 1;
}

// Display width of UTF-8 text, counting code points (good enough for names and owners).
std::size_t width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

}  // namespace

bool globals::color_stdout() const { return color_for(color, STDOUT_FILENO); }
bool globals::color_stderr() const { return color_for(color, STDERR_FILENO); }

std::string resolve_database_url(const globals& g) {
  if (!g.database_url.empty()) return g.database_url;
  for (const char* name : {"SQLOCK_DATABASE_URL", "DATABASE_URL"}) {
    if (env_set(name)) return std::getenv(name);
  }
  // libpq completes an (otherwise empty) conninfo from PGHOST, PGDATABASE, PGSERVICE, ...;
  // the library needs a string it recognises as a conninfo, hence one harmless keyword.
  for (const char* name : {"PGSERVICE", "PGHOST", "PGHOSTADDR", "PGDATABASE", "PGPORT", "PGUSER"}) {
    if (env_set(name)) return "fallback_application_name=sqlock";
  }
  throw exit_error(exit_code::config,
                   "no database: pass -d URL, or set SQLOCK_DATABASE_URL, DATABASE_URL or "
                   "libpq's PG* variables (PGHOST, PGDATABASE, PGSERVICE, ...)");
}

std::string url_backend_kind(const std::string& url) {
  try {
    auto parsed = sqlock::parse_database_url(url);
    switch (parsed.backend) {
      case sqlock::parsed_url::kind::sqlite:
        return "sqlite";
      case sqlock::parsed_url::kind::memory:
        return "memory";
      case sqlock::parsed_url::kind::mariadb:
        return "mariadb";
      case sqlock::parsed_url::kind::postgresql:
        break;
    }
    return "postgresql";
  } catch (const error& e) {
    throw exit_error(exit_code::config, e.what());
  }
}

client_options make_client_options(const globals& g) {
  client_options options;
  if (!g.schema.empty()) options.backend.schema = g.schema;
  const bool quiet = g.quiet;
  const int verbose = g.verbose;
  // Warnings (e.g. a server without durable commits) are worth seeing by default; -v adds the
  // library's info messages, -vv its debug messages.
  options.log = [quiet, verbose](log_level level, std::string_view message) {
    bool show = false;
    switch (level) {
      case log_level::error:
      case log_level::warn:
        show = !quiet || verbose > 0;
        break;
      case log_level::info:
        show = verbose >= 1;
        break;
      case log_level::debug:
        show = verbose >= 2;
        break;
    }
    if (!show) return;
    std::string line =
        "sqlock: [" + std::string(to_string(level)) + "] " + printable(message) + "\n";
    // One write per line, so lines from different threads do not interleave.
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
  };
  return options;
}

bool sqlite_file_missing(const std::string& url) {
  auto parsed = sqlock::parse_database_url(url);
  struct stat st {};
  return parsed.backend == sqlock::parsed_url::kind::sqlite && !parsed.uri &&
         ::stat(parsed.location.c_str(), &st) != 0 && errno == ENOENT;
}

std::unique_ptr<client> open_client(const globals& g, bool may_create) {
  std::string url = resolve_database_url(g);
  try {
    if (!may_create && sqlite_file_missing(url))
      throw exit_error(exit_code::config,
                       "no SQLite database at " +
                           printable(sqlock::parse_database_url(url).location) +
                           ": `sqlock migrate up` creates it (no other command does)");
    return std::make_unique<client>(url, make_client_options(g));
  } catch (const error& e) {
    // Opening only parses the URL and picks the backend: any failure is configuration.
    if (e.code() == errc::invalid_argument) throw exit_error(exit_code::config, e.what());
    throw;
  }
}

int exit_code_for(const error& e) noexcept {
  switch (e.code()) {
    case errc::unavailable:
    case errc::in_doubt:
      return exit_code::unavailable;
    case errc::schema_mismatch:
      return exit_code::config;
    case errc::lease_lost:
      return exit_code::lease_lost;
    case errc::invalid_argument:
      // A complaint from the database itself (SQLite "file is not a database", a libpq
      // conninfo error, missing privileges) is configuration; a rejected name, ttl or metadata
      // is a usage error, and so is a value PostgreSQL rejects as data (SQLSTATE classes 22
      // and 23: e.g. a semaphore limit other than its live holders', raised by the server).
      if (e.sqlstate().rfind("22", 0) == 0 || e.sqlstate().rfind("23", 0) == 0)
        return exit_code::usage;
      if (!e.sqlstate().empty()) return exit_code::config;
      if (std::strstr(e.what(), "database URL") != nullptr) return exit_code::config;
      return exit_code::usage;
    case errc::usage:
    case errc::cancelled:
    case errc::internal:
      return exit_code::internal;
  }
  return exit_code::internal;
}

std::chrono::milliseconds parse_duration(std::string_view text, std::string_view what) {
  auto bad = [&]() -> std::chrono::milliseconds {
    usage_error(std::string(what) + ": invalid duration '" + printable(text) +
                "' (use e.g. 500ms, 30s, 5m, 1h, 1m30s)");
  };
  if (text.empty()) return bad();
  if (text == "0") return std::chrono::milliseconds{0};
  double total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    bool dot = false;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
      if (text[i] == '.') dot = true;
      ++i;
    }
    if (i == start || (i == start + 1 && dot)) return bad();
    double value = std::strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
    std::size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    double factor = 0;
    if (unit == "ms")
      factor = 1;
    else if (unit == "s")
      factor = 1000;
    else if (unit == "m")
      factor = 60'000;
    else if (unit == "h")
      factor = 3'600'000;
    else if (unit == "d")
      factor = 86'400'000;
    else
      return bad();
    total_ms += value * factor;
  }
  // Ten years is far beyond any ttl, wait or horizon and keeps the value exact.
  if (!std::isfinite(total_ms) || total_ms > 3.2e11) return bad();
  return std::chrono::milliseconds{static_cast<std::int64_t>(std::llround(total_ms))};
}

std::string format_duration(std::chrono::milliseconds d) {
  std::int64_t ms = d.count();
  if (ms < 0) ms = -ms;
  if (ms < 1000) return fmt::format("{}ms", ms);
  // Truncate (not round) so that "expires in" never overstates the time left.
  if (ms < 60'000) return fmt::format("{}.{}s", ms / 1000, (ms % 1000) / 100);
  std::int64_t s = ms / 1000;
  std::int64_t days = s / 86400, hours = (s / 3600) % 24, minutes = (s / 60) % 60, secs = s % 60;
  // The two largest units, each only when not zero (also truncated): "1d4h", "2h", "3m12s".
  fmt::memory_buffer out;
  auto part = [&](std::int64_t v, const char* unit) {
    if (v != 0) fmt::format_to(std::back_inserter(out), "{}{}", v, unit);
  };
  if (days > 0) {
    part(days, "d");
    part(hours, "h");
  } else if (hours > 0) {
    part(hours, "h");
    part(minutes, "m");
  } else {
    part(minutes, "m");
    part(secs, "s");
  }
  return fmt::to_string(out);
}

std::string format_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto ms_since = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ms_since / 1000;
  std::int64_t ms = ms_since % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:%FT%T}.{:03}Z", tm, ms);
}

double seconds(std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; }

nlohmann::json to_json(const lock_record& r) {
  return nlohmann::json{{"kind", "lock"},
                        {"name", r.name},
                        {"owner", r.owner},
                        {"token", r.token},
                        {"acquired_at", format_time(r.acquired_at)},
                        {"expires_at", format_time(r.expires_at)},
                        {"expires_in_seconds", seconds(r.expires_in)},
                        {"held", r.held},
                        {"queued", r.queued},
                        {"metadata", r.metadata}};
}

nlohmann::json to_json(const semaphore_record& r) {
  auto holders = nlohmann::json::array();
  for (const auto& h : r.holders)
    holders.push_back({{"owner", h.owner},
                       {"token", h.token},
                       {"count", h.count},
                       {"acquired_at", format_time(h.acquired_at)},
                       {"expires_at", format_time(h.expires_at)},
                       {"expires_in_seconds", seconds(h.expires_in)},
                       {"metadata", h.metadata}});
  auto waiters = nlohmann::json::array();
  for (const auto& w : r.waiters)
    waiters.push_back({{"ticket", w.ticket},
                       {"owner", w.owner},
                       {"count", w.count},
                       {"expires_in_seconds", seconds(w.expires_in)}});
  return nlohmann::json{
      {"kind", "semaphore"},        {"name", r.name},     {"limit", r.limit},  {"used", r.used},
      {"held", !r.holders.empty()}, {"holders", holders}, {"waiters", waiters}};
}

const char* semaphore_state(const semaphore_record& r) {
  if (r.holders.empty()) return "free";
  return r.used >= r.limit ? "full" : "held";
}

std::string describe_usage(const semaphore_record& r) {
  if (r.limit == max_semaphore_limit) {
    // The readers/writer convention: shared = 1 unit, exclusive = all of them.
    if (r.holders.empty()) return "readers/writer lock, free";
    if (r.used >= r.limit) return "readers/writer lock, held exclusively";
    return fmt::format("readers/writer lock, shared by {}", r.holders.size());
  }
  return fmt::format("{} of {} units used", r.used, r.limit);
}

std::string describe_expiry(const lock_record& r) {
  if (r.held) return "expires in " + format_duration(r.expires_in);
  return "free for " + format_duration(-r.expires_in);
}

std::string printable(std::string_view s) {
  // One escaping for the library's messages and the tool's output: control characters and
  // invalid UTF-8 never reach the terminal raw.
  return sqlock::printable(s);
}

std::string style(bool on, const char* sgr, const std::string& text) {
  if (!on || sgr == nullptr) return text;
  return std::string("\x1b[") + sgr + "m" + text + "\x1b[0m";
}

void print_table(std::FILE* out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows,
                 const std::vector<std::vector<const char*>>& styles, bool color) {
  std::vector<std::size_t> widths(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) widths[c] = width(header[c]);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], width(row[c]));
  auto emit = [&](const std::vector<std::string>& cells, const std::vector<const char*>* sgr,
                  bool is_header) {
    fmt::memory_buffer line;
    // Up to the last non-empty cell: a line never ends in blanks.
    std::size_t n = cells.size();
    while (n > 0 && cells[n - 1].empty()) --n;
    for (std::size_t c = 0; c < n; ++c) {
      // Padded by display width (width(), not fmt's: cells hold UTF-8 text), to the column's
      // width plus two spaces; no padding after the last cell printed.
      const std::size_t pad = c + 1 < n ? widths[c] - width(cells[c]) + 2 : 0;
      const char* s = is_header ? bold : (sgr && c < sgr->size() ? (*sgr)[c] : nullptr);
      fmt::format_to(std::back_inserter(line), "{}",
                     style(color, s, fmt::format("{}{:{}}", cells[c], "", pad)));
    }
    print(out, "{}\n", fmt::to_string(line));
  };
  emit(header, nullptr, true);
  for (std::size_t i = 0; i < rows.size(); ++i)
    emit(rows[i], i < styles.size() ? &styles[i] : nullptr, false);
  std::fflush(out);
}

void write(std::FILE* out, std::string_view text) noexcept {
  // A short write sets the stream's error flag, which main checks.
  std::fwrite(text.data(), 1, text.size(), out);
}

void print_json(const nlohmann::json& j) {
  std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  print(stdout, "{}\n", text);
  std::fflush(stdout);
}

void info(const globals& g, const std::string& message) {
  if (g.quiet) return;
  print(stderr, "sqlock: {}\n", message);
}

void warn(const globals& g, const std::string& message) {
  print(stderr, "sqlock: {}{}\n", style(g.color_stderr(), yellow, "warning: "), message);
}

std::optional<bool> confirm(const std::string& question) {
  if (isatty(STDIN_FILENO) != 1) return std::nullopt;
  print(stderr, "{} [y/N] ", question);
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes" || answer == "YES" || answer == "Yes";
}

void scrub_password(int argc, char** argv, const std::string& url) {
  // The library's parser: what it hides in messages is what disappears from argv.
  auto ranges = sqlock::secret_ranges(url);
  if (ranges.empty()) return;
  std::string masked = url;
  for (auto [pos, len] : ranges)
    for (std::size_t i = pos; i < pos + len && i < masked.size(); ++i) masked[i] = '*';
  // The value may stand alone (-d URL), or follow "--database-url=" or "-d" in one argument.
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    std::size_t len = std::strlen(arg);
    for (char* hit = arg;
         (hit = static_cast<char*>(memmem(hit, len - static_cast<std::size_t>(hit - arg),
                                          url.data(), url.size()))) != nullptr;
         hit += url.size()) {
      std::memcpy(hit, masked.data(), masked.size());
    }
  }
}

}  // namespace sqlock::cli
