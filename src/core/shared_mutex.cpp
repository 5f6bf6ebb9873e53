// SPDX-License-Identifier: Apache-2.0
#include <sqlock/error.hpp>
#include <sqlock/shared_mutex.hpp>

#include "util/util.hpp"

namespace sqlock {

namespace {
semaphore_options with_units(const lock_options& base, bool exclusive, bool fair) {
  semaphore_options o;
  static_cast<lock_options&>(o) = base;
  o.limit = max_semaphore_limit;
  o.exclusive = exclusive;
  o.fair = fair;
  return o;
}
}  // namespace

shared_mutex::shared_mutex(client& c, std::string name, lock_options options, bool fair)
    : client_(c),
      name_(std::move(name)),
      shared_(with_units(options, false, fair)),
      exclusive_(with_units(options, true, fair)) {}

shared_mutex::~shared_mutex() {
  unlock();
  std::map<std::thread::id, std::vector<lease>> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    readers.swap(readers_);
  }
  // Leases release in their destructors, which never throw.
}

std::optional<lease> shared_mutex::take(bool exclusive,
                                        std::optional<std::chrono::milliseconds> wait) {
  const auto& o = exclusive ? exclusive_ : shared_;
  if (!wait) return client_.acquire_semaphore(name_, o);
  if (*wait <= std::chrono::milliseconds::zero()) return client_.try_acquire_semaphore(name_, o);
  return client_.try_acquire_semaphore_for(name_, *wait, o);
}

void shared_mutex::lock() { try_lock_wait(std::chrono::milliseconds::max()); }
bool shared_mutex::try_lock() { return try_lock_wait(std::chrono::milliseconds::zero()); }

bool shared_mutex::try_lock_wait(std::chrono::milliseconds wait) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A lost exclusive lease still counts: the owner must unlock() first, so that a loss is
    // never silently papered over by a new lease.
    if (writer_)
      throw error(errc::usage, "sqlock::shared_mutex " + detail::quoted(name_) +
                                   ": lock() while this object holds the exclusive lock");
  }
  auto got = take(true, wait == std::chrono::milliseconds::max()
                            ? std::nullopt
                            : std::optional<std::chrono::milliseconds>(wait));
  if (!got) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (writer_)  // two threads raced to lock() the same object: hand the second one back
    throw error(errc::usage, "sqlock::shared_mutex " + detail::quoted(name_) +
                                 ": lock() from two threads on one object");
  writer_ = std::move(got);
  return true;
}

void shared_mutex::unlock() noexcept {
  std::optional<lease> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held.swap(writer_);
  }
  if (!held) return;
  try {
    held->release();
  } catch (...) {
    // Ended locally; the row expires by itself (the client's log hook was told).
  }
}

void shared_mutex::lock_shared() { try_lock_shared_wait(std::chrono::milliseconds::max()); }
bool shared_mutex::try_lock_shared() {
  return try_lock_shared_wait(std::chrono::milliseconds::zero());
}

bool shared_mutex::try_lock_shared_wait(std::chrono::milliseconds wait) {
  auto got = take(false, wait == std::chrono::milliseconds::max()
                             ? std::nullopt
                             : std::optional<std::chrono::milliseconds>(wait));
  if (!got) return false;
  std::lock_guard<std::mutex> lock(mu_);
  readers_[std::this_thread::get_id()].push_back(std::move(*got));
  return true;
}

void shared_mutex::unlock_shared() noexcept {
  std::optional<lease> held;
  try {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = readers_.find(std::this_thread::get_id());
    if (it == readers_.end()) it = readers_.begin();  // unlocked by another thread than locked
    if (it == readers_.end()) return;
    held.emplace(std::move(it->second.back()));
    it->second.pop_back();
    if (it->second.empty()) readers_.erase(it);
  } catch (...) {
    return;
  }
  try {
    held->release();
  } catch (...) {
  }
}

std::int64_t shared_mutex::token() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (writer_) return writer_->token();
  auto it = readers_.find(std::this_thread::get_id());
  if (it != readers_.end() && !it->second.empty()) return it->second.back().token();
  throw error(errc::usage, "sqlock::shared_mutex " + detail::quoted(name_) +
                               ": token() while this thread holds no lock on it");
}

}  // namespace sqlock
