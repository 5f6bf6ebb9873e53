// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::lease, the handle to one granted lock.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sqlock/export.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

namespace detail {
struct lease_impl;
}

/// A granted lock: a lease with a fencing token, renewed in the background (unless
/// `lock_options::keepalive` is false) until released or lost.
///
/// Ownership: move-only; the destructor releases and never throws. A lease keeps its client's
/// core alive, so it may outlive the `client` object (which releases it when it shuts down).
/// A moved-from lease holds nothing.
/// Thread safety: thread-safe (the keepalive updates it concurrently; so may user threads).
/// Throws: `renew` and `release` throw `sqlock::error` as documented on each.
class SQLOCK_EXPORT lease {
 public:
  lease(lease&&) noexcept;
  lease& operator=(lease&&) noexcept;  ///< releases what this lease held first
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  ~lease();

  const std::string& name() const noexcept;
  /// A lease on a lock or on a semaphore (`client::acquire_semaphore`).
  lease_kind kind() const noexcept;
  /// Units held: 1 for a lock, the acquisition's count for a semaphore.
  std::int64_t count() const noexcept;
  /// The fencing token: larger than every earlier grant's token for this name. Pass it to the
  /// protected resource, which rejects writes carrying a smaller one.
  std::int64_t token() const noexcept;
  /// When the lease ends by the database clock, as of the last grant or renewal (display only).
  std::chrono::system_clock::time_point expires_at() const;
  /// Time left until the local safety deadline (no round trip); zero once lost or released.
  /// The safety deadline is (time the last successful grant/renewal was sent) + ttl - margin:
  /// the database cannot have given the lock to anyone else before it.
  std::chrono::milliseconds remaining() const;
  lease_state state() const noexcept;
  /// True once the lease is lost: taken over, force released, or its safety deadline passed.
  bool lost() const noexcept;
  /// Held (or at risk) and not lost or released.
  explicit operator bool() const noexcept;

  /// Effects: extends the lease to at least `ttl` from now by the database clock (default: its
  /// current ttl), and sets the local safety deadline from `ttl`; a new ttl is kept for later
  /// renewals. The database never shortens a lease on renewal (a delayed renewal could
  /// otherwise end it behind the holder's back): a shorter `ttl` shortens only `remaining()`.
  /// Returns: true when renewed, false when the lease is lost or released (never revived).
  /// Throws: `errc::unavailable` on a transient failure (the lease is then `at_risk`), including
  /// a renewal that reached the server from before a failover (backend::server_epoch);
  /// `errc::invalid_argument` for a ttl out of range.
  bool renew(std::optional<std::chrono::milliseconds> ttl = {});
  /// Effects: ends the lease in the database now, waking waiters. Idempotent; a no-op on a
  /// lost lease. Throws: `errc::unavailable` if the database cannot be reached (the lease ends
  /// locally either way; the row expires by itself).
  void release();
  /// For a release made by SQL inside the caller's own transaction
  /// (`sqlock::postgresql::release` calls this once its statement ended the lease there): the
  /// lease is `released` at once, and the keepalive goes on renewing it to learn the outcome.
  /// The open transaction holds the lock row, so renewals wait for it to end; then a renewal
  /// that succeeds shows it did not commit, and the lease is `held` again; one that finds the
  /// lease ended shows it committed (event `released`). `renew()` settles it at once; past the
  /// lease's safety deadline it stays released. `release()` ends it in the database whatever
  /// the transaction did. Leases of locks only.
  /// Throws: `errc::invalid_argument` for a semaphore lease.
  void expect_release_in_transaction();
  /// Effects: sets the metadata stored in the lease's row (what `list`, `show` and an election's
  /// observers read) to `metadata`, while the lease is live; its expiry, token and owner stay.
  /// An ended lease is never revived nor changed. Leases of locks only.
  /// Throws: `errc::invalid_argument` (before any I/O) for metadata that is too long or not
  /// UTF-8, or a semaphore lease; `errc::lease_lost` when the lease is not live (lost, released,
  /// or found ended in the database); `errc::unavailable` when the database cannot be reached
  /// or the row is locked by an open fenced transaction (retry).
  void update_metadata(std::string_view metadata);
  /// The lease's identity in its lock row, besides the token: what SQL acting on this lease
  /// names (`sqlock_release(name, token, nonce)`), since tokens alone are easy to guess.
  const std::string& nonce() const noexcept;

 private:
  friend class client;
  explicit lease(std::shared_ptr<detail::lease_impl> impl) noexcept;
  std::shared_ptr<detail::lease_impl> impl_;
};

}  // namespace sqlock
