// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Plain values of the public API: options, records, states and events.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/events.hpp>
#include <sqlock/export.hpp>

namespace sqlock {

/// Where a lease stands. `held` -> `at_risk` (a renewal failed for a transient reason and is being
/// retried) -> `lost` (no longer ours, or its local safety deadline passed), or `released`.
enum class lease_state { held, at_risk, lost, released };

enum class log_level { debug, info, warn, error };

SQLOCK_EXPORT const char* to_string(lease_state state) noexcept;
SQLOCK_EXPORT const char* to_string(log_level level) noexcept;

/// Limits checked before any I/O; anything outside is `errc::invalid_argument`.
inline constexpr std::size_t max_name_bytes = 255;       ///< names: 1..255 bytes of UTF-8, no NUL
inline constexpr std::size_t max_metadata_bytes = 4096;  ///< metadata: UTF-8, no NUL
inline constexpr std::size_t max_owner_bytes = 255;      ///< owner: 1..255 bytes of UTF-8, no NUL
inline constexpr std::chrono::milliseconds min_ttl{100};
inline constexpr std::chrono::milliseconds max_ttl{std::chrono::hours{24 * 7}};
/// Semaphores: a limit (and a count) is 1..`max_semaphore_limit` units. A readers/writer lock
/// (`sqlock::shared_mutex`, `sqlock run --shared`) is a semaphore with this limit.
inline constexpr std::int64_t max_semaphore_limit = 1000000000;
/// Fair waiting: a queued waiter's ticket lives this long after its last attempt; waiters
/// attempt at least every third of it, so a waiter that dies holds up the queue at most this long.
inline constexpr std::chrono::milliseconds fair_ticket_ttl{3000};

/// What a lease is a lease on: a lock (one holder) or a semaphore (holders up to its limit).
/// Locks and semaphores are separate namespaces: the lock "x" and the semaphore "x" are unrelated.
enum class lease_kind { lock, semaphore };

/// What `lock_options::on_lost` receives: a value, so it stays valid whatever became of the lease.
struct lost_event {
  std::string name;
  std::int64_t token = 0;
  std::string reason;  ///< "taken over", "expired", "force released", "renewals failed", ...
};

/// What `lock_options::on_revoke_requested` receives: someone asked the holder to let go
/// (`client::request_release`, `sqlock release NAME --request`).
struct revoke_event {
  std::string name;
  std::int64_t token = 0;
  /// Time left, by the database clock as of the renewal that carried the request, until the
  /// lease ends by itself (it is not renewed past it): finish, then release.
  std::chrono::milliseconds grace{0};
};

/// Per-lease options.
struct lock_options {
  /// Lease length per grant and per renewal, by the database clock.
  /// Default: 30 s. Range: `min_ttl` (100 ms) to `max_ttl` (7 days).
  std::chrono::milliseconds ttl{30000};
  /// Renew in the background every ttl/3. Without it the lease is lost at its safety deadline
  /// unless `lease::renew()` is called in time. Default: true.
  bool keepalive = true;
  /// Free text stored in the row and shown by `inspect`, `list` and the CLI.
  /// Default: empty. At most `max_metadata_bytes` of UTF-8.
  std::string metadata;
  /// Called once, from a sqlock thread holding no internal lock, when the lease is lost (not when
  /// it is released). Exceptions are caught and logged. It must not destroy the client.
  /// Default: none.
  std::function<void(const lost_event&)> on_lost;
  /// First come, first served. A waiting acquisition takes a ticket in the name's queue (from
  /// the token sequence) and is granted in ticket order: a fair acquisition, waiting or not, is
  /// never granted past a live older ticket, and a release hands the lock (or, for a semaphore,
  /// the freed units) straight to the oldest ticket. A ticket lapses `fair_ticket_ttl` after its
  /// waiter's last attempt, so a waiter that dies holds the queue up at most that long.
  /// Without it (the default), waiters of a lock still queue where releases can wake them
  /// (PostgreSQL with notifications) and a release still hands the lock to the oldest of them,
  /// but a non-fair acquisition may take a lock it finds free (after a holder expired, or
  /// before its own ticket was seen) ahead of older waiters. Semaphores: see
  /// `semaphore_options`. Default: false.
  bool fair = false;
  // (Last, with a default initializer: aggregate initialisations written before it existed
  // stay warning-free.)
  /// Called once, from a sqlock thread holding no internal lock, when someone asks this lease's
  /// holder to let go (`client::request_release`): the lease is no longer renewed past
  /// `revoke_event::grace`, and its safety deadline moves there. The polite answer is to finish
  /// or checkpoint the work and `release()`. Heard at the next renewal (at most ttl/3 after the
  /// request), or at once on PostgreSQL with notifications. Exceptions are caught and logged.
  /// Default: none (the lease simply ends when the grace runs out, reported as lost).
  std::function<void(const revoke_event&)> on_revoke_requested{};
};

/// Per-acquisition options of a semaphore: each acquisition is a lease like a lock's, with the
/// `lock_options` fields (ttl, keepalive, metadata, on_lost) meaning the same.
struct semaphore_options : lock_options {
  /// The semaphore's capacity in units. Every acquirer states it; the first one sets it, and
  /// a different limit is `errc::invalid_argument` while the semaphore has live holders (when
  /// it has none, the new limit replaces the old). Default: 1. Range: 1..`max_semaphore_limit`.
  std::int64_t limit = 1;
  /// Units this acquisition takes. Default: 1. Range: 1..`limit`.
  std::int64_t count = 1;
  /// Take every unit (`count` = `limit`): with shared acquisitions of 1 unit, a readers/writer
  /// lock. Default: false.
  bool exclusive = false;
  // `fair` (inherited from lock_options): a waiting acquisition takes a ticket from the token
  // sequence and is granted in ticket order; no acquisition of a semaphore (fair or not) is
  // granted past a live ticket. Use one mode for all users of a semaphore: a non-fair waiter
  // takes no ticket and waits behind every queued one.
};

/// Options for opening a backend from a URL (`open_backend`, `client(url, ...)`).
struct backend_options {
  /// PostgreSQL schema holding sqlock's objects; statements name it explicitly.
  /// Default: "public".
  std::string schema = "public";
  /// PostgreSQL: connections for user operations (the keepalive and listener have their own).
  /// Default: 4.
  std::size_t pool_size = 4;
  /// PostgreSQL: use named prepared statements. Turn off behind PgBouncer < 1.21 in transaction
  /// mode. Default: true.
  bool prepared_statements = true;
  /// PostgreSQL: wake waiters with LISTEN/NOTIFY (checked at start; falls back to backoff).
  /// Default: true.
  bool notifications = true;
  /// PostgreSQL: a direct (not pooled) URL for the LISTEN connection. Default: the main URL.
  std::string listen_url;
  /// SQLite: `PRAGMA synchronous`. FULL makes a reported grant survive a power loss; NORMAL in
  /// WAL mode may lose the last grants (and so reissue their tokens) on power loss, not on a
  /// process crash. Default: full.
  enum class sqlite_sync { full, normal } sqlite_synchronous = sqlite_sync::full;
  /// Log sink for backend diagnostics (listener fallback, server settings). Default: the
  /// client's log hook when opened by a client, otherwise silent.
  std::function<void(log_level, std::string_view)> log;
};

/// Per-client options.
struct client_options {
  /// Names this client instance in lock rows, for humans. Leases are identified by a random
  /// per-attempt nonce, never by the owner. Default: "<host>:<pid>:<random>".
  std::string owner;
  /// Log hook, called from any thread; must not block. Default: silent.
  std::function<void(log_level, std::string_view)> log;
  /// Event listeners (attempt, acquired, renewed, lost, released, ...), called in order on the
  /// thread where the event happens; must not block. Default: none.
  std::vector<event_listener> listeners;
  /// Upper bound on each database call made for this client. Default: 10 s. At most 24 hours
  /// (a longer one is errc::invalid_argument: it would overflow the clock's deadlines).
  std::chrono::milliseconds operation_timeout{10000};
  /// Used only when the client opens its backend from a URL.
  backend_options backend;
};

/// One acquisition waiting in a lock's queue (a live ticket).
struct lock_waiter {
  std::string owner;
  std::int64_t ticket = 0;  ///< its place in the queue (from the token sequence)
  bool fair = false;
  std::chrono::system_clock::time_point since;  ///< database clock: when it queued
  std::chrono::milliseconds expires_in{0};      ///< until its ticket lapses unless it tries again
};

/// One lock row, as the database sees it.
struct lock_record {
  std::string name, owner, metadata;
  std::int64_t token = 0;
  /// Database clock, for display.
  std::chrono::system_clock::time_point acquired_at, expires_at;
  /// expires_at - database now, computed by the database; <= 0 means free for -expires_in.
  std::chrono::milliseconds expires_in{0};
  bool held = false;  ///< expires_in > 0
  /// The queue, oldest first (`client::inspect` and `sqlock show` fill it; `list` does not).
  std::vector<lock_waiter> waiters;
  /// How many waiters are queued (live tickets): `list` counts them, `inspect` too.
  std::size_t queued = 0;
};

/// One live acquisition of a semaphore.
struct semaphore_holder {
  std::string owner, metadata;
  std::int64_t token = 0;  ///< the acquisition's fencing token
  std::int64_t count = 0;  ///< units held
  std::chrono::system_clock::time_point acquired_at, expires_at;  ///< database clock
  std::chrono::milliseconds expires_in{0};                        ///< > 0, computed by the database
};

/// One queued fair waiter.
struct semaphore_waiter {
  std::string owner;
  std::int64_t ticket = 0;                  ///< its place in the queue (from the token sequence)
  std::int64_t count = 0;                   ///< units it waits for
  std::chrono::milliseconds expires_in{0};  ///< until its ticket lapses unless it tries again
};

/// A semaphore, as the database sees it: live holders by token, live waiters by ticket.
struct semaphore_record {
  std::string name;
  std::int64_t limit = 0;
  std::int64_t used = 0;  ///< units held by live holders
  std::vector<semaphore_holder> holders;
  std::vector<semaphore_waiter> waiters;
};

/// Which rows `client::list` (and `list_semaphores`) return, in byte order of their names.
/// For semaphores, "held" means at least one live holder.
struct list_filter {
  std::string prefix;  ///< byte prefix of the name; empty = all
  enum class which { all, held, free } show = which::all;
  std::size_t limit = 0;  ///< 0 = no limit
};

/// How a lease ended, as the history records it (schema 10; see `client::history`).
enum class lease_end {
  live,            ///< not ended (read from the current row)
  released,        ///< its holder released it (a release that handed the lock on, too)
  expired,         ///< it lapsed and nobody took it yet (recorded when its row is deleted)
  taken_over,      ///< it lapsed and a later grant replaced it; ended at its expiry
  force_released,  ///< an admin ended it (force release)
  revoked,         ///< it ended while a release request for it was pending
  lost,            ///< ended by the client's cleanup of a grant it never learnt of (abandon)
};
/// "live", "released", "expired", "taken over", "force-released", "revoked", "lost".
SQLOCK_EXPORT const char* to_string(lease_end how) noexcept;

/// Which leases `client::history` returns: leases of every name, or of one, oldest grant first.
struct history_filter {
  std::string name;  ///< exactly this name (a lock's and a semaphore's); empty = every name
  /// > 0: only leases live at some moment of the last `since` by the database clock (not ended,
  /// or ended within it). 0 = no bound. Default: 0.
  std::chrono::milliseconds since{0};
  std::size_t limit = 0;  ///< > 0: only the `limit` most recently granted. 0 = no limit.
};

/// One lease of a lock or of a semaphore, from the history or (live, or lapsed and not recorded
/// yet) from its current row.
struct history_record {
  lease_kind kind = lease_kind::lock;
  std::string name, owner, metadata;
  std::int64_t token = 0;
  std::int64_t count = 1;  ///< units of a semaphore holder; 1 for a lock
  /// Database clock. `ended_at` is meaningful unless `ended_how` is `live`.
  std::chrono::system_clock::time_point granted_at, ended_at;
  lease_end ended_how = lease_end::live;
};

/// A lock granted by SQL inside the caller's own transaction (`sqlock::postgresql::try_acquire`),
/// which only that transaction's commit makes real: `client::adopt` then makes it a lease.
struct transaction_grant {
  std::string name;
  std::int64_t token = 0;  ///< the fencing token (0 until granted)
  std::string nonce;       ///< the lease's identity in the lock row (a fresh one per grant)
  lock_options options;
  /// Taken before the grant's statement was sent: the lease's local clock starts here, so its
  /// safety deadline precedes the database's expiry.
  std::chrono::steady_clock::time_point sent;
  /// By this machine's clock (the database's is learnt at the first renewal), for display.
  std::chrono::system_clock::time_point requested_at;
};

}  // namespace sqlock
