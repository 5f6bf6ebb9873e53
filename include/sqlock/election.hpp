// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::election: leader election on a lease, in the spirit of etcd's concurrency.Election.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <sqlock/client.hpp>
#include <sqlock/export.hpp>
#include <sqlock/lease.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

namespace detail {
struct observer_state;
}

/// The current leader of an election, as the database sees it.
struct leader_info {
  std::string value;  ///< what the leader published when it campaigned
  std::string owner;  ///< the leader's client owner
  /// The leader's term: its lease's fencing token. Every new leader has a larger one, so the
  /// term doubles as the fencing token of whatever the leader writes.
  std::int64_t term = 0;
  std::chrono::milliseconds expires_in{0};  ///< of its current lease, by the database clock
};

/// A running `election::observe`: the callback runs on its own thread until `stop()` or the
/// destructor (or the client's shutdown). Move-only.
class SQLOCK_EXPORT observation {
 public:
  observation() = default;
  observation(observation&&) noexcept = default;
  observation& operator=(observation&& other) noexcept;
  ~observation();
  /// Stops the observer thread and waits for it (called from the callback itself, it does not
  /// wait: no further call follows the current one). Idempotent; never throws.
  void stop() noexcept;

 private:
  friend class election;
  explicit observation(std::shared_ptr<detail::observer_state> state) noexcept
      : state_(std::move(state)) {}
  std::shared_ptr<detail::observer_state> state_;
};

/// One candidate in the election `name`. The leader holds the lock `name` (a lease, renewed in
/// the background) whose metadata is its value and whose fencing token is its term; so
/// `sqlock show NAME` shows the leader, and at most one candidate is leader at any instant by
/// the database clock.
///
/// Ownership: refers to `c`, which must outlive it; the destructor resigns.
/// Thread safety: thread-safe.
/// Throws: `sqlock::error` as `client` does.
class SQLOCK_EXPORT election {
 public:
  /// `options` are the leadership lease's (ttl, keepalive, on_lost); its metadata is replaced
  /// by the value of each campaign.
  election(client& c, std::string name, lock_options options = {});
  ~election();
  election(const election&) = delete;
  election& operator=(const election&) = delete;

  /// Blocks until this candidate is leader, publishing `value` (at most `max_metadata_bytes`).
  /// Returns: the term. Throws `errc::usage` when already leader; `errc::cancelled` on shutdown.
  std::int64_t campaign(std::string value);
  /// As `campaign`, waiting at most `wait`. Returns: whether this candidate became leader.
  bool try_campaign_for(std::string value, std::chrono::milliseconds wait);
  /// Effects: publishes `value` in place of the value this leader campaigned (or last
  /// proclaimed) with, keeping its term: `leader()` and `sqlock show` read it at once, and
  /// observers are called with it (at once in this process and, on PostgreSQL, in others; by
  /// SQLite's other processes at their next poll). Never changes the row once the leadership
  /// has ended.
  /// Throws: `errc::invalid_argument` (before any I/O) when `value` is longer than
  /// `max_metadata_bytes` or not UTF-8; `errc::usage` when this candidate has not won (or has
  /// resigned); `errc::lease_lost` when its leadership is lost; `errc::unavailable` as
  /// `lease::renew` (retry).
  void proclaim(std::string value);
  /// Gives up the leadership (ends the lease now, waking the other candidates and observers).
  /// A no-op when not leader. Throws `errc::unavailable` as `lease::release`.
  void resign();
  /// Whether this candidate holds a live leadership lease (false once it is lost).
  bool is_leader() const;
  /// This candidate's term, or 0 when it is not leader.
  std::int64_t term() const;
  /// The leadership lease's state (`released` when this candidate has not won or resigned) and
  /// its time left until the local safety deadline (see `lease::remaining`), so a leader can
  /// stop its work before anyone else can be elected.
  lease_state state() const;
  std::chrono::milliseconds remaining() const;
  /// The current leader by the database, or empty when there is none.
  std::optional<leader_info> leader();
  /// Calls `on_change` with the current leader at once, then each time the leader changes
  /// (another term, or empty when the office falls vacant) or proclaims another value, from a
  /// thread of its own. On
  /// PostgreSQL the observer is woken by the release notification; it also wakes when the
  /// leader's lease runs out, and checks at least every `poll` otherwise (elections won on
  /// SQLite by another process, or a notification lost). The callback must not block long.
  observation observe(std::function<void(const std::optional<leader_info>&)> on_change,
                      std::chrono::milliseconds poll = std::chrono::milliseconds{1000});
  const std::string& name() const noexcept { return name_; }

 private:
  client& client_;
  std::string name_;
  lock_options options_;
  mutable std::mutex mu_;
  std::optional<lease> leadership_;
};

}  // namespace sqlock
