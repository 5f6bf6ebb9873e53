#pragma once
/// \file
/// A waiter's wake-up channel, the one piece of the backend seam that waiting code holds on
/// to (see backend::watch). Included by backend.hpp; users of client.hpp need not see it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include <sqlock/export.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// The point in time by which a backend call must return (it throws `errc::unavailable` when it
/// cannot finish by then). Every backend call takes one.
using deadline = std::chrono::steady_clock::time_point;

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
  std::mutex mutex_;
  std::condition_variable cv_;
  bool notified_ = false;
  bool cancelled_ = false;
  std::atomic<bool> observer_{false};
  std::function<void()> pass_on_;
};

}  // namespace sqlock
