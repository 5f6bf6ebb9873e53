// SPDX-License-Identifier: Apache-2.0
#include <algorithm>

#include "backends/common/watch_registry.hpp"

namespace sqlock {

release_watch::~release_watch() {
  if (notified_ && !cancelled_ && pass_on_ && !observer_) {
    try {
      pass_on_();
    } catch (...) {
    }
  }
}

void release_watch::expect_handoff(std::string nonce) {
  std::lock_guard<std::mutex> lock(mutex_);
  nonce_ = std::move(nonce);
  handoff_.reset();  // one for a previous nonce is void
}

bool release_watch::hand_off(const handoff& h) noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_ || nonce_.empty() || h.nonce != nonce_) return false;
    // The same handoff can arrive twice (the releasing process's own reply and its NOTIFY):
    // keep the newest token.
    if (!handoff_ || handoff_->granted.token < h.granted.token) handoff_ = h;
    notified_ = true;
  }
  cv_.notify_all();
  return true;
}

std::optional<handoff> release_watch::take_handoff() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::optional<handoff> out;
  out.swap(handoff_);
  return out;
}

void release_watch::notify() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    notified_ = true;
  }
  cv_.notify_all();
}

bool release_watch::try_notify() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (notified_ || cancelled_) return false;
    notified_ = true;
  }
  cv_.notify_all();
  return true;
}

void release_watch::cancel() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

release_watch::wake release_watch::wait_until(deadline until) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_until(lock, until, [&] { return notified_ || cancelled_; });
  if (cancelled_) return wake::cancelled;
  if (notified_) {
    notified_ = false;
    return wake::notified;
  }
  return wake::timeout;
}

namespace detail {

namespace {
void prune(std::vector<std::weak_ptr<release_watch>>& v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](const auto& w) { return w.expired(); }), v.end());
}
}  // namespace

watch_registry::watch_registry() : state_(std::make_shared<state>()) {}

std::shared_ptr<release_watch> watch_registry::watch(std::string_view name) {
  auto w = std::make_shared<release_watch>(std::string(name));
  std::weak_ptr<state> weak = state_;
  w->on_drop_pending([weak, n = w->name()] {
    if (auto s = weak.lock()) s->notify_one(n);
  });
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (++state_->registrations % 256 == 0) {
    for (auto it = state_->by_name.begin(); it != state_->by_name.end();) {
      prune(it->second);
      it = it->second.empty() ? state_->by_name.erase(it) : std::next(it);
    }
  }
  auto& v = state_->by_name[w->name()];
  prune(v);
  v.push_back(w);
  return w;
}

void watch_registry::state::notify_one(const std::string& name) {
  std::vector<std::shared_ptr<release_watch>> live;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = by_name.find(name);
    if (it == by_name.end()) return;
    for (auto& w : it->second)
      if (auto p = w.lock()) live.push_back(std::move(p));
    if (live.empty()) by_name.erase(it);
  }
  // Every observer, and the oldest waiter that has no wake-up pending; outside the registry
  // lock (a watch's hand-on re-enters notify_one).
  bool woke_one = false;
  for (auto& w : live) {
    if (w->observer())
      w->notify();
    else if (!woke_one)
      woke_one = w->try_notify();
  }
}

void watch_registry::notify(std::string_view name) { state_->notify_one(std::string(name)); }

void watch_registry::notify_observers(std::string_view name) {
  std::vector<std::shared_ptr<release_watch>> live;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto it = state_->by_name.find(std::string(name));
    if (it == state_->by_name.end()) return;
    for (auto& w : it->second)
      if (auto p = w.lock(); p && p->observer()) live.push_back(std::move(p));
  }
  for (auto& w : live) w->notify();
}

bool watch_registry::hand_off(std::string_view name, const handoff& h) {
  std::vector<std::shared_ptr<release_watch>> live;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto it = state_->by_name.find(std::string(name));
    if (it == state_->by_name.end()) return false;
    for (auto& w : it->second)
      if (auto p = w.lock()) live.push_back(std::move(p));
  }
  // The waiter whose nonce it is, and every observer (a new holder is a new term); no other
  // waiter: the lock is held again.
  bool delivered = false;
  for (auto& w : live) {
    if (w->observer())
      w->notify();
    else if (!delivered)
      delivered = w->hand_off(h);
  }
  return delivered;
}

bool watch_registry::watched(std::string_view name) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto it = state_->by_name.find(std::string(name));
  if (it == state_->by_name.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [](const auto& w) { return !w.expired(); });
}

}  // namespace detail
}  // namespace sqlock
