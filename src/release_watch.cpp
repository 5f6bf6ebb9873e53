#include <algorithm>

#include "watch_registry.hpp"

namespace sqlock {

void release_watch::notify() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    notified_ = true;
  }
  cv_.notify_all();
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

std::shared_ptr<release_watch> watch_registry::watch(std::string_view name) {
  auto w = std::make_shared<release_watch>(std::string(name));
  std::lock_guard<std::mutex> lock(mutex_);
  if (++registrations_ % 256 == 0) {
    for (auto it = by_name_.begin(); it != by_name_.end();) {
      prune(it->second);
      it = it->second.empty() ? by_name_.erase(it) : std::next(it);
    }
  }
  auto& v = by_name_[w->name()];
  prune(v);
  v.push_back(w);
  return w;
}

void watch_registry::notify(std::string_view name) {
  std::vector<std::shared_ptr<release_watch>> live;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_name_.find(std::string(name));
    if (it == by_name_.end()) return;
    for (auto& w : it->second)
      if (auto p = w.lock()) live.push_back(std::move(p));
    if (live.empty()) by_name_.erase(it);
  }
  for (auto& w : live) w->notify();
}

bool watch_registry::watched(std::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [](const auto& w) { return !w.expired(); });
}

}  // namespace detail
}  // namespace sqlock
