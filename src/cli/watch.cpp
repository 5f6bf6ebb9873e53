// SPDX-License-Identifier: Apache-2.0
// `sqlock watch`: `list`, refreshed until interrupted.

#include <signal.h>
#include <unistd.h>

#include <ctime>

#include <fmt/chrono.h>
#include <fmt/core.h>

#include "common.hpp"

namespace sqlock::cli {

namespace {

struct watch_options {
  std::string interval = "2s";
  bool held = false;
  bool locks_only = false;
  bool semaphores_only = false;
  std::string prefix;
  std::size_t count = 0;  // 0: until interrupted
};

int run_watch(const globals& g, const watch_options& o) {
  auto interval = parse_duration(o.interval, "--interval");
  if (interval < std::chrono::milliseconds{100}) usage_error("--interval: at least 100ms");
  // SIGINT/SIGTERM end the loop cleanly: blocked before the client starts any thread, and
  // taken synchronously with sigtimedwait between frames.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto c = open_client(g);
  list_filter filter;
  filter.prefix = o.prefix;
  if (o.held) filter.show = list_filter::which::held;
  const listing_kinds kinds = o.locks_only        ? listing_kinds::locks
                              : o.semaphores_only ? listing_kinds::semaphores
                                                  : listing_kinds::both;
  const bool tty = isatty(STDOUT_FILENO) == 1 && g.format() == output_format::table;
  const std::string where =
      std::string(c->get_backend()->kind()) + " " + c->get_backend()->describe();
  for (std::size_t frame = 1;; ++frame) {
    std::vector<lock_record> locks;
    std::vector<semaphore_record> semaphores;
    std::string failure;
    try {
      if (kinds != listing_kinds::semaphores) locks = c->list(filter);
      if (kinds != listing_kinds::locks) semaphores = c->list_semaphores(filter);
    } catch (const error& e) {
      // A live view rides out outages; anything else (schema, usage) ends it.
      if (e.code() != errc::unavailable) throw;
      failure = e.what();
    }
    if (tty) std::fputs("\x1b[H\x1b[2J", stdout);
    if (g.format() == output_format::table) {
      std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      print(stdout, "{}\n",
            style(g.color_stdout(), dim,
                  fmt::format("Every {}: sqlock list on {}  ({:%H:%M:%S}{})",
                              format_duration(interval), printable(where), tm,
                              tty ? ", Ctrl-C to stop" : "")));
      if (failure.empty()) print_listing(g, kinds, locks, semaphores);
      print(stdout, "{}", tty ? "" : "\n");
    } else if (failure.empty()) {
      print_listing(g, kinds, locks, semaphores);
    }
    std::fflush(stdout);
    if (!failure.empty()) print(stderr, "sqlock: {}\n", failure);
    if (o.count != 0 && frame >= o.count) break;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    if (sigtimedwait(&stop, nullptr, &ts) > 0) break;
  }
  return exit_code::ok;
}

}  // namespace

void add_watch(CLI::App& app, globals& g) {
  auto o = std::make_shared<watch_options>();
  auto* sub = app.add_subcommand("watch",
                                 "Show `list` (locks and semaphores), refreshed until interrupted");
  sub->add_option("-i,--interval", o->interval, "Time between refreshes (default 2s)")
      ->type_name("DURATION");
  sub->add_flag("--held", o->held, "Only locks that are held, semaphores with a holder");
  auto* locks = sub->add_flag("--locks", o->locks_only, "Only locks");
  auto* semaphores = sub->add_flag("--semaphores", o->semaphores_only, "Only semaphores");
  locks->excludes(semaphores);
  sub->add_option("--prefix", o->prefix, "Only names starting with these bytes")->type_name("P");
  sub->add_option("--count", o->count, "Stop after N refreshes (default: until Ctrl-C)")
      ->type_name("N");
  sub->footer(
      "On a terminal the screen is redrawn; otherwise each refresh is printed after the last\n"
      "(with -o json: one document per line, as `list -o json`). Ctrl-C (or SIGTERM) exits 0.\n"
      "\n"
      "Examples:\n"
      "  sqlock watch\n"
      "  sqlock watch --held --interval 500ms\n"
      "  sqlock watch --semaphores --prefix pool-");
  sub->callback([&g, o] { g.action = [&g, o] { return run_watch(g, *o); }; });
}

}  // namespace sqlock::cli
