// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// A waiter's wake-up channel, the one piece of the backend seam that waiting code holds on
/// to (see backend::watch). Included by backend.hpp; users of client.hpp need not see it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include <sqlock/export.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// The point in time by which a backend call must return (it throws `errc::unavailable` when it
/// cannot finish by then). Every backend call takes one.
using deadline = std::chrono::steady_clock::time_point;

/// A lease granted by the database; times by the database clock.
struct grant {
  std::int64_t token = 0;
  std::chrono::system_clock::time_point acquired_at, expires_at;
  /// The backend's server epoch (backend::server_epoch) of the connection that granted it; 0
  /// when the backend does not track servers or does not know.
  std::uint64_t server_epoch = 0;
};

/// A lock that a release handed straight to a queued waiter (backend::release).
///
/// Its expiry is the database's clock at the handoff plus the waiter's ttl, and the handoff
/// read the waiter's ticket as refreshed by `attempt`: the database had executed that attempt
/// before it computed the expiry. So the moment the waiter SENT that attempt precedes the
/// grant, and `sent + ttl - margin` is a local safety deadline no later than the database's
/// expiry, exactly as for a grant the waiter's own attempt returned.
struct handoff {
  std::string nonce;         ///< the waiter's (its acquire_request::nonce)
  grant granted;             ///< the new lease
  std::int64_t attempt = 0;  ///< the waiter's attempt whose ticket refresh the release read
};

/// A waiter's wake-up channel for one lock name. The backend signals it when it learns of a
/// release of that name (its own release calls; PostgreSQL notifications); its owner cancels it
/// to stop a wait for good. Thread safety: thread-safe.
class SQLOCK_EXPORT release_watch {
 public:
  enum class wake { notified, cancelled, timeout };

  explicit release_watch(std::string name) : name_(std::move(name)) {}
  /// A watch dropped with an unconsumed signal hands it on (see `on_drop_pending`).
  ~release_watch();
  release_watch(const release_watch&) = delete;
  release_watch& operator=(const release_watch&) = delete;
  const std::string& name() const noexcept { return name_; }

  /// Makes this a queued waiter's watch: `hand_off` accepts grants for `nonce` (only: a pending
  /// handoff to a previous nonce is dropped). Call it before the first attempt.
  void expect_handoff(std::string nonce);
  /// Delivers a lock handed to this watch's waiter, and signals it. Returns false (and does
  /// nothing) when the nonce is not this watch's or the watch is cancelled.
  bool hand_off(const handoff& h) noexcept;
  /// The lock handed to this waiter, once (empty when none arrived).
  std::optional<handoff> take_handoff();

  /// Signals a release; one pending signal is kept until a wait consumes it.
  void notify() noexcept;
  /// Signals a release unless one is already pending or the watch is cancelled; returns
  /// whether it did (so a backend can wake exactly one waiter per release).
  bool try_notify() noexcept;
  /// Every current and future wait returns `cancelled`.
  void cancel() noexcept;
  /// Blocks until notified (consuming the signal), cancelled or the deadline.
  wake wait_until(deadline until);
  /// Set by the backend that created the watch: called by the destructor when a signal was
  /// never consumed (the waiter left: timed out, was cancelled or got the lock another way),
  /// so the wake-up passes to the next waiter instead of being lost.
  void on_drop_pending(std::function<void()> fn) { pass_on_ = std::move(fn); }
  /// Makes this an observer's watch (leader election's `observe`): a backend signals it on
  /// every release of its name, besides the one waiter it wakes, and a dropped signal is not
  /// handed on. Call it before the first wait.
  void make_observer() noexcept { observer_ = true; }
  bool observer() const noexcept { return observer_; }

 private:
  std::string name_;
  std::string nonce_;
  std::mutex mutex_;
  std::optional<handoff> handoff_;
  std::condition_variable cv_;
  bool notified_ = false;
  bool cancelled_ = false;
  std::atomic<bool> observer_{false};
  std::function<void()> pass_on_;
};

}  // namespace sqlock
