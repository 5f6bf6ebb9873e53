// SPDX-License-Identifier: Apache-2.0
// See supervise.hpp.

#include "supervise.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>

extern char** environ;

namespace sqlock::cli {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

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
  // Sleeps until woken or `timeout`, then drains the wake-ups.
  void sleep(milliseconds timeout) noexcept {
    pollfd pfd{wake_fds[0], POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::max<milliseconds::rep>(timeout.count(), 0)));
    drain();
  }

  int wake_fds[2] = {-1, -1};
  std::mutex mu;            // guards the fields below
  pid_t child_pgid = 0;     // 0 unless CMD runs
  int pending_signal = 0;   // a signal received while no CMD ran
  client* owner = nullptr;  // shut down by a signal that arrives while waiting
  bool lost = false;
  std::string lost_reason;
  // A release request heard (lock_options::on_revoke_requested): the grace it left.
  std::optional<milliseconds> revoke_grace;
  std::map<int, std::function<void()>> handlers;  // lease_session::on_signal
  std::atomic<bool> stop{false};
};

namespace {

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
    std::function<void()> handle;
    {
      std::lock_guard<std::mutex> lock(sv.mu);
      if (auto it = sv.handlers.find(sig); it != sv.handlers.end()) handle = it->second;
    }
    if (handle) {
      handle();
      continue;
    }
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
  if (file.find('/') != std::string::npos) {
    // A path is checked too, before any lease is taken: `run r -- /nonexistent` must exit 127
    // without acquiring (and burning a token).
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      err = errno == ENOENT || errno == ENOTDIR ? ENOENT : EACCES;
      return {};
    }
    if (!S_ISREG(st.st_mode) || ::access(file.c_str(), X_OK) != 0) {
      err = EACCES;
      return {};
    }
    return file;
  }
  const char* path_env = std::getenv("PATH");
  std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  bool denied = false;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = path.find(':', start);
    std::string dir =
        path.substr(start, end == std::string::npos ? std::string::npos : end - start);
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

std::string signal_name(int sig) { return strsignal(sig); }

// The leases a command runs under (`run NAME...`), seen as one: lost when any is lost, at risk
// when any is, with the least time left; released together.
struct lease_set {
  const std::vector<lease*>& all;
  bool lost() const {
    return std::any_of(all.begin(), all.end(), [](const lease* l) { return l->lost(); });
  }
  lease_state state() const {
    if (lost()) return lease_state::lost;
    for (const lease* l : all)
      if (l->state() == lease_state::at_risk) return lease_state::at_risk;
    return all.empty() ? lease_state::released : all.front()->state();
  }
  milliseconds remaining() const {
    milliseconds least = milliseconds::max();
    for (const lease* l : all) least = std::min(least, l->remaining());
    return all.empty() ? milliseconds::zero() : least;
  }
  // Releases every one; then throws the first failure.
  void release() const {
    std::exception_ptr first;
    for (lease* l : all) {
      try {
        l->release();
      } catch (const error&) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }
};

}  // namespace

std::string find_command(const std::vector<std::string>& command) {
  int lookup_errno = 0;
  std::string path = find_executable(command.at(0), lookup_errno);
  if (path.empty()) {
    bool missing = lookup_errno == ENOENT;
    throw exit_error(
        missing ? 127 : 126,
        printable(command[0]) + (missing ? ": command not found" : ": permission denied"));
  }
  return path;
}

std::vector<std::string> command_environment(
    const std::vector<std::string>& strip,
    const std::vector<std::pair<std::string, std::string>>& set) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    bool drop = false;
    for (const auto& s : strip) drop = drop || v.rfind(s + "=", 0) == 0;
    for (const auto& kv : set) drop = drop || v.rfind(kv.first + "=", 0) == 0;
    if (!drop) env.emplace_back(v);
  }
  for (const auto& [k, v] : set) env.push_back(k + "=" + v);
  return env;
}

milliseconds kill_grace(const globals& g, const std::string& text, milliseconds ttl) {
  // The default grace is capped at ttl/3 so that with a short ttl a single failed renewal does
  // not stop the command at once.
  if (text.empty()) return std::min<milliseconds>(milliseconds{5000}, ttl / 3);
  milliseconds grace = parse_duration(text, "--kill-grace");
  if (grace >= ttl * 2 / 3)
    warn(g, "--kill-grace " + format_duration(grace) + " is not well under --ttl " +
                format_duration(ttl) + ": one failed renewal will stop the command");
  return grace;
}

lease_session::lease_session(const globals& g) : g_(g) {
  // A reaped-automatically SIGCHLD (inherited SIG_IGN) would hide CMD's status.
  ::signal(SIGCHLD, SIG_DFL);
  sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, &original_mask_);
  sv_ = std::make_shared<supervisor>();
  client_ = open_client(g);
  {
    std::lock_guard<std::mutex> lock(sv_->mu);
    sv_->owner = client_.get();
  }
  auto sv = sv_;
  signals_ = std::thread([sv] { signal_loop(*sv); });
}

lease_session::~lease_session() {
  sv_->stop.store(true);
  pthread_kill(signals_.native_handle(), SIGUSR1);
  signals_.join();
}

void lease_session::on_signal(int sig, std::function<void()> handle) {
  std::lock_guard<std::mutex> lock(sv_->mu);
  sv_->handlers[sig] = std::move(handle);
}

std::function<void(const lost_event&)> lease_session::on_lost() {
  auto sv = sv_;
  return [sv](const lost_event& e) {
    {
      std::lock_guard<std::mutex> lock(sv->mu);
      sv->lost = true;
      sv->lost_reason = e.reason;
    }
    sv->wake();
  };
}

std::function<void(const revoke_event&)> lease_session::on_revoke_requested() {
  auto sv = sv_;
  return [sv](const revoke_event& e) {
    {
      std::lock_guard<std::mutex> lock(sv->mu);
      sv->revoke_grace = e.grace;
    }
    sv->wake();
  };
}

std::optional<lease> lease_session::acquire(const std::function<std::optional<lease>()>& acquire,
                                            const std::string& what) {
  auto interrupted = [&]() -> int {
    std::lock_guard<std::mutex> lock(sv_->mu);
    return sv_->pending_signal;
  };
  try {
    return acquire();
  } catch (const error&) {
    if (int sig = interrupted(); sig != 0) {
      info(g_, "interrupted (" + signal_name(sig) + ") while waiting for " + what);
      throw exit_error(128 + sig, "");
    }
    throw;
  }
}

int lease_session::run_command(const std::vector<lease*>& leases, const std::string& path,
                               const std::vector<std::string>& command,
                               const std::vector<std::string>& env, milliseconds grace,
                               const std::string& what) {
  lease_set held{leases};
  supervisor& sv = *sv_;
  pid_t pid = -1;
  int exec_errno = 0;
  int early_signal = 0;
  // CMD's background jobs that outlive it must end before the lease is released (see the
  // loop below). As a subreaper we become the parent of every orphan of CMD's tree, so we can
  // reap them: a process group counts its zombies as members, and a zombie reparented to an
  // init that never reaps (pid 1 of many containers) would keep kill(-pgid, 0) succeeding
  // forever. Reaping them ourselves is what lets us know the group is really gone.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  {
    // Under the mutex, so a signal either cancels before CMD starts or is forwarded to it.
    std::lock_guard<std::mutex> lock(sv.mu);
    early_signal = sv.pending_signal;
    if (early_signal == 0) {
      pid = start_child(path, command, env, original_mask_, exec_errno);
      if (pid > 0) sv.child_pgid = pid;
    }
  }
  if (early_signal != 0) {
    info(g_, "interrupted (" + signal_name(early_signal) + ") before the command started");
    throw exit_error(128 + early_signal, "");
  }
  if (pid < 0) {
    held.release();
    throw exit_error(exec_errno == ENOENT ? 127 : 126,
                     printable(command[0]) + ": " + std::strerror(exec_errno));
  }
  if (g_.verbose > 0)
    info(g_, "acquired " + what + "; running " + printable(command[0]) + " as pid " +
                 std::to_string(pid));

  // The lease is released only once CMD's whole process group is gone, not when CMD (the
  // group's leader) exits: `sh -c 'work & exit 0'` leaves `work` writing under the token. So
  // after CMD exits, its group gets --kill-grace to finish, then SIGTERM, then SIGKILL after
  // another --kill-grace, and the lease is kept alive meanwhile (its loss stops them as it
  // stops CMD). The exit status stays CMD's. What escapes: processes that leave the group
  // (setsid, setpgid), as with flock(1) any process that closes its inherited descriptor.
  int status = 0;
  bool leader_done = false;
  bool terminating = false, killed = false;
  bool revoked = false;  // stopping because a release was requested (not because it was lost)
  steady::time_point kill_at{};
  bool leftovers = false, leftovers_termed = false, leftovers_killed = false;
  steady::time_point leftovers_at{};
  std::string why;
  for (;;) {
    // Reaps CMD and every orphan handed to us (we are a subreaper), of the group or not.
    for (;;) {
      int st = 0;
      pid_t r = ::waitpid(-1, &st, WNOHANG);
      if (r == 0 || (r < 0 && errno == ECHILD)) break;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0)
        throw exit_error(exit_code::internal, std::string("waitpid: ") + std::strerror(errno));
      if (r == pid) {
        status = st;
        leader_done = true;
      }
    }
    // ESRCH: no member left, zombies included (EPERM means one exists that we may not signal).
    if (leader_done && ::kill(-pid, 0) != 0 && errno == ESRCH) break;
    auto now = steady::now();
    if (!terminating) {
      std::string reason;
      std::optional<milliseconds> revoke_grace;
      {
        std::lock_guard<std::mutex> lock(sv.mu);
        if (sv.lost) reason = sv.lost_reason;
        revoke_grace = sv.revoke_grace;
      }
      if (reason.empty() && revoke_grace && !leader_done) {
        // Someone asked us to let go (`sqlock release NAME --request`): CMD gets SIGTERM and
        // the request's grace to finish, then SIGKILL. Finished in time, its status is ours.
        revoked = terminating = true;
        // (Renewals go on up to the deadline; the lease's loss there, which comes a safety
        // margin earlier by the local clock, kills at once: see below.)
        auto left = *revoke_grace;
        why = "release requested, " + format_duration(left) + " of grace";
        kill_at = now + left;
      }
      if (!terminating && reason.empty() && held.lost()) reason = "lost";
      if (!terminating && !reason.empty()) {
        terminating = true;
        why = "lease lost (" + reason + ")";
        kill_at = now + grace;
      } else if (!terminating && held.state() == lease_state::at_risk) {
        // Renewals are failing: CMD must be dead by the safety deadline, so the stop sequence
        // starts a grace period before it.
        auto left = held.remaining();
        if (left <= grace) {
          terminating = true;
          why = "renewals failing; the lease's safety deadline is in " + format_duration(left);
          kill_at = now + left;
        }
      }
      if (terminating) {
        warn(g_, what + ": " + why + ": stopping the command (SIGTERM, SIGKILL after " +
                     format_duration(std::chrono::duration_cast<milliseconds>(kill_at - now)) +
                     ")");
        ::kill(-pid, SIGTERM);
      }
    }
    if (terminating && !killed && (now >= kill_at || (revoked && held.lost()))) {
      ::kill(-pid, SIGKILL);
      killed = true;
    }
    if (leader_done && !terminating) {
      if (!leftovers) {
        leftovers = true;
        leftovers_at = now + grace;
        if (g_.verbose > 0)
          info(g_, printable(command[0]) + " exited; waiting up to " + format_duration(grace) +
                       " (--kill-grace) for the rest of its process group before releasing " +
                       what);
      } else if (!leftovers_termed && now >= leftovers_at) {
        warn(g_, what + ": processes of the command's group still run " + format_duration(grace) +
                     " (--kill-grace) after it exited: SIGTERM, SIGKILL after " +
                     format_duration(grace) + "; the lease is released once they are gone");
        ::kill(-pid, SIGTERM);
        leftovers_termed = true;
        leftovers_at = now + grace;
      } else if (leftovers_termed && !leftovers_killed && now >= leftovers_at) {
        ::kill(-pid, SIGKILL);
        leftovers_killed = true;
      }
    }
    milliseconds timeout{50};
    if (terminating && !killed)
      timeout = std::min(timeout,
                         std::chrono::duration_cast<milliseconds>(kill_at - now) + milliseconds{1});
    sv.sleep(timeout);
  }
  {
    std::lock_guard<std::mutex> lock(sv.mu);
    sv.child_pgid = 0;
  }

  if (revoked && !killed && !held.lost()) {
    // CMD finished within the grace of a release request: release, and exit as CMD did.
    info(g_, what + ": released on request; the command finished within its grace");
    try {
      held.release();
    } catch (const error& e) {
      warn(g_, std::string("release failed (the lease expires by itself): ") + e.what());
    }
    return status_to_exit(status);
  }
  if (revoked) throw exit_error(exit_code::lease_lost, "");
  if (terminating && !held.lost()) {
    // Stopped because renewals were failing: the lease ends at its safety deadline unless a
    // renewal gets through first. Releasing now would only block on the unresponsive
    // database, so wait for the outcome (remaining() is bounded by the deadline).
    auto until = steady::now() + held.remaining() + milliseconds{200};
    while (!held.lost() && held.state() == lease_state::at_risk && steady::now() < until)
      sv.sleep(milliseconds{10});
  }
  if (terminating || held.lost()) {
    // Reported once: the warning that started the stop sequence said why.
    if (terminating) throw exit_error(exit_code::lease_lost, "");
    throw exit_error(exit_code::lease_lost, what + ": lease lost; the command was stopped");
  }
  try {
    held.release();
  } catch (const error& e) {
    warn(g_, std::string("release failed (the lease expires by itself): ") + e.what());
  }
  return status_to_exit(status);
}

int lease_session::hold(lease& held, const std::string& what,
                        const std::function<void()>& announce) {
  supervisor& sv = *sv_;
  int early_signal = 0;
  {
    // From now on a signal ends the hold rather than cancelling the client.
    std::lock_guard<std::mutex> lock(sv.mu);
    sv.owner = nullptr;
    early_signal = sv.pending_signal;
  }
  // A signal that came first shut the client down, which released the lease: the hold is over.
  if (early_signal != 0) return early_signal;
  announce();
  for (;;) {
    int sig = 0;
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(sv.mu);
      sig = sv.pending_signal;
      if (sv.lost) reason = sv.lost_reason;
    }
    bool revoke = false;
    {
      std::lock_guard<std::mutex> lock(sv.mu);
      revoke = sv.revoke_grace.has_value();
    }
    if (reason.empty() && held.lost()) reason = "lost";
    if (!reason.empty())
      throw exit_error(exit_code::lease_lost, what + ": lease lost (" + reason + ")");
    if (revoke) {
      // A release was requested and there is no command to finish: let go at once.
      info(g_, what + ": release requested; releasing");
      try {
        held.release();
      } catch (const error& e) {
        warn(g_, std::string("release failed (the lease expires by itself): ") + e.what());
      }
      return 0;
    }
    if (sig != 0) {
      try {
        held.release();
      } catch (const error& e) {
        warn(g_, std::string("release failed (the lease expires by itself): ") + e.what());
      }
      return sig;
    }
    // on_lost and the signal thread wake us; the timeout only bounds a missed wake-up.
    sv.sleep(milliseconds{1000});
  }
}

}  // namespace sqlock::cli
