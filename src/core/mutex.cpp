// SPDX-License-Identifier: Apache-2.0
#include <sqlock/error.hpp>
#include <sqlock/mutex.hpp>

#include "util/util.hpp"

namespace sqlock {

mutex::mutex(client& c, std::string name, lock_options options)
    : client_(c), name_(std::move(name)), options_(std::move(options)) {}

mutex::~mutex() { unlock(); }

void mutex::check_not_held() const {
  // A held lease that was lost still counts: the owner must unlock() before locking again,
  // so that a loss is never silently papered over by a new lease.
  if (lease_)
    throw error(errc::usage, "sqlock::mutex " + detail::quoted(name_) +
                                 ": lock() on a mutex this object already holds; unlock() first");
}

void mutex::lock() {
  check_not_held();
  lease_.emplace(client_.acquire(name_, options_));
}

bool mutex::try_lock() {
  check_not_held();
  lease_ = client_.try_acquire(name_, options_);
  return lease_.has_value();
}

bool mutex::try_lock_wait(std::chrono::milliseconds wait) {
  check_not_held();
  lease_ =
      client_.try_acquire_for(name_, std::max(wait, std::chrono::milliseconds::zero()), options_);
  return lease_.has_value();
}

void mutex::unlock() noexcept {
  if (!lease_) return;
  std::optional<lease> held = std::move(lease_);
  lease_.reset();
  try {
    held->release();
  } catch (...) {
    // The lease ended locally; its row expires by itself. The client's log hook was told by
    // the release path.
  }
}

std::int64_t mutex::token() const {
  if (!lease_)
    throw error(errc::usage,
                "sqlock::mutex " + detail::quoted(name_) + ": token() while not locked");
  return lease_->token();
}

}  // namespace sqlock
