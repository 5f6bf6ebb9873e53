// `sqlock run NAME -- CMD...`: flock(1) across machines. Holds the lock while CMD runs, keeps
// the lease alive, and stops CMD before the lease can pass to anyone else.
//
// Design: every signal the tool cares about (INT, TERM, HUP, CHLD, and USR1 as an internal
// wake-up) is blocked before the client starts its threads, so all threads inherit the mask and
// one signal thread takes them synchronously with sigtimedwait. Before CMD starts, a signal
// cancels the wait (client::shutdown); once CMD runs, it is forwarded to CMD's process group.
// The main thread forks CMD (fork + immediate exec: the child calls only async-signal-safe
// functions, since the client's threads exist by then) and supervises it: it reaps CMD, and
// watches the lease, woken through a pipe by the signal thread and by on_lost, and on a short
// timer for the at-risk deadline, which no event announces.

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "common.hpp"
#include "validate.hpp"

extern char** environ;

namespace sqlock::cli {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

struct run_options {
  std::string name;
  std::string ttl = "30s";
  std::string wait;
  bool nonblock = false;
  std::string metadata;
  int conflict_exit_code = exit_code::busy;
  std::string kill_grace;  // empty: 5s, or ttl/3 if shorter
  std::vector<std::string> command;
};

// State shared by the main thread, the signal thread and on_lost (a sqlock thread).
struct supervisor {
  supervisor() {
    if (pipe2(wake_fds, O_CLOEXEC | O_NONBLOCK) != 0)
      throw exit_error(exit_code::internal, std::string("pipe: ") + std::strerror(errno));
  }
  ~supervisor() {
    ::close(wake_fds[0]);
    ::close(wake_fds[1]);
  }
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  void wake() noexcept {
    char b = 1;
    [[maybe_unused]] auto n = ::write(wake_fds[1], &b, 1);
  }
  void drain() noexcept {
    char buf[64];
    while (::read(wake_fds[0], buf, sizeof buf) > 0) {
    }
  }

  int wake_fds[2] = {-1, -1};
  std::mutex mu;             // guards the fields below
  pid_t child_pgid = 0;      // 0 until CMD runs
  int pending_signal = 0;    // a signal received before CMD ran
  client* owner = nullptr;   // shut down by a signal that arrives while waiting
  bool lost = false;
  std::string lost_reason;
  std::atomic<bool> stop{false};
};

sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1}) sigaddset(&set, s);
  return set;
}

void signal_loop(supervisor& sv) {
  sigset_t set = handled_signals();
  while (!sv.stop.load()) {
    int sig = sigwaitinfo(&set, nullptr);
    if (sig <= 0 || sig == SIGUSR1) continue;
    if (sig == SIGCHLD) {
      sv.wake();
      continue;
    }
    client* cancel = nullptr;
    {
      std::lock_guard<std::mutex> lock(sv.mu);
      if (sv.child_pgid > 0) {
        ::kill(-sv.child_pgid, sig);
      } else if (sv.pending_signal == 0) {
        sv.pending_signal = sig;
        cancel = sv.owner;
      }
    }
    // Outside the mutex: shutdown releases leases and wakes the waiting main thread.
    if (cancel != nullptr) cancel->shutdown();
    sv.wake();
  }
}

// PATH lookup done before forking (execvp may allocate, which a forked child of a threaded
// process must not). Returns the path, or empty with `err` set to ENOENT or EACCES.
std::string find_executable(const std::string& file, int& err) {
  err = 0;
  if (file.find('/') != std::string::npos) return file;
  const char* path_env = std::getenv("PATH");
  std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  bool denied = false;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + file;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      denied = true;
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  err = denied ? EACCES : ENOENT;
  return {};
}

int status_to_exit(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return exit_code::internal;
}

// Starts CMD in its own process group, tied to our death. Returns its pid, or -1 with
// `exec_errno` set when it could not be executed.
pid_t start_child(const std::string& path, const std::vector<std::string>& command,
                  const std::vector<std::string>& env, const sigset_t& original_mask,
                  int& exec_errno) {
  std::vector<char*> argv;
  for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const char* exe = path.c_str();
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0)
    throw exit_error(exit_code::internal, std::string("pipe: ") + std::strerror(errno));
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    throw exit_error(exit_code::internal, std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only, then exec.
    ::setpgid(0, 0);
    // If sqlock dies (even by SIGKILL), CMD must not keep working under an expiring lease.
    // The signal follows the death of the forking thread: the main thread, which lives as long
    // as the process.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(exit_code::lease_lost);
    ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
    ::close(err_pipe[0]);
    ::execve(exe, argv.data(), envp.data());
    int e = errno;
    [[maybe_unused]] auto n = ::write(err_pipe[1], &e, sizeof e);
    _exit(e == ENOENT ? 127 : 126);
  }
  // Also set here, so that signals forwarded right away reach the group.
  ::setpgid(pid, pid);
  ::close(err_pipe[1]);
  int e = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof e)) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    exec_errno = e;
    return -1;
  }
  return pid;
}

std::string holder_description(client& c, const std::string& name) {
  try {
    if (auto r = c.inspect(name); r && r->held)
      return ": held by " + printable(r->owner) + " (token " + std::to_string(r->token) + ", " +
             describe_expiry(*r) + ")";
  } catch (const error&) {
  }
  return "";
}

int run_run(const globals& g, const run_options& o) {
  if (o.command.empty()) usage_error("run: no command given (sqlock run NAME [options] -- CMD [ARGS...])");
  if (o.conflict_exit_code < 0 || o.conflict_exit_code > 255)
    usage_error("--conflict-exit-code: must be 0..255");
  lock_options lo;
  lo.ttl = parse_duration(o.ttl, "--ttl");
  lo.metadata = o.metadata;
  // The default grace is capped at ttl/3 so that with a short ttl a single failed renewal does
  // not stop the command at once.
  const milliseconds grace = o.kill_grace.empty() ? std::min<milliseconds>(milliseconds{5000}, lo.ttl / 3)
                                                  : parse_duration(o.kill_grace, "--kill-grace");
  std::optional<milliseconds> wait;
  if (!o.wait.empty()) wait = parse_duration(o.wait, "--wait");
  detail::validate_name(o.name);
  detail::validate_ttl(lo.ttl);
  detail::validate_metadata(lo.metadata);
  if (!o.kill_grace.empty() && grace >= lo.ttl * 2 / 3)
    warn(g, "--kill-grace " + format_duration(grace) + " is not well under --ttl " +
                format_duration(lo.ttl) + ": one failed renewal will stop the command");

  // Fail fast, before taking the lock, if CMD cannot be found.
  int lookup_errno = 0;
  const std::string path = find_executable(o.command[0], lookup_errno);
  if (path.empty()) {
    bool missing = lookup_errno == ENOENT;
    throw exit_error(missing ? 127 : 126, printable(o.command[0]) +
                                              (missing ? ": command not found" : ": permission denied"));
  }

  // A reaped-automatically SIGCHLD (inherited SIG_IGN) would hide CMD's status.
  ::signal(SIGCHLD, SIG_DFL);
  sigset_t set = handled_signals();
  sigset_t original;
  pthread_sigmask(SIG_BLOCK, &set, &original);

  auto sv = std::make_shared<supervisor>();
  lo.on_lost = [sv](const lost_event& e) {
    {
      std::lock_guard<std::mutex> lock(sv->mu);
      sv->lost = true;
      sv->lost_reason = e.reason;
    }
    sv->wake();
  };

  auto c = open_client(g);
  {
    std::lock_guard<std::mutex> lock(sv->mu);
    sv->owner = c.get();
  }
  std::thread signals([sv] { signal_loop(*sv); });
  struct joiner {
    std::thread& t;
    supervisor& sv;
    ~joiner() {
      sv.stop.store(true);
      pthread_kill(t.native_handle(), SIGUSR1);
      t.join();
    }
  } join_signals{signals, *sv};

  auto interrupted = [&]() -> int {
    std::lock_guard<std::mutex> lock(sv->mu);
    return sv->pending_signal;
  };

  std::optional<lease> held;
  try {
    if (o.nonblock)
      held = c->try_acquire(o.name, lo);
    else if (wait)
      held = c->try_acquire_for(o.name, *wait, lo);
    else
      held = c->acquire(o.name, lo);
  } catch (const error& e) {
    if (int sig = interrupted(); sig != 0) {
      info(g, std::string("interrupted (") + strsignal(sig) + ") while waiting for '" +
                  printable(o.name) + "'");
      return 128 + sig;
    }
    throw;
  }
  if (!held) {
    if (!g.quiet)
      info(g, "'" + printable(o.name) + "' is busy" + holder_description(*c, o.name) +
                  (wait ? " (waited " + format_duration(*wait) + ")" : ""));
    return o.conflict_exit_code;
  }

  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    if (v.rfind("SQLOCK_LOCK_NAME=", 0) == 0 || v.rfind("SQLOCK_LOCK_TOKEN=", 0) == 0 ||
        v.rfind("SQLOCK_LOCK_OWNER=", 0) == 0)
      continue;
    env.emplace_back(v);
  }
  env.push_back("SQLOCK_LOCK_NAME=" + o.name);
  env.push_back("SQLOCK_LOCK_TOKEN=" + std::to_string(held->token()));
  env.push_back("SQLOCK_LOCK_OWNER=" + c->owner());

  pid_t pid = -1;
  int exec_errno = 0;
  {
    // Under the mutex, so a signal either cancels before CMD starts or is forwarded to it.
    std::lock_guard<std::mutex> lock(sv->mu);
    if (sv->pending_signal == 0) {
      pid = start_child(path, o.command, env, original, exec_errno);
      if (pid > 0) sv->child_pgid = pid;
    }
  }
  if (int sig = interrupted(); sig != 0 && pid <= 0) {
    info(g, std::string("interrupted (") + strsignal(sig) + ") before the command started");
    return 128 + sig;
  }
  if (pid < 0) {
    held->release();
    throw exit_error(exec_errno == ENOENT ? 127 : 126,
                     printable(o.command[0]) + ": " + std::strerror(exec_errno));
  }
  if (g.verbose > 0)
    info(g, "acquired '" + printable(o.name) + "' (token " + std::to_string(held->token()) +
                "); running " + printable(o.command[0]) + " as pid " + std::to_string(pid));

  int status = 0;
  bool terminating = false, killed = false;
  steady::time_point kill_at{};
  std::string why;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw exit_error(exit_code::internal, std::string("waitpid: ") + std::strerror(errno));
    auto now = steady::now();
    if (!terminating) {
      std::string reason;
      {
        std::lock_guard<std::mutex> lock(sv->mu);
        if (sv->lost) reason = sv->lost_reason;
      }
      if (reason.empty() && held->lost()) reason = "lost";
      if (!reason.empty()) {
        terminating = true;
        why = "lease lost (" + reason + ")";
        kill_at = now + grace;
      } else if (held->state() == lease_state::at_risk) {
        // Renewals are failing: CMD must be dead by the safety deadline, so the stop sequence
        // starts a grace period before it.
        auto left = held->remaining();
        if (left <= grace) {
          terminating = true;
          why = "renewals failing; the lease's safety deadline is in " + format_duration(left);
          kill_at = now + left;
        }
      }
      if (terminating) {
        warn(g, "'" + printable(o.name) + "' (token " + std::to_string(held->token()) + "): " +
                    why + ": stopping the command (SIGTERM, SIGKILL after " +
                    format_duration(std::chrono::duration_cast<milliseconds>(kill_at - now)) + ")");
        ::kill(-pid, SIGTERM);
      }
    }
    if (terminating && !killed && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
    milliseconds timeout{50};
    if (terminating && !killed)
      timeout = std::min(timeout, std::chrono::duration_cast<milliseconds>(kill_at - now) + milliseconds{1});
    pollfd pfd{sv->wake_fds[0], POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::max<milliseconds::rep>(timeout.count(), 0)));
    sv->drain();
  }
  {
    std::lock_guard<std::mutex> lock(sv->mu);
    sv->child_pgid = 0;
  }

  if (terminating && !held->lost()) {
    // Stopped because renewals were failing: the lease ends at its safety deadline unless a
    // renewal gets through first. Releasing now would only block on the unresponsive
    // database, so wait for the outcome (remaining() is bounded by the deadline).
    auto until = steady::now() + held->remaining() + milliseconds{200};
    while (!held->lost() && held->state() == lease_state::at_risk && steady::now() < until) {
      pollfd pfd{sv->wake_fds[0], POLLIN, 0};
      ::poll(&pfd, 1, 10);
      sv->drain();
    }
  }
  if (terminating || held->lost()) {
    // Whatever is left of CMD's process group must not outlive the lease either.
    ::kill(-pid, SIGKILL);
    if (!terminating) why = "lease lost";
    throw exit_error(exit_code::lease_lost, "'" + printable(o.name) + "' (token " +
                                                std::to_string(held->token()) + "): " + why +
                                                "; the command was stopped");
  }
  try {
    held->release();
  } catch (const error& e) {
    warn(g, std::string("release failed (the lease expires by itself): ") + e.what());
  }
  return status_to_exit(status);
}

}  // namespace

void add_run(CLI::App& app, globals& g) {
  auto o = std::make_shared<run_options>();
  auto* sub = app.add_subcommand("run", "Run a command while holding a lock (flock(1) across machines)");
  sub->add_option("name", o->name, "Lock name")->required();
  sub->add_option("command", o->command, "The command and its arguments, after --")->type_name("CMD...");
  sub->add_option("--ttl", o->ttl, "Lease length, renewed every ttl/3 while CMD runs (default 30s)")
      ->type_name("DURATION");
  auto* wait = sub->add_option("--wait", o->wait, "Give up after waiting this long (default: wait forever)")
                   ->type_name("DURATION");
  auto* nb = sub->add_flag("-n,--nonblock", o->nonblock, "Do not wait: exit at once if the lock is busy");
  wait->excludes(nb);
  sub->add_option("--metadata", o->metadata, "Text stored in the lock row, shown by `list`")
      ->type_name("TEXT");
  sub->add_option("--conflict-exit-code", o->conflict_exit_code,
                  "Exit code when the lock is busy or the wait times out (default 1)")
      ->type_name("N");
  sub->add_option("--kill-grace", o->kill_grace,
                  "Time between SIGTERM and SIGKILL when the lease is lost (default 5s, or ttl/3 if shorter)")
      ->type_name("DURATION");
  sub->footer(
      "CMD runs directly (no shell) in its own process group, with stdio inherited and\n"
      "SQLOCK_LOCK_NAME, SQLOCK_LOCK_TOKEN (the fencing token) and SQLOCK_LOCK_OWNER in its\n"
      "environment. SIGINT, SIGTERM and SIGHUP are forwarded to it. If the lease is lost, CMD's\n"
      "process group gets SIGTERM, then SIGKILL after --kill-grace, and sqlock exits 75; while\n"
      "renewals fail, that starts --kill-grace before the lease's safety deadline. CMD is killed\n"
      "if sqlock itself dies.\n"
      "Exit: CMD's status (128+N if killed by signal N; 126 cannot execute; 127 not found);\n"
      "1 (or --conflict-exit-code) if busy or timed out; 75 lease lost.\n"
      "\n"
      "Examples:\n"
      "  sqlock run nightly-report -n -- /usr/local/bin/report --full\n"
      "  sqlock run deploy --wait 5m --ttl 1m -- make deploy\n"
      "  # crontab: at most one instance across all hosts, quietly skipping when busy\n"
      "  */5 * * * * sqlock -q run sync-orders -n --conflict-exit-code 0 -- /opt/app/sync");
  sub->callback([&g, o] { g.action = [&g, o] { return run_run(g, *o); }; });
}

}  // namespace sqlock::cli
