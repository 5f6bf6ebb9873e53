// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: a backend keeps the watches of its waiters here, by lock name, in arrival order, as
// weak pointers (a waiter that gives up simply drops its watch; dead entries are pruned as names
// are touched and in a full sweep every few hundred registrations). On a release the backend
// calls notify(name), which wakes ONE waiter: the oldest one without a pending wake-up. Waking
// all of them made every waiter send an acquire per release (6.8 statements per grant with 5
// waiters, measured); with one, a release costs one attempt per process. A waiter that leaves
// with its wake-up unconsumed hands it to the next one (release_watch::on_drop_pending).

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <sqlock/backend.hpp>

namespace sqlock::detail {

class watch_registry {
 public:
  watch_registry();
  std::shared_ptr<release_watch> watch(std::string_view name);
  /// Wakes the oldest waiter for `name` that has no wake-up pending.
  void notify(std::string_view name);
  /// Wakes the observers of `name` only (its lease changed but stays held: a proclaim).
  void notify_observers(std::string_view name);
  /// Delivers a lock a release handed to the queued waiter `h.nonce` (if it waits in this
  /// process) and wakes the observers of `name`. Returns whether the waiter was found.
  bool hand_off(std::string_view name, const handoff& h);
  /// Whether anyone in this process waits for `name` now.
  bool watched(std::string_view name);

 private:
  struct state {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<std::weak_ptr<release_watch>>> by_name;
    std::size_t registrations = 0;
    void notify_one(const std::string& name);
  };
  std::shared_ptr<state> state_;  // shared with the watches' hand-on callbacks
};

}  // namespace sqlock::detail
