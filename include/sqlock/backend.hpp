// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// The seam between the lease logic and a database. A backend knows SQL and connections; it
/// knows nothing of leases' local state (deadlines, keepalive, callbacks). Everything above it
/// is SQL-free. Implementations: sqlite (src/backends/sqlite/) and postgresql
/// (src/backends/postgresql/).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/error.hpp>
#include <sqlock/export.hpp>
#include <sqlock/release_watch.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

/// The first term of a lease a release hands to a queued waiter: `handoff_ttl`, or (0) the
/// ticket's life (`ticket_ttl`, or fair_ticket_ttl when 0), never longer than `ttl`.
inline std::chrono::milliseconds first_handoff_term(std::chrono::milliseconds ttl,
                                                    std::chrono::milliseconds ticket_ttl,
                                                    std::chrono::milliseconds handoff_ttl) {
  const auto ticket = ticket_ttl > std::chrono::milliseconds::zero() ? ticket_ttl : fair_ticket_ttl;
  return std::min(ttl, handoff_ttl > std::chrono::milliseconds::zero() ? handoff_ttl : ticket);
}

/// One grant attempt. `nonce` is fresh per attempt and is the lease's identity from then on.
struct acquire_request {
  std::string name;
  std::string owner;
  std::string nonce;
  std::string metadata;
  std::chrono::milliseconds ttl{0};
  /// The caller will wait if refused: the backend may mark the row so that the holder's
  /// release wakes waiters (PostgreSQL NOTIFY). A plain try_acquire never marks.
  bool waiting = false;
  /// Granted only when no live ticket of another waiter is older than this nonce's (with no
  /// ticket of its own: when no live ticket exists). See `lock_options::fair`.
  bool fair = false;
  /// When refused (and `waiting`): take a ticket in the name's queue, or refresh the one this
  /// nonce has, to live `ticket_ttl` from now and remember `attempt`. A release then hands the
  /// lock to the oldest live ticket (see `handoff`). A waiter keeps its nonce for every
  /// attempt of one wait, numbers them from 1, and attempts again before `ticket_ttl` passes.
  /// An attempt that finds the lock already handed to its nonce extends that lease as a
  /// renewal would (expiry max(current, now + ttl)) and returns it as granted.
  bool queue = false;
  std::chrono::milliseconds ticket_ttl{0};
  std::int64_t attempt = 0;
  /// The first term of a lock a release hands to this waiter (0: min(ttl, ticket_ttl)). A
  /// waiter whose lease is kept alive asks for at most the ticket's life, so one that died
  /// after its last refresh holds the lock up no longer than its ticket would have; one that
  /// is not kept alive asks for its whole ttl, the term it would have had from its own attempt.
  std::chrono::milliseconds handoff_ttl{0};

  /// The term a backend writes into this waiter's ticket: `handoff_ttl` (or its default),
  /// never longer than `ttl`.
  std::chrono::milliseconds handoff_term() const {
    return first_handoff_term(ttl, ticket_ttl, handoff_ttl);
  }
};

struct acquire_result {
  std::optional<grant> granted;  ///< empty: someone else holds it
  /// When refused: the holder's remaining lease, computed by the database (> 0), or 0 when
  /// unknown (the row is locked by another transaction: the caller backs off). For a
  /// semaphore: the time until the first holder's lease or older ticket lapses by itself
  /// (0 when unknown).
  std::chrono::milliseconds holder_expires_in{0};
  /// When refused: this nonce has a live ticket in the queue after the attempt (the caller
  /// must attempt again before the ticket lapses, and `abandon` it when it gives up).
  bool queued = false;
  /// In a refused `backend::try_acquire_all`: this name is one the attempt was refused on (held,
  /// or its row locked by another transaction), with `holder_expires_in` as above. The other
  /// names of a refused attempt were free and were left untouched.
  bool blocking = false;
};

/// What a backend's `release` or `abandon` throws when the lease's row is locked by another
/// open transaction (a fenced transaction, possibly the caller's own) and it did not wait for
/// it: the lease is not ended yet, and the client retries in the background. An
/// `errc::unavailable` error, so code that does not know it sees a transient failure.
class SQLOCK_EXPORT row_locked : public error {
 public:
  explicit row_locked(const std::string& message, std::string backend = {},
                      std::string sqlstate = {})
      : error(errc::unavailable, message, std::move(backend), std::move(sqlstate)) {}
};

/// What the history operations of `backend` throw by default: a backend written before schema
/// 10 keeps no history. An `errc::usage` error (the caller asked for something this backend
/// cannot do).
class SQLOCK_EXPORT unsupported_operation : public error {
 public:
  explicit unsupported_operation(const std::string& message, std::string backend = {})
      : error(errc::usage, message, std::move(backend)) {}
};

/// PostgreSQL's lock_not_available, the sqlstate a `row_locked` from PostgreSQL carries.
/// (Before `row_locked` existed, this sqlstate on an `unavailable` error was the signal; the
/// client still honours it from backends written against that.)
inline constexpr std::string_view sqlstate_row_locked = "55P03";

/// A lease's identity in the database.
struct lease_key {
  std::string name;
  std::string nonce;
  std::int64_t token = 0;
  lease_kind kind = lease_kind::lock;
};

/// One grant attempt on a semaphore: `count` units of a semaphore of `limit` units. The nonce
/// is the acquisition's identity (and its queue ticket's, when `fair`); the client keeps it for
/// every attempt of one wait.
struct semaphore_request {
  std::string name;
  std::string owner;
  std::string nonce;
  std::string metadata;
  std::int64_t limit = 1;
  std::int64_t count = 1;
  std::chrono::milliseconds ttl{0};
  /// As in acquire_request: mark the semaphore so that releases wake waiters.
  bool waiting = false;
  /// When refused (and `waiting`): take a ticket in the queue, or keep the one this nonce has,
  /// and extend it to `ticket_ttl` from now. Granted only when no live ticket is older.
  bool fair = false;
  std::chrono::milliseconds ticket_ttl{0};
  /// As in acquire_request: the number of this attempt within its wait (from 1), and the
  /// first term of units a release hands to this waiter's ticket (schema 6: a release hands
  /// the room it makes to the oldest tickets that fit; a later attempt that finds its nonce
  /// holding returns that grant).
  std::int64_t attempt = 0;
  std::chrono::milliseconds handoff_ttl{0};

  std::chrono::milliseconds handoff_term() const {
    return first_handoff_term(ttl, ticket_ttl, handoff_ttl);
  }
};

/// Options of `backend::migrate_with`.
struct migrate_options {
  /// Let a down step drop live lock leases and semaphore holders instead of refusing. Their
  /// holders are not told: they keep working under tokens the database forgets (after the next
  /// `migrate up`, tokens start again at 1).
  bool force = false;
};

struct renew_request {
  lease_key key;
  /// The new expiry is max(current expiry, database now + ttl): a renewal never shortens a
  /// lease, so a renewal that reaches the server late (after a newer one) cannot cut short the
  /// time its holder believes in.
  std::chrono::milliseconds ttl{0};
};

/// The outcome of renewing one lease. Every outcome but `renewed` and `busy` is final.
enum class renew_outcome {
  renewed,         ///< expires_at moved to max(expires_at, now + ttl)
  busy,            ///< the row is locked by a fenced transaction: not renewed, try again soon
  expired,         ///< still our row but its lease ended (expiry or our own release)
  taken_over,      ///< another nonce or token holds the row
  force_released,  ///< an admin ended the lease (`force_release`)
  missing,         ///< no lock row (purged). A semaphore holder whose row is gone (deleted
                   ///< by a later grant after it ended) is reported `expired`.
  revoked,         ///< ended by a release request's deadline (request_release), not released
};

struct renew_result {
  renew_outcome outcome = renew_outcome::expired;
  std::chrono::system_clock::time_point expires_at;  ///< when renewed, by the database clock
  /// The server epoch (backend::server_epoch) of the connection that renewed it; 0: not tracked.
  std::uint64_t server_epoch = 0;
  /// When renewed: the lease's time left after the renewal, by the database clock (its
  /// expiry minus the statement's now; normally >= the requested ttl). Shorter than the ttl
  /// when a release request caps the lease, and then the client's safety deadline follows it.
  /// 0: the backend does not say (the ttl is assumed).
  std::chrono::milliseconds expires_in{0};
  /// When renewed: a release request is pending on this lease (request_release), and this is
  /// the time left until its deadline, by the database clock. The lease is not extended past it.
  std::optional<std::chrono::milliseconds> revoke_in;
};

/// A database that stores lock rows. Implementations own their connections and are
/// thread-safe: the client calls them from user threads, its keepalive and waiters at once.
/// Throws: `sqlock::error`; native errors are translated at the backend's boundary.
class SQLOCK_EXPORT backend {
 public:
  virtual ~backend() = default;

  /// "sqlite", "postgresql" or "memory" (<sqlock/testing.hpp>).
  virtual std::string_view kind() const noexcept = 0;
  /// Where it points, for messages; never includes a password.
  virtual std::string describe() const = 0;

  /// The version of sqlock's schema in the database; 0 when not migrated.
  virtual int schema_version(deadline until) = 0;
  /// The newest version this library's embedded migrations know.
  virtual int latest_schema_version() const noexcept = 0;
  /// Applies up (or down) migrations until the schema is at `target`; returns the new version.
  /// Concurrent runners serialise. SQLite: the only call that creates a missing database file.
  virtual int migrate(int target, deadline until) = 0;
  /// As `migrate`. sqlock's backends refuse a down step that would drop live lock leases or
  /// semaphore holders unless `options.force` (in `migrate` too): they throw
  /// `errc::invalid_argument` saying how many are live and naming a few, and change nothing;
  /// with `force` they log a warning and drop them. Default (for other backends): `migrate`.
  virtual int migrate_with(int target, const migrate_options& options, deadline until) {
    (void)options;
    return migrate(target, until);
  }

  /// Grants the lease if the row is missing or expired. A refusal never writes, except the
  /// waiter mark of `acquire_request::waiting`. If the outcome cannot be known (the connection
  /// dropped after sending), throws `errc::in_doubt`; the caller then calls `abandon`.
  virtual acquire_result try_acquire(const acquire_request& request, deadline until) = 0;
  /// Grants every lock of `requests` or none: one result per request, in order, either all
  /// granted or none. The names are distinct; the client sends them in byte order (the order a
  /// backend that locks rows one by one should lock them in). When refused, the names that
  /// refused it are marked `blocking` and nothing is written for any name, except the waiter
  /// marks of `waiting` requests; no name is queued (`fair` and `queue` are ignored: such waits
  /// are not fair). If the outcome cannot be known, throws `errc::in_doubt`; the caller then calls
  /// `abandon` for every name (with its request's nonce).
  /// sqlock's backends do it in one atomic step (SQLite: one write transaction; PostgreSQL: one
  /// statement). Default (for other backends): `try_acquire` for each name in the given order;
  /// on the first refusal, the grants before it are released again (`release`, else `abandon`)
  /// before it returns, so none is left held, though they were briefly granted (they drew
  /// tokens); if one of them cannot be ended, it throws `errc::in_doubt`.
  virtual std::vector<acquire_result> try_acquire_all(const std::vector<acquire_request>& requests,
                                                      deadline until);
  /// Renews many leases in one round trip; one result per request, in order. Never revives an
  /// expired lease.
  virtual std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                          deadline until) = 0;
  /// Ends the lease `key` now (keeping the row, so the next grant takes a larger token) and
  /// wakes waiters. A lock with a live ticket in its queue is handed in the same step to the
  /// oldest one (a new token and expiry, the waiter's nonce, owner and metadata: a grant, so
  /// it is durable), and only that waiter is woken, with the grant (`release_watch::handoff`).
  /// A release that hands nothing over need not be durable: lost in a crash, it leaves the row
  /// held until it expires. Returns false when it was not live. Must not wait long for a row locked
  /// by another open transaction: throw `row_locked` instead. The result is advisory: when a first,
  /// briefly bounded attempt ended the lease but its reply was lost, a retry reads the lease as
  /// already ended (false). Either way the lease is not live once release returns.
  virtual bool release(const lease_key& key, deadline until) = 0;
  /// Ends whatever lease of `key.kind` carries `key.nonce` on `key.name`, whatever its token
  /// (cleanup of an in-doubt acquire, the client's background retries of a release), and drops
  /// that nonce's queue ticket (a waiter that gives up), in one step: a lock handed to the
  /// waiter while it gave up is released (and handed on) with it, never left held by nobody.
  /// Returns whether a lease was live. Never waits for a locked row (throws as `release` does).
  virtual bool abandon(const lease_key& key, deadline until) = 0;
  /// Sets the metadata of the live lock lease `key` (name, nonce and token) to `metadata`,
  /// changing nothing else (expiry, token, owner) and never reviving an ended lease; wakes the
  /// name's observers (`release_watch::make_observer`) as a release does, so they read it (on
  /// PostgreSQL through NOTIFY, when an observer marked the row). Returns false when the lease
  /// is not live. Must not wait long for a row locked by another open transaction: throws
  /// `row_locked` instead. Default (for other backends): throws `errc::usage` (not supported).
  virtual bool update_metadata(const lease_key& key, std::string_view metadata, deadline until);

  virtual std::optional<lock_record> inspect(std::string_view name, deadline until) = 0;
  virtual std::vector<lock_record> list(const list_filter& filter, deadline until) = 0;
  /// Ends whoever's lease it is. Returns false when the lock was not held.
  virtual bool force_release(std::string_view name, deadline until) = 0;
  /// Deletes lock rows free for at least `free_for` by the database clock, in small batches,
  /// without ever letting a later grant of a deleted name get a smaller token, and likewise
  /// semaphores without live holders or tickets for that long (with their lapsed holder and
  /// ticket rows). Returns the count of lock and semaphore rows deleted.
  virtual std::size_t purge(std::chrono::milliseconds free_for, deadline until) = 0;

  /// Grants `request.count` units of the semaphore when the live holders leave room (and, in
  /// fair mode or with a queue, no older live ticket waits), in one atomic step. Creates the
  /// semaphore on first use. A refusal writes nothing but the waiter mark and the ticket.
  /// Renew and release take a `lease_key` of kind `semaphore`. Throws as `try_acquire`, and
  /// `errc::invalid_argument` when the semaphore's live holders use another limit.
  virtual acquire_result try_acquire_semaphore(const semaphore_request& request,
                                               deadline until) = 0;
  /// The semaphore `name` with its live holders and waiters, or empty when there is none.
  virtual std::optional<semaphore_record> inspect_semaphore(std::string_view name,
                                                            deadline until) = 0;
  virtual std::vector<semaphore_record> list_semaphores(const list_filter& filter,
                                                        deadline until) = 0;
  /// Admin: ends the live holder with `token`, or every live holder when `token` is 0.
  /// Returns how many leases it ended.
  virtual std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                              deadline until) = 0;

  /// Asks the holder of the live lease of `kind` on `name` to let go within `grace` (0: at once):
  /// marks the lease (its renewals answer with the deadline, `renew_result::revoke_in`, and
  /// never extend it past the deadline), caps its expiry at the deadline (so after `grace` the
  /// name is free as after `force_release`, even if the holder never hears), and wakes the
  /// holder where the backend can (PostgreSQL notifies as a release does). `token` 0: whoever
  /// holds it (for a semaphore: every live holder); otherwise only the lease with that token.
  /// A second request never moves a deadline later. Returns how many leases it marked (0: not
  /// held). Waits for a row a fenced transaction holds, within `until`, as `force_release`.
  /// Default: `errc::usage` (the backend cannot do it).
  virtual std::size_t request_release(lease_kind kind, std::string_view name, std::int64_t token,
                                      std::chrono::milliseconds grace, deadline until) {
    (void)kind, (void)name, (void)token, (void)grace, (void)until;
    throw error(errc::usage, "request_release: this backend (" + std::string(this->kind()) +
                                 ") cannot ask a holder to let go");
  }

  /// The lock row `name` (as `inspect`), and asks for a wake-up of `watch(name)` when it is next
  /// released, for about `mark` (PostgreSQL marks the row as `try_acquire` with `waiting` does).
  /// Leader election's observers use it. Default: `inspect`.
  virtual std::optional<lock_record> inspect_watched(std::string_view name,
                                                     std::chrono::milliseconds mark,
                                                     deadline until) {
    (void)mark;
    return inspect(name, until);
  }

  /// A channel that this backend signals on releases of `name` it learns about (of the lock or
  /// the semaphore of that name: a waiter for the other one merely retries). Create it
  /// BEFORE the attempt whose refusal leads to waiting, so no release can slip in between.
  virtual std::shared_ptr<release_watch> watch(std::string_view name) = 0;
  /// Whether releases by other processes signal watches (PostgreSQL with working
  /// notifications). When false, waiters fall back to a shorter backoff.
  virtual bool wakes_other_processes() const noexcept = 0;

  /// Which database server the backend talks to, as a count that grows whenever a new
  /// connection reaches a server other than the one before (PostgreSQL: another system
  /// identifier or timeline, i.e. a failover or switchover). 0: not tracked. Grants and
  /// renewals carry the epoch of the connection that made them (`grant::server_epoch`,
  /// `renew_result::server_epoch`): a lease last confirmed under an older epoch is `at_risk`
  /// until a renewal confirms it on the current server.
  virtual std::uint64_t server_epoch() const noexcept { return 0; }

  /// The history of leases (schema 10): the recorded ended leases that `filter` selects, with
  /// the current rows' leases that are not recorded (live, or lapsed with nothing touching the
  /// row since: `expired`), oldest grant first. Works with the history off too (it then shows
  /// what was recorded while it was on, and the current rows).
  /// Default (a backend without history): throws `unsupported_operation`.
  virtual std::vector<history_record> history(const history_filter& filter, deadline until) {
    (void)filter;
    (void)until;
    throw unsupported_operation(std::string(kind()) + ": this backend keeps no lease history");
  }
  /// Turns the recording of ended leases on or off for the whole database (every client).
  /// Returns whether it was on before. Default: throws `unsupported_operation`.
  virtual bool set_history_enabled(bool on, deadline until) {
    (void)on;
    (void)until;
    throw unsupported_operation(std::string(kind()) + ": this backend keeps no lease history");
  }
  /// Whether ended leases are recorded. Default: false (nothing is).
  virtual bool history_enabled(deadline until) {
    (void)until;
    return false;
  }
  /// Deletes recorded leases that ended at least `older_than` ago by the database clock;
  /// returns how many. Default: throws `unsupported_operation`.
  virtual std::size_t purge_history(std::chrono::milliseconds older_than, deadline until) {
    (void)older_than;
    (void)until;
    throw unsupported_operation(std::string(kind()) + ": this backend keeps no lease history");
  }
};

/// Forwards every call to a wrapped backend (leveldb's `EnvWrapper`): derive from it and
/// override only what you change, e.g. to time, count or inject faults into some calls. A
/// virtual added to `backend` is forwarded here, so a wrapper never silently falls back to a
/// default. Thread safety: as the wrapped backend.
class SQLOCK_EXPORT backend_wrapper : public backend {
 public:
  explicit backend_wrapper(std::shared_ptr<backend> wrapped) : wrapped_(std::move(wrapped)) {}
  backend& wrapped() const noexcept { return *wrapped_; }

  std::string_view kind() const noexcept override { return wrapped_->kind(); }
  std::string describe() const override { return wrapped_->describe(); }
  int schema_version(deadline until) override { return wrapped_->schema_version(until); }
  int latest_schema_version() const noexcept override { return wrapped_->latest_schema_version(); }
  int migrate(int target, deadline until) override { return wrapped_->migrate(target, until); }
  int migrate_with(int target, const migrate_options& options, deadline until) override {
    return wrapped_->migrate_with(target, options, until);
  }
  acquire_result try_acquire(const acquire_request& request, deadline until) override {
    return wrapped_->try_acquire(request, until);
  }
  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override {
    return wrapped_->renew(requests, until);
  }
  bool release(const lease_key& key, deadline until) override {
    return wrapped_->release(key, until);
  }
  bool abandon(const lease_key& key, deadline until) override {
    return wrapped_->abandon(key, until);
  }
  std::vector<acquire_result> try_acquire_all(const std::vector<acquire_request>& requests,
                                              deadline until) override {
    return wrapped_->try_acquire_all(requests, until);
  }
  bool update_metadata(const lease_key& key, std::string_view metadata, deadline until) override {
    return wrapped_->update_metadata(key, metadata, until);
  }
  std::optional<lock_record> inspect(std::string_view name, deadline until) override {
    return wrapped_->inspect(name, until);
  }
  std::vector<lock_record> list(const list_filter& filter, deadline until) override {
    return wrapped_->list(filter, until);
  }
  bool force_release(std::string_view name, deadline until) override {
    return wrapped_->force_release(name, until);
  }
  std::size_t purge(std::chrono::milliseconds free_for, deadline until) override {
    return wrapped_->purge(free_for, until);
  }
  acquire_result try_acquire_semaphore(const semaphore_request& request, deadline until) override {
    return wrapped_->try_acquire_semaphore(request, until);
  }
  std::optional<semaphore_record> inspect_semaphore(std::string_view name,
                                                    deadline until) override {
    return wrapped_->inspect_semaphore(name, until);
  }
  std::vector<semaphore_record> list_semaphores(const list_filter& filter,
                                                deadline until) override {
    return wrapped_->list_semaphores(filter, until);
  }
  std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                      deadline until) override {
    return wrapped_->force_release_semaphore(name, token, until);
  }
  std::size_t request_release(lease_kind kind, std::string_view name, std::int64_t token,
                              std::chrono::milliseconds grace, deadline until) override {
    return wrapped_->request_release(kind, name, token, grace, until);
  }
  std::optional<lock_record> inspect_watched(std::string_view name, std::chrono::milliseconds mark,
                                             deadline until) override {
    return wrapped_->inspect_watched(name, mark, until);
  }
  std::shared_ptr<release_watch> watch(std::string_view name) override {
    return wrapped_->watch(name);
  }
  bool wakes_other_processes() const noexcept override { return wrapped_->wakes_other_processes(); }
  std::uint64_t server_epoch() const noexcept override { return wrapped_->server_epoch(); }
  std::vector<history_record> history(const history_filter& filter, deadline until) override {
    return wrapped_->history(filter, until);
  }
  bool set_history_enabled(bool on, deadline until) override {
    return wrapped_->set_history_enabled(on, until);
  }
  bool history_enabled(deadline until) override { return wrapped_->history_enabled(until); }
  std::size_t purge_history(std::chrono::milliseconds older_than, deadline until) override {
    return wrapped_->purge_history(older_than, until);
  }

 private:
  std::shared_ptr<backend> wrapped_;
};

/// Opens the backend a URL names, without connecting yet:
/// `postgresql://...`, `postgres://...` or libpq `key=value` strings; `sqlite:path`,
/// `sqlite:///abs/path`, `file:` URIs or plain paths; `memory:NAME` (the test kit's in-memory
/// database, <sqlock/testing.hpp>). SQLite's `:memory:` is rejected.
/// Throws: `errc::invalid_argument` for a malformed URL, an unknown scheme or a backend this
/// build lacks.
SQLOCK_EXPORT std::shared_ptr<backend> open_backend(const std::string& database_url,
                                                    const backend_options& options = {});

}  // namespace sqlock
