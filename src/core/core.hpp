// SPDX-License-Identifier: Apache-2.0
#pragma once
// The shared core of a client: kept alive by the client object and by every lease it granted.

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>

#include <sqlock/backend.hpp>
#include <sqlock/types.hpp>

#include "core/keepalive.hpp"
#include "core/lease_impl.hpp"

namespace sqlock::detail {

/// The deadline of a wait of `wait` from `now` (saturated: a huge wait has none). Throws
/// errc::invalid_argument for a negative wait (`what` and `name` name the call in the message).
std::chrono::steady_clock::time_point wait_deadline(std::string_view what, std::string_view name,
                                                    std::chrono::steady_clock::time_point now,
                                                    std::chrono::milliseconds wait);

class client_core : public std::enable_shared_from_this<client_core> {
 public:
  client_core(std::shared_ptr<backend> db, client_options options);
  ~client_core();

  backend& db() noexcept { return *db_; }
  const std::shared_ptr<backend>& db_ptr() const noexcept { return db_; }
  const std::string& owner() const noexcept { return options_.owner; }
  keepalive& keeper() noexcept { return keepalive_; }
  deadline op_deadline() const { return steady::now() + options_.operation_timeout; }
  std::chrono::milliseconds operation_timeout() const { return options_.operation_timeout; }
  void log(log_level level, const std::string& message) const noexcept;
  /// Tells every listener, catching (and logging) what they throw. Call it holding no lock.
  void emit(const lock_event& event) const noexcept;
  /// Ends `lease` in the database (the caller already marked it released).
  void release_in_database(lease_impl& lease, deadline until);
  /// Reports a release to the listeners (hold no lock: a listener may call back into sqlock).
  void emit_released(const lease_impl& lease) const noexcept;

  /// Throws errc::cancelled after shutdown.
  void ensure_open() const;
  /// Checks the schema version once (until it succeeds); throws errc::schema_mismatch.
  void ensure_schema();
  void schema_migrated() noexcept { schema_ok_ = true; }

  /// What one acquire call asks for: a lock, or `units` of a semaphore. A call that waits keeps
  /// one nonce for all its attempts (it names the call's queue ticket); a single try draws one.
  struct target {
    std::string_view name;
    const lock_options& options;
    const semaphore_options* semaphore = nullptr;
    std::int64_t units = 1;
    std::string nonce;  // empty: a fresh one per attempt
    lease_kind kind() const noexcept {
      return semaphore ? lease_kind::semaphore : lease_kind::lock;
    }
  };
  /// One attempt of a call: whether it will wait if refused, whether it queues (takes or
  /// refreshes a ticket), and its number within the call (from 1).
  struct attempt_plan {
    bool waiting = false;
    bool queue = false;
    std::int64_t number = 1;
  };
  /// What a refused attempt learnt.
  struct refusal {
    std::chrono::milliseconds holder_left{0};
    bool queued = false;
    /// The attempt's outcome was unknown and its nonce was abandoned (set before the error is
    /// thrown): a grant to that nonce, handed over or not, is void from then on.
    bool abandoned = false;
  };
  /// One grant attempt. Returns the lease, or empty with what the refusal said.
  std::optional<std::shared_ptr<lease_impl>> attempt(const target& what, const attempt_plan& plan,
                                                     refusal& refused);
  /// A lease for a grant of `what` to `nonce`, whose local clock starts at `sent` (a moment
  /// known to precede the grant) and whose first term lasts `first` when shorter than the ttl,
  /// tracked by the keepalive.
  std::shared_ptr<lease_impl> adopt(const target& what, std::string nonce, const grant& granted,
                                    steady::time_point sent, std::chrono::milliseconds first = {});

  /// A release watch that shutdown() cancels.
  std::shared_ptr<release_watch> add_waiter(std::string_view name);
  void remove_waiter(const std::shared_ptr<release_watch>& watch);

  void shutdown();

 private:
  std::shared_ptr<backend> db_;
  client_options options_;
  keepalive keepalive_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> schema_ok_{false};
  std::mutex schema_mu_;
  std::mutex waiters_mu_;
  std::unordered_set<std::shared_ptr<release_watch>> waiters_;
};

}  // namespace sqlock::detail
