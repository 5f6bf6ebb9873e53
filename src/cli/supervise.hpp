// SPDX-License-Identifier: Apache-2.0
#pragma once
// What `run` and `elect` share: a client whose threads all start with the handled signals
// blocked, one signal thread, and running a command under a lease so that the command is
// stopped before the lease can pass to anyone else.
//
// Design: every signal the tool cares about (INT, TERM, HUP, CHLD, and USR1 as an internal
// wake-up) is blocked before the client starts its threads, so all threads inherit the mask and
// one signal thread takes them synchronously with sigwaitinfo. While waiting for the lease, a
// signal cancels the wait (client::shutdown); once CMD runs, it is forwarded to CMD's process
// group; while a lease is held without a command (`elect`), it is recorded and ends the hold.
// The main thread forks CMD (fork + immediate exec: the child calls only async-signal-safe
// functions, since the client's threads exist by then) and supervises it: it reaps CMD, and
// watches the lease, woken through a pipe by the signal thread and by on_lost, and on a short
// timer for the at-risk deadline, which no event announces.

#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common.hpp"

namespace sqlock::cli {

struct supervisor;

/// CMD's executable, looked up on PATH before the lease is taken (so that a typo fails fast);
/// throws exit_error(127) when not found and exit_error(126) when not executable.
std::string find_command(const std::vector<std::string>& command);

/// Our environment for CMD: every variable named in `strip` or `set` removed, then `set` added.
std::vector<std::string> command_environment(
    const std::vector<std::string>& strip,
    const std::vector<std::pair<std::string, std::string>>& set);

/// --kill-grace: the given duration, or 5s capped at ttl/3; warns when it is not well under the
/// ttl (one failed renewal would then stop the command).
std::chrono::milliseconds kill_grace(const globals& g, const std::string& text,
                                     std::chrono::milliseconds ttl);

class lease_session {
 public:
  /// Blocks the handled signals (before the client starts any thread), opens the client and
  /// starts the signal thread.
  explicit lease_session(const globals& g);
  ~lease_session();
  lease_session(const lease_session&) = delete;
  lease_session& operator=(const lease_session&) = delete;

  client& get_client() { return *client_; }
  /// From now on, runs `handle` on the signal thread for each signal `sig` (SIGINT, SIGTERM or
  /// SIGHUP) instead of what the signal does otherwise (cancel the wait, end the hold, reach
  /// CMD). `handle` must not throw and must not block long.
  void on_signal(int sig, std::function<void()> handle);
  /// For lock_options::on_lost: records the loss and wakes the supervision.
  std::function<void(const lost_event&)> on_lost();

  /// For lock_options::on_revoke_requested: a release request stops CMD (SIGTERM, then SIGKILL
  /// when its grace runs out; exit status CMD's if it finished in time, 75 otherwise) or ends
  /// a hold at once.
  std::function<void(const revoke_event&)> on_revoke_requested();

  /// Runs `acquire` (which may wait). A signal during the wait cancels it: prints "interrupted
  /// (...) while waiting for WHAT" and throws exit_error(128+N).
  std::optional<lease> acquire(const std::function<std::optional<lease>()>& acquire,
                               const std::string& what);

  /// Runs CMD while `held` is held and releases it once CMD and the rest of its process group
  /// are gone: after CMD exits, what is left of the group gets `grace`, then SIGTERM, then
  /// SIGKILL after `grace` (processes that left the group escape). `what` names the lease in
  /// messages ("'job' (token 42)"). Returns CMD's exit status (128+N when killed by signal N),
  /// also when leftovers had to be killed.
  /// Throws exit_error(75) when the lease was lost (CMD was stopped: SIGTERM, SIGKILL after
  /// `grace`; while renewals fail, that starts `grace` before the lease's safety deadline),
  /// exit_error(126/127) when CMD cannot be executed, exit_error(128+N) when a signal arrived
  /// before CMD started.
  int run_command(lease& held, const std::string& path, const std::vector<std::string>& command,
                  const std::vector<std::string>& env, std::chrono::milliseconds grace,
                  const std::string& what) {
    return run_command(std::vector<lease*>{&held}, path, command, env, grace, what);
  }
  /// As above, while every lease of `held` is held: the loss of any one stops CMD as a lost
  /// lease does, renewals failing for any one start the stop sequence before its safety
  /// deadline, and all are released once CMD's group is gone.
  int run_command(const std::vector<lease*>& held, const std::string& path,
                  const std::vector<std::string>& command, const std::vector<std::string>& env,
                  std::chrono::milliseconds grace, const std::string& what);

  /// Holds `held` without a command. `announce` runs once the hold has begun (signals no longer
  /// cancel the client). Returns 0 after a release request (the lease is released), N after SIGINT,
  /// SIGTERM or SIGHUP (the lease is then released, with a warning if that fails; a signal that
  /// arrived before the hold began shut the client down, which released it, and `announce` does not
  /// run); throws exit_error(75) when the lease is lost.
  int hold(lease& held, const std::string& what, const std::function<void()>& announce);

 private:
  const globals& g_;
  sigset_t original_mask_{};
  std::shared_ptr<supervisor> sv_;
  std::unique_ptr<client> client_;
  std::thread signals_;
};

}  // namespace sqlock::cli
