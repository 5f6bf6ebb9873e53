// SPDX-License-Identifier: Apache-2.0
#pragma once
// The shared state behind a sqlock::lease.

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <sqlock/backend.hpp>
#include <sqlock/types.hpp>

namespace sqlock::detail {

class client_core;
using steady = std::chrono::steady_clock;

/// The margin between the server's expiry and the local safety deadline. Both clocks start
/// from the moment the grant/renewal was SENT (the server computes now() later than that), so
/// the margin only has to absorb clock-rate drift and scheduling delays of the timer: a tenth
/// of the ttl (10 ms at the 100 ms minimum, 3 s at the 30 s default), capped at 5 s.
inline std::chrono::milliseconds safety_margin(std::chrono::milliseconds ttl) {
  return std::min(ttl / 10, std::chrono::milliseconds{5000});
}

/// The length of a lease's first term: its ttl, or a shorter `first` (a lock handed over by a
/// release lasts at most `fair_ticket_ttl` until its waiter renews it: see backend::release).
inline std::chrono::milliseconds first_lease(const lock_options& options,
                                             std::chrono::milliseconds first) {
  return first > std::chrono::milliseconds::zero() ? std::min(first, options.ttl) : options.ttl;
}

/// The first term this waiter asks of a lock a release hands it (acquire_request::handoff_ttl):
/// a kept-alive lease renews it at once, so at most the ticket's life (a waiter that died holds
/// the lock up no longer than its ticket would have); a lease that is not kept alive cannot
/// renew, so its whole ttl (a waiter that died after its last ticket refresh then holds the lock
/// up for that ttl, as it would had it died just after its own grant).
inline std::chrono::milliseconds handoff_term(const lock_options& options) {
  return options.keepalive ? std::min(options.ttl, fair_ticket_ttl) : options.ttl;
}

struct lease_impl {
  lease_impl(std::shared_ptr<client_core> core_, std::string name_, std::string nonce_,
             const grant& g, const lock_options& options, steady::time_point sent,
             lease_kind kind_ = lease_kind::lock, std::int64_t count_ = 1,
             std::chrono::milliseconds first = std::chrono::milliseconds::zero())
      : core(std::move(core_)),
        name(std::move(name_)),
        nonce(std::move(nonce_)),
        token(g.token),
        kind(kind_),
        count(count_),
        keepalive(options.keepalive),
        on_lost(options.on_lost),
        on_revoke_requested(options.on_revoke_requested),
        ttl(options.ttl),
        safe_until(sent + first_lease(options, first) - safety_margin(first_lease(options, first))),
        next_renewal(sent + first_lease(options, first) / 3),
        acquired_at(g.acquired_at),
        expires_at(g.expires_at),
        granted_at(sent),
        server_epoch(g.server_epoch) {}

  const std::shared_ptr<client_core> core;
  const std::string name;
  const std::string nonce;
  const std::int64_t token;
  const lease_kind kind;
  const std::int64_t count;  // units: 1 for a lock
  const bool keepalive;
  const std::function<void(const lost_event&)> on_lost;
  const std::function<void(const revoke_event&)> on_revoke_requested;

  /// Serialises this lease's database calls (renewals, release): two renewals in flight on
  /// different connections could execute in either order, and the local deadline must follow
  /// the one the server applied last. Lock order: io, then keepalive's mutex, then mu.
  std::mutex io;

  mutable std::mutex mu;  // guards everything below
  std::chrono::milliseconds ttl;
  steady::time_point safe_until;    // local safety deadline (no I/O needed to enforce it)
  steady::time_point next_renewal;  // when the keepalive renews next (or retries)
  std::chrono::system_clock::time_point acquired_at, expires_at;  // database clock
  lease_state state = lease_state::held;
  steady::time_point granted_at;  // for the hold time reported when released
  // expect_release_in_transaction(): a release made by SQL in the caller's transaction is
  // pending. The lease is `released` meanwhile, and still renewed: a renewal that succeeds shows
  // that the transaction did not commit (the lease is held again); one that finds the lease
  // ended shows that it did.
  bool release_in_transaction = false;
  // The backend's server epoch its grant or last renewal ran under (backend::server_epoch; 0:
  // not tracked). Under a newer epoch (a failover since) the lease is at risk until renewed.
  std::uint64_t server_epoch = 0;
  // A release request was heard (a renewal reported it): on_revoke_requested was queued once,
  // and a loss at the safety deadline is reported as the request's grace running out.
  bool revoke_heard = false;

  lease_key key() const { return {name, nonce, token, kind}; }
  /// The state with the safety deadline applied (mu held by the caller).
  lease_state effective_state_locked(steady::time_point now) const {
    if ((state == lease_state::held || state == lease_state::at_risk) && now >= safe_until)
      return lease_state::lost;
    return state;
  }
  /// What the holder is told (lease::state): effective_state_locked, and `at_risk` while the
  /// backend talks to another server than the one that last confirmed the lease (lease.cpp).
  lease_state observed_state_locked(steady::time_point now) const;
  bool state_is(lease_state s) const {
    std::lock_guard<std::mutex> lock(mu);
    return state == s;
  }
  bool active_locked() const { return state == lease_state::held || state == lease_state::at_risk; }
  /// Renewed by the keepalive: active, or released by a transaction whose outcome is unknown.
  bool renewing_locked() const { return active_locked() || release_in_transaction; }
};

}  // namespace sqlock::detail
