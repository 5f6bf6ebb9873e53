// SPDX-License-Identifier: Apache-2.0
// The fault-injecting backend wrapper of <sqlock/testing.hpp>: each order is a count of shots
// that the next matching calls consume, under one mutex that is never held across a call to the
// wrapped backend (a stalled renewal must not block an acquire).

#include <thread>

#include <sqlock/testing.hpp>

#include "backends/common/backend_common.hpp"
#include "util/util.hpp"

namespace sqlock::testing {

namespace {
void check_count(int n, const char* what) {
  if (n < 0)
    throw error(errc::invalid_argument,
                std::string("fault_injector::") + what + ": the count must not be negative");
}
}  // namespace

fault_injector::fault_injector(std::shared_ptr<backend> wrapped)
    : backend_wrapper(std::move(wrapped)) {}

void fault_injector::fail_renewals(int n) {
  check_count(n, "fail_renewals");
  std::lock_guard<std::mutex> lock(mu_);
  renew_failures_ += n;
}

void fault_injector::stall_renewals(std::chrono::milliseconds d, int n) {
  check_count(n, "stall_renewals");
  if (d < std::chrono::milliseconds::zero())
    throw error(errc::invalid_argument, "fault_injector::stall_renewals: negative duration");
  std::lock_guard<std::mutex> lock(mu_);
  stall_ = d;
  renew_stalls_ += n;
}

void fault_injector::lose_lease(renew_outcome outcome, std::string name) {
  if (outcome == renew_outcome::renewed || outcome == renew_outcome::busy)
    throw error(errc::invalid_argument,
                "fault_injector::lose_lease: the outcome must be a loss (taken_over, "
                "force_released, expired or missing)");
  std::lock_guard<std::mutex> lock(mu_);
  losses_.push_back({outcome, std::move(name)});
}

void fault_injector::acquire_in_doubt(int n) {
  check_count(n, "acquire_in_doubt");
  std::lock_guard<std::mutex> lock(mu_);
  in_doubt_ += n;
}

void fault_injector::fail_acquires(int n) {
  check_count(n, "fail_acquires");
  std::lock_guard<std::mutex> lock(mu_);
  acquire_failures_ += n;
}

void fault_injector::fail_releases(int n) {
  check_count(n, "fail_releases");
  std::lock_guard<std::mutex> lock(mu_);
  release_failures_ += n;
}

void fault_injector::fail_abandons(int n) {
  check_count(n, "fail_abandons");
  std::lock_guard<std::mutex> lock(mu_);
  abandon_failures_ += n;
}

void fault_injector::advance(std::chrono::milliseconds d) {
  auto* memory = dynamic_cast<memory_backend*>(&wrapped());
  if (!memory)
    throw error(errc::usage, "fault_injector::advance: the wrapped backend is " +
                                 std::string(wrapped().kind()) +
                                 ", not a memory_backend: its clock is the database's own");
  memory->advance(d);
}

void fault_injector::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  renew_failures_ = renew_stalls_ = in_doubt_ = acquire_failures_ = 0;
  release_failures_ = abandon_failures_ = 0;
  losses_.clear();
}

int fault_injector::renew_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return renew_calls_;
}

int fault_injector::acquire_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return acquire_calls_;
}

bool fault_injector::take(int& count) {
  if (count <= 0) return false;
  --count;
  return true;
}

void fault_injector::fail(errc code, const std::string& what) const {
  throw error(code, what + " on " + std::string(wrapped().kind()) + " (injected by fault_injector)",
              std::string(wrapped().kind()));
}

int fault_injector::acquire_fault() {
  std::lock_guard<std::mutex> lock(mu_);
  ++acquire_calls_;
  if (take(acquire_failures_)) return 1;
  if (take(in_doubt_)) return 2;
  return 0;
}

acquire_result fault_injector::try_acquire(const acquire_request& r, deadline until) {
  const int fault = acquire_fault();
  const std::string what = "acquire " + sqlock::detail::quoted(r.name);
  if (fault == 1) fail(errc::unavailable, what + ": connection refused");
  auto out = wrapped().try_acquire(r, until);
  if (fault == 2) fail(errc::in_doubt, what + ": connection lost before the reply");
  return out;
}

acquire_result fault_injector::try_acquire_semaphore(const semaphore_request& r, deadline until) {
  const int fault = acquire_fault();
  const std::string what = "acquire semaphore " + sqlock::detail::quoted(r.name);
  if (fault == 1) fail(errc::unavailable, what + ": connection refused");
  auto out = wrapped().try_acquire_semaphore(r, until);
  if (fault == 2) fail(errc::in_doubt, what + ": connection lost before the reply");
  return out;
}

std::vector<renew_result> fault_injector::renew(const std::vector<renew_request>& requests,
                                                deadline until) {
  bool failing = false;
  std::optional<std::chrono::milliseconds> stall;
  std::vector<std::optional<renew_outcome>> lost(requests.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++renew_calls_;
    failing = take(renew_failures_);
    if (!failing && take(renew_stalls_)) stall = stall_;
    if (!failing) {
      // Each order takes the first lease of this call that it names and no order took yet.
      for (auto order = losses_.begin(); order != losses_.end();) {
        bool matched = false;
        for (std::size_t i = 0; i < requests.size() && !matched; ++i) {
          if (lost[i] || (!order->name.empty() && order->name != requests[i].key.name)) continue;
          lost[i] = order->outcome;
          matched = true;
        }
        order = matched ? losses_.erase(order) : std::next(order);
      }
    }
  }
  const std::string what = sqlock::detail::quoted(requests.empty() ? "" : requests[0].key.name);
  if (failing) fail(errc::unavailable, "renew " + what + ": connection refused");
  if (stall) {
    // A stuck connection: the call's deadline does not cut it short (the client's timer must
    // declare the loss at the safety deadline all the same); it reports its timeout late.
    std::this_thread::sleep_for(*stall);
    if (std::chrono::steady_clock::now() > until)
      fail(errc::unavailable, "renew " + what + ": timed out (stalled past the call's deadline)");
  }
  // End the leases for real first, so that the database agrees with what is reported (the
  // name is free for others, a queued waiter is handed the lock).
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!lost[i]) continue;
    const auto& key = requests[i].key;
    if (*lost[i] != renew_outcome::force_released)
      wrapped().release(key, until);
    else if (key.kind == lease_kind::semaphore)
      wrapped().force_release_semaphore(key.name, key.token, until);
    else if (auto row = wrapped().inspect(key.name, until);
             row && row->held && row->token == key.token)
      // Force release ends whoever holds the name: only while it is still this lease.
      wrapped().force_release(key.name, until);
  }
  auto out = wrapped().renew(requests, until);
  for (std::size_t i = 0; i < requests.size() && i < out.size(); ++i)
    if (lost[i]) out[i] = sqlock::detail::not_renewed(*lost[i]);
  return out;
}

bool fault_injector::release(const lease_key& key, deadline until) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (take(release_failures_))
      fail(errc::unavailable,
           "release " + sqlock::detail::quoted(key.name) + ": connection refused");
  }
  return wrapped().release(key, until);
}

bool fault_injector::abandon(const lease_key& key, deadline until) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (take(abandon_failures_))
      fail(errc::unavailable,
           "clean up acquire " + sqlock::detail::quoted(key.name) + ": connection refused");
  }
  return wrapped().abandon(key, until);
}

}  // namespace sqlock::testing
