// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: two threads per client, started with its first lease.
//  - The renewer renews every lease due (ttl/3 after its last successful renewal, etcd's
//    cadence) in ONE batched backend call per round, on the backend's own connections. A
//    failed round leaves the leases `at_risk` and retries each at ttl/10.
//  - The timer does no I/O: it declares a lease lost at its local safety deadline even while
//    the renewer is stuck in a database call, and it is the only thread that runs `on_lost`
//    callbacks (holding no internal lock), so a slow callback never delays a renewal.
// A lease is tracked from its grant until it is released or lost. The renewer also retries
// releases that could not reach the database, so waiters need not wait for the row to expire.

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sqlock/backend.hpp>

#include "core/lease_impl.hpp"

namespace sqlock::detail {

class keepalive {
 public:
  using log_fn = std::function<void(log_level, const std::string&)>;
  using emit_fn = std::function<void(const lock_event&)>;
  keepalive(backend& db, log_fn log, emit_fn emit, std::chrono::milliseconds operation_timeout);
  ~keepalive();
  keepalive(const keepalive&) = delete;
  keepalive& operator=(const keepalive&) = delete;

  /// Starts tracking (and the threads, on first use). Returns false after stop().
  bool track(const std::shared_ptr<lease_impl>& lease);
  void untrack(const lease_impl* lease);
  /// Marks the lease lost if it was held or at risk and queues its on_lost; returns whether it
  /// changed. Neither the caller nor this call may hold the lease's `mu`.
  bool declare_lost(lease_impl& lease, const std::string& reason);
  /// Applies a renewal result sent at `sent` with `ttl` (the lease's `io` held by the caller);
  /// returns the outcome.
  renew_outcome apply(lease_impl& lease, const renew_result& result, steady::time_point sent,
                      std::chrono::milliseconds ttl);
  /// Wakes a thread only if `lease` now needs it before the instant it sleeps until (a wake-up
  /// per grant or renewal cost two context switches each, measured).
  void poke(const lease_impl& lease);
  /// Retries ending `key` in the database from the renewer thread until it succeeds or
  /// `give_up` passes (the row has expired by then anyway): for a release that met a row
  /// locked by an open fenced transaction, or a transient failure.
  void defer_release(lease_key key, steady::time_point give_up);
  /// Stops both threads (after delivering queued callbacks) and returns the leases still
  /// tracked. Must not be called from one of its own threads.
  std::vector<std::shared_ptr<lease_impl>> stop();
  /// Whether the calling thread is the renewer or the timer.
  bool on_own_thread() const;

 private:
  // A loss to report: the `lost` event to the listeners, then on_lost (if any).
  // Or (with `revoke`) a release request heard: the `revoke_requested` event, then
  // on_revoke_requested (if any).
  struct pending_callback {
    std::function<void(const lost_event&)> fn;
    lost_event event;
    std::function<void(const revoke_event&)> revoke_fn;
    std::optional<revoke_event> revoke;
  };
  void deliver(std::vector<pending_callback>& callbacks) noexcept;
  void start_locked();
  void renew_loop();
  void timer_loop();
  void renew_round(std::vector<std::shared_ptr<lease_impl>> due);
  struct deferred_release {
    lease_key key;
    steady::time_point give_up, next_try;
  };
  void retry_releases(std::vector<deferred_release> due);
  bool declare_lost_locked(lease_impl& lease, const std::string& reason);
  /// A lease whose release is pending in the caller's transaction (lease::
  /// expect_release_in_transaction), found ended: it stays released, not lost. Returns false
  /// when no such release was pending. Emits nothing (the caller does, holding no `io`).
  bool settle_release_in_transaction(lease_impl& lease);
  void log(log_level level, const std::string& message) const noexcept;

  backend& db_;
  log_fn log_;
  emit_fn emit_;
  std::chrono::milliseconds operation_timeout_;

  std::mutex mu_;
  std::condition_variable renew_cv_;
  std::condition_variable timer_cv_;
  std::unordered_map<const lease_impl*, std::shared_ptr<lease_impl>> leases_;
  std::vector<pending_callback> pending_;
  std::vector<deferred_release> deferred_;
  bool started_ = false;
  bool stopping_ = false;
  // When each thread next wakes by itself; min() while it is awake (it rescans before sleeping).
  steady::time_point renewer_sleeps_until_ = steady::time_point::min();
  steady::time_point timer_sleeps_until_ = steady::time_point::min();
  void poke_locked(const lease_impl& lease);
  std::thread renewer_;
  std::thread timer_;
};

/// Why a lease whose holder was asked to let go (request_release) ended without a release.
inline constexpr const char* revoked_reason = "release requested: its grace ran out";

/// How long a renewed lease lasts from the renewal's sending: its ttl, or less when the
/// database says so (renew_result::expires_in: a release request caps the lease).
std::chrono::milliseconds renewal_term(const renew_result& result, std::chrono::milliseconds ttl);

/// Human text for a loss reported by the database.
/// (Listeners hear about renewals from whoever applied them, after it dropped its locks.)
const char* loss_reason(renew_outcome outcome) noexcept;

}  // namespace sqlock::detail
