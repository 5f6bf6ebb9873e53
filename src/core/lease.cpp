// SPDX-License-Identifier: Apache-2.0
#include <exception>

#include <sqlock/error.hpp>
#include <sqlock/lease.hpp>

#include "core/core.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock {

using detail::steady;

namespace detail {
lease_state lease_impl::observed_state_locked(steady::time_point now) const {
  auto s = effective_state_locked(now);
  if (s == lease_state::held && server_epoch != 0 && core->db().server_epoch() > server_epoch)
    return lease_state::at_risk;
  return s;
}
}  // namespace detail

lease::lease(std::shared_ptr<detail::lease_impl> impl) noexcept : impl_(std::move(impl)) {}
lease::lease(lease&&) noexcept = default;

lease& lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    lease old(std::move(*this));  // released by its destructor
    impl_ = std::move(other.impl_);
  }
  return *this;
}

lease::~lease() {
  if (!impl_) return;
  try {
    release();
  } catch (const std::exception& e) {
    impl_->core->log(log_level::warn, "lease " + detail::quoted(impl_->name) + " (token " +
                                          std::to_string(impl_->token) +
                                          "): release in destructor failed: " + e.what() +
                                          "; the row expires by itself");
  } catch (...) {
  }
}

namespace {
const std::string& empty_name() {
  static const std::string empty;
  return empty;
}
}  // namespace

const std::string& lease::name() const noexcept { return impl_ ? impl_->name : empty_name(); }

std::int64_t lease::token() const noexcept { return impl_ ? impl_->token : 0; }

lease_kind lease::kind() const noexcept { return impl_ ? impl_->kind : lease_kind::lock; }

std::int64_t lease::count() const noexcept { return impl_ ? impl_->count : 0; }

std::chrono::system_clock::time_point lease::expires_at() const {
  if (!impl_) return {};
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->expires_at;
}

std::chrono::milliseconds lease::remaining() const {
  using std::chrono::milliseconds;
  if (!impl_) return milliseconds::zero();
  auto now = steady::now();
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto s = impl_->observed_state_locked(now);
  if (s != lease_state::held && s != lease_state::at_risk) return milliseconds::zero();
  return std::chrono::duration_cast<milliseconds>(impl_->safe_until - now);
}

lease_state lease::state() const noexcept {
  if (!impl_) return lease_state::released;
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->observed_state_locked(steady::now());
}

bool lease::lost() const noexcept { return state() == lease_state::lost; }

lease::operator bool() const noexcept {
  auto s = state();
  return s == lease_state::held || s == lease_state::at_risk;
}

bool lease::renew(std::optional<std::chrono::milliseconds> ttl) {
  if (!impl_) return false;
  if (ttl) detail::validate_ttl(*ttl);
  auto& l = *impl_;
  auto& core = *l.core;
  // Listeners hear about the renewal after `io` is released: one may call back into this lease.
  std::optional<lock_event> event;
  std::exception_ptr failure;
  renew_outcome outcome = renew_outcome::expired;
  {
    std::lock_guard<std::mutex> io(l.io);
    std::chrono::milliseconds use_ttl;
    {
      std::unique_lock<std::mutex> lock(l.mu);
      auto s = l.effective_state_locked(steady::now());
      // A release pending in the caller's transaction is settled by a renewal: go on.
      if (s == lease_state::released && !l.release_in_transaction) return false;
      if (s == lease_state::lost) {
        bool declare = l.active_locked();
        lock.unlock();
        if (declare)
          core.keeper().declare_lost(l, "safety deadline passed without a successful renewal");
        return false;
      }
      use_ttl = ttl.value_or(l.ttl);
    }
    auto sent = steady::now();
    try {
      auto results = core.db().renew({{l.key(), use_ttl}}, core.op_deadline());
      if (results.size() != 1)
        throw error(errc::internal, "renew " + detail::quoted(l.name) + ": backend returned " +
                                        std::to_string(results.size()) + " results for 1 lease");
      outcome = core.keeper().apply(l, results[0], sent, use_ttl);
      auto round_trip = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - sent);
      if (outcome == renew_outcome::renewed)
        event = lock_event{event_kind::renewed, l.name, l.token, round_trip, {}};
      else if (outcome == renew_outcome::busy)
        event =
            lock_event{event_kind::renew_failed, l.name, l.token, round_trip,
                       "not renewed: the row is held by an open fenced transaction, or the renewal "
                       "reached the server before a failover"};
      else if (l.state_is(lease_state::released))  // settled: the caller's transaction committed
        event = lock_event{
            event_kind::released, l.name, l.token,
            std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - l.granted_at),
            "released by the caller's transaction"};
    } catch (const error& e) {
      if (e.code() == errc::unavailable || e.code() == errc::in_doubt) {
        std::lock_guard<std::mutex> lock(l.mu);
        if (l.active_locked()) l.state = lease_state::at_risk;
        event = lock_event{event_kind::renew_failed, l.name, l.token, {}, e.what()};
      }
      failure = std::current_exception();
    }
  }
  if (event) core.emit(*event);
  if (failure) std::rethrow_exception(failure);
  switch (outcome) {
    case renew_outcome::renewed:
      return state() != lease_state::lost;
    case renew_outcome::busy:
      throw error(errc::unavailable,
                  "renew " + detail::quoted(l.name) + " (token " + std::to_string(l.token) +
                      ") on " + std::string(core.db().kind()) +
                      ": not renewed: the row is held by an open fenced transaction, or the "
                      "renewal reached the server from before a failover; retry",
                  std::string(core.db().kind()));
    default:
      return false;
  }
}

void lease::release() {
  if (!impl_) return;
  auto& l = *impl_;
  auto& core = *l.core;
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> io(l.io);
    steady::time_point give_up;
    {
      std::unique_lock<std::mutex> lock(l.mu);
      auto s = l.effective_state_locked(steady::now());
      // Released by the caller's transaction, outcome unknown: end it in the database as asked
      // (a no-op if that transaction committed).
      if (s == lease_state::released && !l.release_in_transaction) return;
      l.release_in_transaction = false;
      if (s == lease_state::lost) {
        bool declare = l.active_locked();
        lock.unlock();
        if (declare)
          core.keeper().declare_lost(l, "safety deadline passed without a successful renewal");
        return;
      }
      l.state = lease_state::released;
      give_up = l.safe_until + detail::safety_margin(l.ttl) + std::chrono::seconds{1};
    }
    try {
      core.release_in_database(l, core.op_deadline());
    } catch (const error& e) {
      // Ended locally either way. Keep trying in the background so that waiters need not wait
      // for the row to expire. A row locked by an open fenced transaction (perhaps this
      // thread's own) is not an error: the release completes when that transaction ends.
      if (e.code() == errc::unavailable) core.keeper().defer_release(l.key(), give_up);
      const bool row_is_locked =
          dynamic_cast<const row_locked*>(&e) != nullptr ||
          (e.code() == errc::unavailable && e.sqlstate() == sqlstate_row_locked);
      if (!row_is_locked) failure = std::current_exception();
    }
  }
  core.emit_released(l);
  if (failure) std::rethrow_exception(failure);
}

void lease::update_metadata(std::string_view metadata) {
  detail::validate_metadata(metadata);
  const std::string what =
      "update metadata of " + detail::quoted(name()) + " (token " + std::to_string(token()) + ")";
  if (!impl_) throw error(errc::lease_lost, what + ": the lease was moved from");
  auto& l = *impl_;
  auto& core = *l.core;
  if (l.kind != lease_kind::lock)
    throw error(errc::invalid_argument, what + ": only a lock's lease has metadata to update",
                std::string(core.db().kind()));
  // Not under `io`: the row keeps its expiry, so this cannot race a renewal's local deadline.
  if (!*this) throw error(errc::lease_lost, what + ": the lease is not held");
  if (!core.db().update_metadata(l.key(), metadata, core.op_deadline()))
    throw error(errc::lease_lost,
                what + " on " + std::string(core.db().kind()) + ": the lease has ended",
                std::string(core.db().kind()));
}

const std::string& lease::nonce() const noexcept {
  static const std::string none;
  return impl_ ? impl_->nonce : none;
}

void lease::expect_release_in_transaction() {
  if (!impl_) return;
  auto& l = *impl_;
  if (l.kind != lease_kind::lock)
    throw error(errc::invalid_argument,
                "release " + detail::quoted(l.name) +
                    " in a transaction: only a lock's lease can be (not a semaphore's)",
                std::string(l.core->db().kind()));
  // A renewal in flight settles first (it holds `io`): one sent before the release statement
  // ran may succeed, and must not count as a sign that the transaction rolled back.
  std::lock_guard<std::mutex> io(l.io);
  std::lock_guard<std::mutex> lock(l.mu);
  if (!l.active_locked()) return;
  l.state = lease_state::released;
  l.release_in_transaction = true;
}

}  // namespace sqlock
