#pragma once
// Design: a backend keeps the watches of its waiters here, by lock name, as weak pointers (a
// waiter that gives up simply drops its watch; dead entries are pruned as names are touched
// and in a full sweep every few hundred registrations). The backend calls notify(name) when
// it learns of a release: its own release call, or a PostgreSQL notification.

#include <sqlock/backend.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sqlock::detail {

class watch_registry {
 public:
  std::shared_ptr<release_watch> watch(std::string_view name);
  void notify(std::string_view name);
  /// Whether anyone in this process waits for `name` now.
  bool watched(std::string_view name);

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<std::weak_ptr<release_watch>>> by_name_;
  std::size_t registrations_ = 0;
};

}  // namespace sqlock::detail
