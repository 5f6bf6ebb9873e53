// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::mutex: a distributed lock with the std::mutex vocabulary.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <sqlock/client.hpp>
#include <sqlock/export.hpp>
#include <sqlock/lease.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// A named distributed lock that meets the standard's TimedLockable requirements, so it works
/// with `std::unique_lock`, `std::lock_guard` and `std::scoped_lock`. Each successful lock is a
/// lease (with keepalive, fencing token and loss handling, per its `lock_options`).
///
/// Ownership: refers to `c`, which must outlive it; the destructor unlocks.
/// Thread safety: thread-compatible, like a lease handle: give each thread its own
/// `sqlock::mutex` for the same name; they then exclude each other through the database.
/// Throws: `lock()` and `try_lock*()` throw `sqlock::error` (`errc::usage` when this object
/// already holds the lock; `errc::unavailable` etc. as `client`); `unlock()` never throws.
class SQLOCK_EXPORT mutex {
 public:
  mutex(client& c, std::string name, lock_options options = {});
  ~mutex();
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  /// Waits until granted.
  void lock();
  /// Returns: false when someone else holds it.
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& wait) {
    return try_lock_wait(std::chrono::ceil<std::chrono::milliseconds>(wait));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_for(deadline - Clock::now());
  }
  /// Releases the lease; failures go to the log hook (the row then expires by itself).
  void unlock() noexcept;

  /// The fencing token of the held lease. Throws `errc::usage` when not locked.
  std::int64_t token() const;
  /// The held lease (to check `lost()` or `remaining()`), or nullptr when not locked.
  const lease* held() const noexcept { return lease_ ? &*lease_ : nullptr; }
  const std::string& name() const noexcept { return name_; }

 private:
  bool try_lock_wait(std::chrono::milliseconds wait);
  void check_not_held() const;
  client& client_;
  std::string name_;
  lock_options options_;
  std::optional<lease> lease_;
};

}  // namespace sqlock
