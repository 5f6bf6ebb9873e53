// SPDX-License-Identifier: Apache-2.0
#include "core/keepalive.hpp"

#include <algorithm>

#include <sqlock/events.hpp>

#include "util/fault_points.hpp"
#include "util/util.hpp"

namespace sqlock::detail {

namespace {
using std::chrono::milliseconds;

// How soon an at-risk lease is retried: often enough for several tries before its safety
// deadline (which is ~2/3 ttl after the last success), never more than once a second.
milliseconds retry_delay(milliseconds ttl) {
  return jitter(std::max(ttl / 20, milliseconds{5}), std::min(ttl / 10, milliseconds{1000}));
}
}  // namespace

milliseconds renewal_term(const renew_result& result, milliseconds ttl) {
  return result.expires_in > milliseconds::zero() ? std::min(ttl, result.expires_in) : ttl;
}

const char* loss_reason(renew_outcome outcome) noexcept {
  switch (outcome) {
    case renew_outcome::expired:
      return "expired";
    case renew_outcome::taken_over:
      return "taken over";
    case renew_outcome::force_released:
      return "force released";
    case renew_outcome::missing:
      return "lock row deleted";
    case renew_outcome::revoked:
      return revoked_reason;
    case renew_outcome::renewed:
    case renew_outcome::busy:
      break;
  }
  return "unknown";
}

keepalive::keepalive(backend& db, log_fn log, emit_fn emit, milliseconds operation_timeout)
    : db_(db),
      log_(std::move(log)),
      emit_(std::move(emit)),
      operation_timeout_(operation_timeout) {}

keepalive::~keepalive() {
  if (!on_own_thread()) stop();
}

void keepalive::log(log_level level, const std::string& message) const noexcept {
  if (!log_) return;
  try {
    log_(level, message);
  } catch (...) {
  }
}

bool keepalive::on_own_thread() const {
  auto me = std::this_thread::get_id();
  return me == renewer_.get_id() || me == timer_.get_id();
}

void keepalive::start_locked() {
  if (started_) return;
  started_ = true;
  renewer_ = std::thread([this] { renew_loop(); });
  timer_ = std::thread([this] { timer_loop(); });
}

bool keepalive::track(const std::shared_ptr<lease_impl>& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return false;
  start_locked();
  leases_[lease.get()] = lease;
  poke_locked(*lease);
  return true;
}

void keepalive::untrack(const lease_impl* lease) {
  std::lock_guard<std::mutex> lock(mu_);
  leases_.erase(lease);
}

void keepalive::defer_release(lease_key key, steady::time_point give_up) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  start_locked();
  deferred_.push_back({std::move(key), give_up, steady::now() + milliseconds{20}});
  renew_cv_.notify_one();  // rare: only after a failed release
}

void keepalive::retry_releases(std::vector<deferred_release> due) {
  std::vector<deferred_release> again;
  for (auto& d : due) {
    try {
      // abandon(key) ends the same lease (a nonce is unique to it) and never waits for
      // a locked row, so a long fenced transaction costs one cheap statement per retry.
      db_.abandon(d.key, steady::now() + std::min(operation_timeout_, milliseconds{1000}));
    } catch (const error& e) {
      auto now = steady::now();
      if (e.code() == errc::unavailable && now < d.give_up) {
        d.next_try = now + jitter(milliseconds{20}, milliseconds{100});
        again.push_back(std::move(d));
      } else {
        log(log_level::debug, std::string("deferred release gave up: ") + e.what());
      }
    } catch (...) {
    }
  }
  if (again.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& d : again) deferred_.push_back(std::move(d));
}

void keepalive::poke(const lease_impl& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  poke_locked(lease);
}

void keepalive::poke_locked(const lease_impl& lease) {
  steady::time_point renew_at, deadline;
  bool renews;
  {
    std::lock_guard<std::mutex> l(lease.mu);
    renew_at = lease.next_renewal;
    deadline = lease.safe_until;
    renews = lease.keepalive && lease.renewing_locked();
  }
  if (renews && renew_at < renewer_sleeps_until_) renew_cv_.notify_one();
  if (deadline < timer_sleeps_until_) timer_cv_.notify_one();
}

bool keepalive::declare_lost_locked(lease_impl& lease, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(lease.mu);
    if (!lease.active_locked()) return false;
    lease.state = lease_state::lost;
  }
  // Keep the lease alive until this function is done with it: the registry's reference may be
  // the last one once the user has dropped the handle.
  std::shared_ptr<lease_impl> keep;
  if (auto it = leases_.find(&lease); it != leases_.end()) {
    keep = std::move(it->second);
    leases_.erase(it);
  }
  // A loss the application handles (on_lost) is its to report: logged at info level then, so
  // one event does not print twice (`sqlock run` reports it once, as it stops the command).
  log(lease.on_lost ? log_level::info : log_level::warn,
      "lease " + quoted(lease.name) + " (token " + std::to_string(lease.token) +
          ") lost: " + reason);
  pending_.push_back({lease.on_lost, lost_event{lease.name, lease.token, reason}, {}, {}});
  timer_cv_.notify_one();
  return true;
}

bool keepalive::declare_lost(lease_impl& lease, const std::string& reason) {
  std::vector<pending_callback> orphans;
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed = declare_lost_locked(lease, reason);
    // No timer thread runs after stop(): deliver here, outside the lock, rather than drop it.
    if (!started_) orphans.swap(pending_);
  }
  deliver(orphans);
  return changed;
}

// How often the renewer looks at the backend's server epoch while it tracks leases.
constexpr milliseconds epoch_check_interval{1000};

renew_outcome keepalive::apply(lease_impl& lease, const renew_result& result,
                               steady::time_point sent, milliseconds ttl) {
  renew_outcome outcome = result.outcome;
  std::optional<revoke_event> heard;  // a release request, heard for the first time
  switch (result.outcome) {
    case renew_outcome::renewed: {
      std::lock_guard<std::mutex> lock(lease.mu);
      if (!lease.renewing_locked()) break;  // declared lost meanwhile: it stays lost
      if (result.server_epoch != 0 && result.server_epoch < db_.server_epoch()) {
        // Renewed on a connection to the server before a failover (one that still answers: a
        // primary cut off from the new one, say). That extends nothing the new primary knows
        // of: no later safety deadline, the lease stays at risk and is tried again soon, as
        // for a row held by a fenced transaction.
        if (lease.active_locked()) lease.state = lease_state::at_risk;
        lease.next_renewal = steady::now() + retry_delay(lease.ttl);
        outcome = renew_outcome::busy;
        break;
      }
      if (lease.release_in_transaction) {
        // Sent after the release statement had run (expect_release_in_transaction waited for
        // any renewal in flight), and the row was neither locked nor ended: the caller's
        // transaction did not commit. The lease goes on.
        lease.release_in_transaction = false;
        log(log_level::info, "lease " + quoted(lease.name) + " (token " +
                                 std::to_string(lease.token) +
                                 "): its release in a transaction did not commit; held again");
      }
      lease.state = lease_state::held;
      lease.ttl = ttl;
      // The database says how long the lease now lasts: the ttl, or less once a release
      // request caps it (renewal_term). The local deadline never outlives what it said.
      lease.safe_until = sent + renewal_term(result, ttl) - safety_margin(ttl);
      lease.next_renewal = sent + ttl / 3;
      lease.expires_at = result.expires_at;
      if (result.revoke_in && !lease.revoke_heard) {
        lease.revoke_heard = true;
        heard = revoke_event{lease.name, lease.token, *result.revoke_in};
      }
      if (result.server_epoch != 0) lease.server_epoch = result.server_epoch;
      break;
    }
    case renew_outcome::busy: {
      std::lock_guard<std::mutex> lock(lease.mu);
      if (lease.renewing_locked()) {
        if (lease.active_locked()) lease.state = lease_state::at_risk;
        lease.next_renewal = steady::now() + retry_delay(lease.ttl);
      }
      break;
    }
    default:
      if (!settle_release_in_transaction(lease)) declare_lost(lease, loss_reason(result.outcome));
      break;
  }
  if (heard) {
    log(log_level::info, "lease " + quoted(lease.name) + " (token " + std::to_string(lease.token) +
                             "): release requested, " + std::to_string(heard->grace.count()) +
                             " ms of grace left");
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({{}, {}, lease.on_revoke_requested, std::move(heard)});
    timer_cv_.notify_one();
  }
  poke(lease);  // a busy row (or an old server) moved the next attempt earlier
  return outcome;
}

bool keepalive::settle_release_in_transaction(lease_impl& lease) {
  // The lease is over in the database and a release by the caller's transaction was pending:
  // that transaction committed (or, if its row was since force-released or taken over, the
  // lease ended as the caller meant it to). It stays released; nothing is lost.
  {
    std::lock_guard<std::mutex> lock(lease.mu);
    if (!lease.release_in_transaction) return false;
    lease.release_in_transaction = false;
  }
  untrack(&lease);
  return true;
}

void keepalive::deliver(std::vector<pending_callback>& callbacks) noexcept {
  for (auto& cb : callbacks) {
    if (cb.revoke) {
      if (emit_)
        emit_({event_kind::revoke_requested, cb.revoke->name, cb.revoke->token, cb.revoke->grace,
               "release requested"});
      if (!cb.revoke_fn) continue;
      try {
        cb.revoke_fn(*cb.revoke);
      } catch (const std::exception& e) {
        log(log_level::error,
            "on_revoke_requested for " + quoted(cb.revoke->name) + " threw: " + e.what());
      } catch (...) {
        log(log_level::error, "on_revoke_requested for " + quoted(cb.revoke->name) + " threw");
      }
      continue;
    }
    if (emit_) emit_({event_kind::lost, cb.event.name, cb.event.token, {}, cb.event.reason});
    if (!cb.fn) continue;
    try {
      cb.fn(cb.event);
    } catch (const std::exception& e) {
      log(log_level::error, "on_lost for " + quoted(cb.event.name) + " threw: " + e.what());
    } catch (...) {
      log(log_level::error, "on_lost for " + quoted(cb.event.name) + " threw");
    }
  }
}

void keepalive::renew_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    auto now = steady::now();
    auto next = steady::time_point::max();
    std::vector<std::shared_ptr<lease_impl>> due;
    // A lease confirmed under an older server epoch (a failover since: backend::server_epoch)
    // is renewed at once, to confirm it on the new server or learn it is gone. The epoch moves
    // when any connection reaches the new server, so it is looked at every second.
    const auto epoch = db_.server_epoch();
    for (auto& [ptr, lease] : leases_) {
      if (!lease->keepalive) continue;
      std::lock_guard<std::mutex> l(lease->mu);
      if (!lease->renewing_locked()) continue;
      if (lease->server_epoch != 0 && lease->server_epoch < epoch &&
          lease->state == lease_state::held) {
        lease->state = lease_state::at_risk;
        lease->next_renewal = now;
      }
      // Renew together everything due within a small window, so N leases cost one
      // statement per round rather than N.
      if (lease->next_renewal <= now + lease->ttl / 12)
        due.push_back(lease);
      else
        next = std::min(next, lease->next_renewal);
    }
    if (epoch != 0 && !leases_.empty()) next = std::min(next, now + epoch_check_interval);
    std::vector<deferred_release> releases;
    for (auto it = deferred_.begin(); it != deferred_.end();) {
      if (it->next_try <= now) {
        releases.push_back(std::move(*it));
        it = deferred_.erase(it);
      } else {
        next = std::min(next, it->next_try);
        ++it;
      }
    }
    if (due.empty() && releases.empty()) {
      renewer_sleeps_until_ = next;
      renew_cv_.wait_until(lock, next);
      renewer_sleeps_until_ = steady::time_point::min();
      continue;
    }
    lock.unlock();
    if (!releases.empty()) retry_releases(std::move(releases));
    if (!due.empty()) renew_round(std::move(due));
    lock.lock();
  }
}

void keepalive::renew_round(std::vector<std::shared_ptr<lease_impl>> due) {
  std::vector<std::unique_lock<std::mutex>> ios;
  std::vector<std::shared_ptr<lease_impl>> batch;
  std::vector<renew_request> requests;
  auto now = steady::now();
  auto budget = operation_timeout_;
  for (auto& lease : due) {
    // A user renew() or release() holds io: it settles this lease itself.
    std::unique_lock<std::mutex> io(lease->io, std::try_to_lock);
    if (!io.owns_lock()) continue;
    std::lock_guard<std::mutex> l(lease->mu);
    if (!lease->renewing_locked()) continue;
    requests.push_back({lease->key(), lease->ttl});
    // Give up on the call in time to retry before the nearest safety deadline.
    budget = std::min(budget, std::max(milliseconds{20}, std::chrono::duration_cast<milliseconds>(
                                                             (lease->safe_until - now) / 2)));
    batch.push_back(lease);
    ios.push_back(std::move(io));
  }
  if (batch.empty()) {
    // Everything due is busy with a user call; look again shortly rather than spin.
    std::unique_lock<std::mutex> lock(mu_);
    renew_cv_.wait_for(lock, milliseconds{5});
    return;
  }
  SQLOCK_FAULT_POINT("renew.before");
  auto sent = steady::now();
  std::vector<renew_result> results;
  try {
    results = db_.renew(requests, sent + budget);
    if (results.size() != requests.size())
      throw error(errc::internal, "renew: backend returned " + std::to_string(results.size()) +
                                      " results for " + std::to_string(requests.size()) +
                                      " leases");
  } catch (const std::exception& e) {
    log(log_level::warn, std::string("keepalive: renewing ") + std::to_string(batch.size()) +
                             " lease(s) failed, retrying: " + e.what());
    for (auto& lease : batch) {
      std::lock_guard<std::mutex> l(lease->mu);
      if (!lease->renewing_locked()) continue;
      if (lease->active_locked()) lease->state = lease_state::at_risk;
      lease->next_renewal = steady::now() + retry_delay(lease->ttl);
    }
    ios.clear();
    if (emit_)
      for (auto& lease : batch)
        emit_({event_kind::renew_failed, lease->name, lease->token, {}, e.what()});
    return;
  }
  std::vector<lock_event> events;
  auto round_trip = std::chrono::duration_cast<milliseconds>(steady::now() - sent);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto outcome = apply(*batch[i], results[i], sent, requests[i].ttl);
    if (outcome == renew_outcome::renewed)
      events.push_back({event_kind::renewed, batch[i]->name, batch[i]->token, round_trip, {}});
    if (outcome == renew_outcome::busy)
      events.push_back(
          {event_kind::renew_failed, batch[i]->name, batch[i]->token, round_trip,
           "not renewed: the row is held by an open fenced transaction, or the renewal "
           "reached the server before a failover"});
    if (outcome != renew_outcome::renewed && outcome != renew_outcome::busy &&
        batch[i]->state_is(lease_state::released))  // settled: the caller's transaction committed
      events.push_back(
          {event_kind::released, batch[i]->name, batch[i]->token,
           std::chrono::duration_cast<milliseconds>(steady::now() - batch[i]->granted_at),
           "released by the caller's transaction"});
    if (outcome == renew_outcome::renewed && batch[i]->state_is(lease_state::lost)) {
      // The renewal landed after the timer had declared the lease lost (the call outlived the
      // safety deadline). Nobody uses this lease any more: hand the row back to waiters now
      // rather than at its new expiry.
      try {
        db_.release(requests[i].key, steady::now() + operation_timeout_);
      } catch (const std::exception& e) {
        log(log_level::debug, std::string("keepalive: releasing a lost lease failed: ") + e.what());
      }
    }
    if (outcome == renew_outcome::busy) {
      // Expected while a release in the caller's transaction is pending.
      bool expected;
      {
        std::lock_guard<std::mutex> l(batch[i]->mu);
        expected = batch[i]->release_in_transaction;
      }
      log(expected ? log_level::debug : log_level::warn,
          "keepalive: lease " + quoted(batch[i]->name) + " (token " +
              std::to_string(batch[i]->token) +
              ") is locked by an open transaction (fenced, or releasing it); retrying");
    }
  }
  ios.clear();
  if (emit_)
    for (auto& e : events) emit_(e);
}

void keepalive::timer_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!pending_.empty()) {
      auto cbs = std::move(pending_);
      pending_.clear();
      lock.unlock();
      deliver(cbs);
      lock.lock();
      continue;
    }
    if (stopping_) break;
    auto now = steady::now();
    auto next = steady::time_point::max();
    std::vector<std::pair<std::shared_ptr<lease_impl>, bool>> expired;  // lease, was at risk
    std::vector<const lease_impl*> unsettled;
    for (auto& [ptr, lease] : leases_) {
      std::lock_guard<std::mutex> l(lease->mu);
      if (lease->release_in_transaction && !lease->active_locked()) {
        // A release in the caller's transaction whose outcome no renewal could learn before
        // the deadline: the lease ends released, as the caller meant it to.
        if (lease->safe_until <= now) {
          lease->release_in_transaction = false;
          unsettled.push_back(ptr);
        } else {
          next = std::min(next, lease->safe_until);
        }
        continue;
      }
      if (!lease->active_locked()) continue;
      if (lease->safe_until <= now)
        expired.emplace_back(lease, lease->state == lease_state::at_risk);
      else
        next = std::min(next, lease->safe_until);
    }
    for (auto* lease : unsettled) leases_.erase(lease);
    for (auto& [lease, at_risk] : expired) {
      bool revoked;
      {
        std::lock_guard<std::mutex> l(lease->mu);
        revoked = lease->revoke_heard;
      }
      declare_lost_locked(*lease, revoked ? revoked_reason
                                  : at_risk || lease->keepalive
                                      ? "safety deadline passed without a successful renewal"
                                      : "safety deadline passed (keepalive off)");
    }
    if (!expired.empty()) continue;
    timer_sleeps_until_ = next;
    timer_cv_.wait_until(lock, next);
    timer_sleeps_until_ = steady::time_point::min();
  }
}

std::vector<std::shared_ptr<lease_impl>> keepalive::stop() {
  std::vector<std::shared_ptr<lease_impl>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    renew_cv_.notify_all();
    timer_cv_.notify_all();
  }
  if (renewer_.joinable()) renewer_.join();
  if (timer_.joinable()) timer_.join();
  std::lock_guard<std::mutex> lock(mu_);
  started_ = false;
  for (auto& [ptr, lease] : leases_) left.push_back(lease);
  leases_.clear();
  return left;
}

}  // namespace sqlock::detail
