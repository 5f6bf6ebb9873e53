// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::client, the entry point: acquires leases and administers lock rows.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/export.hpp>
#include <sqlock/lease.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

class backend;  // <sqlock/backend.hpp>: the seam, for those who implement or wrap it

namespace detail {
class client_core;
}

/// A connection to one lock table, shared by the threads of an application instance.
///
/// Ownership: owns (shares) its backend, and one keepalive thread plus one timer thread,
/// started with the first lease. The destructor calls `shutdown()`.
/// Thread safety: thread-safe; not copyable, not movable.
/// Throws: `sqlock::error`. "Held by someone else" is a normal result (`std::nullopt`).
/// Every operation first checks the schema version once and throws `errc::schema_mismatch`
/// when the database is not migrated to this library's version.
class SQLOCK_EXPORT client {
 public:
  /// Opens the backend `database_url` names (see `open_backend`); connects lazily.
  /// Throws: `errc::invalid_argument` for a bad URL or option.
  explicit client(const std::string& database_url, client_options options = {});
  explicit client(std::shared_ptr<backend> backend, client_options options = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;
  client(client&&) = delete;
  client& operator=(client&&) = delete;

  /// Returns: the lease, or empty when someone else holds the lock. One round trip when
  /// granted; a refusal never writes.
  [[nodiscard]] std::optional<lease> try_acquire(std::string_view name,
                                                 const lock_options& options = {});
  /// Waits up to `wait` for the lock: sleeps until the holder's expiry by the database clock,
  /// a release wake-up, or a capped jittered backoff, whichever is first.
  /// Returns: the lease, or empty when `wait` ran out. Throws: `errc::cancelled` on shutdown.
  [[nodiscard]] std::optional<lease> try_acquire_for(std::string_view name,
                                                     std::chrono::milliseconds wait,
                                                     const lock_options& options = {});
  /// Waits until granted. Throws: `errc::cancelled` on shutdown.
  [[nodiscard]] lease acquire(std::string_view name, const lock_options& options = {});

  /// Several locks at once, all or none: attempts to take every lock of `names` in one atomic
  /// step (one statement on PostgreSQL, one write transaction on SQLite), in byte order of the
  /// names whatever order they are given in, so callers asking for overlapping sets in any order
  /// never deadlock, and a refused attempt holds nothing and writes nothing. Waits up to `wait`
  /// (zero: one attempt) as `try_acquire_for` does, retrying whenever a name that refused it is
  /// released or its holder's lease runs out. Not fair: it takes no place in the names' queues
  /// (a single-name waiter queued on one of them goes first), so under steady contention on
  /// one of its names it may wait long. Each lease is an ordinary lease (own token, keepalive
  /// in the client's batched renewal, on_lost, release), all with `options`.
  /// Returns: the leases in the order of `names`, or empty when `wait` ran out.
  /// Throws: `errc::invalid_argument` before any I/O for an empty list, a name given twice, a
  /// bad name, ttl or metadata, a negative wait, or `options.fair`; `errc::cancelled` on
  /// shutdown; otherwise as `try_acquire_for` (an attempt whose outcome is unknown is cleaned
  /// up for every name).
  [[nodiscard]] std::optional<std::vector<lease>> try_acquire_all(
      const std::vector<std::string>& names, std::chrono::milliseconds wait,
      const lock_options& options = {});

  /// Semaphores: `options.count` units (all `options.limit` units when `options.exclusive`) of
  /// the semaphore `name`, created with `options.limit` on first use. Each acquisition is a
  /// lease like a lock's: its own fencing token (larger than every earlier grant's on this
  /// semaphore), keepalive, loss handling and release. Waiting as for locks; with
  /// `options.fair`, in arrival order (see `semaphore_options::fair`).
  /// Returns: empty when the units are not free (or older fair waiters queue) in time.
  /// Throws: as `try_acquire`; `errc::invalid_argument` for a bad count or limit, or a limit
  /// that differs from the one the semaphore's live holders use.
  [[nodiscard]] std::optional<lease> try_acquire_semaphore(std::string_view name,
                                                           const semaphore_options& options);
  [[nodiscard]] std::optional<lease> try_acquire_semaphore_for(std::string_view name,
                                                               std::chrono::milliseconds wait,
                                                               const semaphore_options& options);
  [[nodiscard]] lease acquire_semaphore(std::string_view name, const semaphore_options& options);
  /// The semaphore `name` with its live holders and queued waiters, or empty when there is none.
  std::optional<semaphore_record> inspect_semaphore(std::string_view name);
  std::vector<semaphore_record> list_semaphores(const list_filter& filter = {});
  /// Admin: ends the live holder of semaphore `name` with fencing token `token`, or every
  /// holder when `token` is 0, now (holders learn at their next renewal, as with
  /// `force_release`). Returns: how many leases it ended.
  std::size_t force_release_semaphore(std::string_view name, std::int64_t token = 0);

  /// Locks taken inside the caller's own transaction (`sqlock::postgresql::try_acquire` calls
  /// this first): a grant request for `name` with a fresh nonce, its clock started now.
  /// Throws: `errc::invalid_argument` for a bad name, ttl or metadata, before any I/O.
  [[nodiscard]] transaction_grant prepare_grant(std::string_view name,
                                                const lock_options& options = {}) const;
  /// Effects: once the transaction that made `grant` has committed, makes it a lease of this
  /// client: renewed once at once (which proves the grant is in the database), then in the
  /// background (`options.keepalive`), its safety deadline counted from `grant.sent`, lost and
  /// released as any other.
  /// Throws: `errc::lease_lost` when the grant is not in the database (its transaction did not
  /// commit) or no longer live; `errc::invalid_argument` for a grant without a token;
  /// `errc::unavailable` if that renewal cannot reach the database; `errc::cancelled` after
  /// shutdown.
  [[nodiscard]] lease adopt(const transaction_grant& grant);

  /// The row for `name`, or empty when there is none.
  std::optional<lock_record> inspect(std::string_view name);
  std::vector<lock_record> list(const list_filter& filter = {});
  /// Admin: ends whoever's lease it is, now. The holder learns at its next renewal (at most
  /// ttl/3 later); until then only fencing protects the resource.
  /// Returns: false when the lock was not held.
  bool force_release(std::string_view name);
  /// Admin, the polite `force_release`: asks the holder of lock `name` to finish and let go
  /// within `grace` (0 .. `max_ttl`). Its lease is no longer renewed past `grace` from now
  /// (database clock) and ends there at the latest, free for others as after `force_release`;
  /// the holder hears it at its next renewal (at most ttl/3 later; at once on PostgreSQL with
  /// notifications) through `lock_options::on_revoke_requested`, whose grace is the time then
  /// left. A second request can shorten the deadline, never extend it. A grace shorter than
  /// the holder's time to hear is, for that holder, a force release: only fencing protects the
  /// resource until it hears.
  /// Returns: false when the lock was not held (nothing is written).
  /// Throws: `errc::invalid_argument` for a bad name or grace, before any I/O.
  bool request_release(std::string_view name, std::chrono::milliseconds grace);
  /// As `request_release`, for the live holder of semaphore `name` with fencing token `token`,
  /// or every live holder when `token` is 0. Returns: how many holders were asked.
  std::size_t request_release_semaphore(std::string_view name, std::chrono::milliseconds grace,
                                        std::int64_t token = 0);
  /// Deletes rows free for at least `free_for` (by the database clock); returns the count.
  /// Tokens stay monotonic across purges: a purged name later gets a larger token.
  std::size_t purge(std::chrono::milliseconds free_for);

  /// History of leases (schema 10), for postmortems: who held what, when. Off by default;
  /// `enable_history` switches it for the whole database. Returns: the leases `filter`
  /// selects, oldest grant first: those that ended while the history was on, as recorded in
  /// the statement that ended them, and the current rows' leases not recorded yet (live, or
  /// lapsed: `expired`, ended at their expiry). Throws: `errc::invalid_argument` for a bad name
  /// or a negative `since`, before any I/O.
  std::vector<history_record> history(const history_filter& filter = {});
  /// Admin: records ended leases from now on (`on`), or stops recording (the recorded history
  /// stays). Every client of the database honours it. Returns: whether it was on before.
  bool enable_history(bool on = true);
  /// Whether ended leases are being recorded.
  bool history_enabled();
  /// Admin: deletes recorded leases that ended at least `older_than` ago (database clock).
  /// Returns: how many. Throws: `errc::invalid_argument` for a negative `older_than`.
  std::size_t purge_history(std::chrono::milliseconds older_than);

  /// 0 when not migrated.
  int schema_version();
  /// Applies pending migrations (repeatable; concurrent callers serialise); returns the version.
  int migrate();

  /// Wakes waiters (they throw `errc::cancelled`), stops the keepalive and releases every lease
  /// of this client, within a bounded time. Later calls throw `errc::cancelled`. Idempotent.
  void shutdown();
  const std::string& owner() const noexcept;
  /// The backend this client uses (for sharing it with another client).
  const std::shared_ptr<backend>& get_backend() const noexcept;

 private:
  friend class election;
  std::optional<lease> acquire_until(std::string_view name,
                                     std::chrono::steady_clock::time_point start,
                                     std::chrono::steady_clock::time_point until,
                                     const lock_options& options,
                                     const semaphore_options* semaphore = nullptr);
  std::shared_ptr<detail::client_core> core_;
};

}  // namespace sqlock
