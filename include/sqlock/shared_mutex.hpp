// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::shared_mutex: a distributed readers/writer lock with the std::shared_mutex vocabulary.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sqlock/client.hpp>
#include <sqlock/export.hpp>
#include <sqlock/lease.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// A named readers/writer lock that meets the standard's SharedTimedLockable requirements, so it
/// works with `std::shared_lock` as well as `std::unique_lock`. It is the semaphore `name` with
/// limit `max_semaphore_limit`: a shared lock takes 1 unit, an exclusive lock all of them (so
/// `sqlock run NAME --shared` / `--exclusive` and `client::acquire_semaphore` with that limit
/// interoperate with it). Each lock is a lease with its own fencing token and keepalive.
///
/// Ownership: refers to `c`, which must outlive it; the destructor unlocks everything.
/// Thread safety: thread-safe. Several threads may hold shared locks through one object (each
/// has its own lease; `unlock_shared` ends the calling thread's newest one). The exclusive lock
/// is held by the object: `lock()` while it holds it is `errc::usage`.
/// Throws: the lock functions throw `sqlock::error` as `client` does; unlocks never throw.
class SQLOCK_EXPORT shared_mutex {
 public:
  /// `fair`: grant waiting readers and writers in arrival order (no writer starvation under a
  /// steady stream of readers); see `semaphore_options::fair`.
  shared_mutex(client& c, std::string name, lock_options options = {}, bool fair = false);
  ~shared_mutex();
  shared_mutex(const shared_mutex&) = delete;
  shared_mutex& operator=(const shared_mutex&) = delete;

  void lock();
  bool try_lock();
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& wait) {
    return try_lock_wait(std::chrono::ceil<std::chrono::milliseconds>(wait));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_for(deadline - Clock::now());
  }
  void unlock() noexcept;

  void lock_shared();
  bool try_lock_shared();
  template <class Rep, class Period>
  bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& wait) {
    return try_lock_shared_wait(std::chrono::ceil<std::chrono::milliseconds>(wait));
  }
  template <class Clock, class Duration>
  bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_shared_for(deadline - Clock::now());
  }
  void unlock_shared() noexcept;

  /// The fencing token of the exclusive lease, or of the calling thread's newest shared lease.
  /// Throws `errc::usage` when neither is held.
  std::int64_t token() const;
  const std::string& name() const noexcept { return name_; }

 private:
  bool try_lock_wait(std::chrono::milliseconds wait);
  bool try_lock_shared_wait(std::chrono::milliseconds wait);
  std::optional<lease> take(bool exclusive, std::optional<std::chrono::milliseconds> wait);
  client& client_;
  std::string name_;
  semaphore_options shared_, exclusive_;
  mutable std::mutex mu_;
  std::optional<lease> writer_;
  std::map<std::thread::id, std::vector<lease>> readers_;
};

}  // namespace sqlock
