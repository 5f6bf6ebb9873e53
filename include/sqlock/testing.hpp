// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// A test kit for code that uses sqlock: an in-memory backend with a clock the test controls,
/// and a wrapper that injects faults into any backend. With them a test can make a lease
/// expire, be taken over or be force released, or make renewals fail or stall, in milliseconds,
/// and check what the code under test does about it (its `on_lost`, its fencing, its retries).
///
/// \code
///   #include <sqlock/sqlock.hpp>
///   #include <sqlock/testing.hpp>
///
///   auto memory = std::make_shared<sqlock::testing::memory_backend>();
///   auto faults = std::make_shared<sqlock::testing::fault_injector>(memory);
///   sqlock::client c(faults);
///
///   std::atomic<bool> lost{false};
///   sqlock::lock_options o;
///   o.ttl = std::chrono::milliseconds(300);  // short: the keepalive renews every ttl/3
///   o.on_lost = [&](const sqlock::lost_event& e) { lost = true; };
///   auto lease = c.try_acquire("job", o);
///
///   faults->lose_lease(sqlock::renew_outcome::taken_over);  // at the next renewal, or:
///   memory->advance(std::chrono::seconds(1));                // the lease expires at once
///   // ... within ~ttl/3 the keepalive reports on_lost ("taken over", or "expired").
/// \endcode
///
/// The database URL `memory:NAME` opens the process-wide memory database NAME (see
/// `memory_backend::open`), so `sqlock::client("memory:test")` works too.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/backend.hpp>
#include <sqlock/export.hpp>

namespace sqlock::testing {

namespace detail {
struct memory_database;
}

/// The clock of memory databases: the system clock plus an offset that only grows. A test
/// moves it forward with `advance` to make leases and queue tickets lapse at once, or
/// `freeze`s it so that only `advance` moves it. It is "the database clock": lease expiries,
/// `expires_in` and the waits derived from them follow it; the client's local safety deadlines
/// stay on `std::chrono::steady_clock` (as they must: they are the client's own clock), so a
/// lease kept alive learns of an expiry at its next renewal, ttl/3 after the last one.
///
/// Ownership: shared (`std::shared_ptr`) by the databases that use it; one clock may drive
/// several databases. Thread safety: thread-safe. Throws: `advance` throws
/// `errc::invalid_argument` for a negative duration (a clock that goes back would let a
/// lease's expiry move back too).
class SQLOCK_EXPORT clock {
 public:
  clock() = default;
  clock(const clock&) = delete;
  clock& operator=(const clock&) = delete;

  /// The current reading.
  std::chrono::system_clock::time_point now() const;
  /// Moves the clock forward by `d` (>= 0). Memory databases on this clock wake the waiters of
  /// every lock and semaphore whose lease or ticket the jump made lapse.
  void advance(std::chrono::milliseconds d);
  /// Stops the clock at its current reading: from now on only `advance` moves it.
  void freeze();
  /// Follows the system clock again, from the current reading (keeping every advance).
  void resume();
  bool frozen() const;
  /// How far `advance` has moved the clock ahead of the system clock in all (while running).
  std::chrono::milliseconds offset() const;

  /// Called (outside the clock's lock) after every advance with the readings before and
  /// after it. Kept while the returned handle lives. Memory databases use it.
  using advance_hook = std::function<void(std::chrono::system_clock::time_point,
                                          std::chrono::system_clock::time_point)>;
  std::shared_ptr<const advance_hook> on_advance(advance_hook hook);

 private:
  mutable std::mutex mu_;
  std::chrono::milliseconds offset_{0};
  std::optional<std::chrono::system_clock::time_point> frozen_at_;
  std::vector<std::weak_ptr<const advance_hook>> hooks_;
};

/// An alias for readers who look for it under this name.
using manual_clock = clock;

/// How a memory database starts.
struct memory_options {
  /// Start migrated (schema at `latest_schema_version()`), as most tests want; false: an
  /// empty database on which every operation but `migrate` fails with `schema_mismatch`, like
  /// a fresh SQLite file. Default: true.
  bool migrated = true;
  /// The database's clock. Default: a new `clock`, following the system clock.
  std::shared_ptr<testing::clock> clock;
};

/// A `sqlock::backend` that keeps its rows in this process's memory: locks, their queues,
/// semaphores, the token sequence and the schema version, with the SQLite backend's
/// semantics, operation by operation (grants, refusals that write nothing, renewals that
/// never shorten or revive, releases that keep the row and hand the lock to the oldest queued
/// waiter, force release, purge, semaphores with fair queues and handoff, migrations up and
/// down that refuse to drop live leases). No SQL, no files, no threads of its own.
///
/// Differences from a database, by design: nothing is durable; there are no transactions, so
/// a row is never locked by another one (renewals are never `busy`, releases never throw
/// `row_locked`); calls never wait for anything but one mutex, whatever their deadline. Every
/// waiter of a memory database is in this process, and every release wakes them directly:
/// `wakes_other_processes()` is true (there are no other processes to miss), so the client
/// queues its waiters as on PostgreSQL with working notifications.
///
/// Several `memory_backend` objects may share one database (`open` by name, or the URL
/// `memory:NAME`): they are like several connections to it, each with its own log hook.
///
/// Ownership: the database lives while a backend on it does (a lease keeps its client's
/// backend alive). Thread safety: thread-safe. Throws: `sqlock::error`, as the backend
/// interface says (`schema_mismatch` when not migrated, `invalid_argument` for a semaphore
/// limit that differs from its live holders').
class SQLOCK_EXPORT memory_backend final : public backend {
 public:
  /// A new database of its own, not shared with anything.
  explicit memory_backend(const memory_options& options = {}, backend_options backend = {});
  /// The process-wide memory database `name` (what the URL `memory:NAME` opens): created with
  /// `options` if no backend on it exists now, otherwise shared (and `options` ignored). Like
  /// SQLite's shared-cache in-memory databases, it is gone once its last backend is: a test
  /// that needs it across clients keeps one backend (or client) open.
  static std::shared_ptr<memory_backend> open(const std::string& name,
                                              const memory_options& options = {},
                                              backend_options backend = {});
  ~memory_backend() override;
  memory_backend(const memory_backend&) = delete;
  memory_backend& operator=(const memory_backend&) = delete;

  /// The database's clock (shared by every backend on the database).
  const std::shared_ptr<testing::clock>& clock() const noexcept;
  /// Shorthand for `clock()->advance(d)`.
  void advance(std::chrono::milliseconds d);
  /// The database's name ("" for one made by the constructor).
  const std::string& name() const noexcept;

  /// "memory".
  std::string_view kind() const noexcept override;
  /// "memory database 'NAME'".
  std::string describe() const override;
  /// The schema version the memory database is at: it follows the library's migration
  /// numbering (the SQLite migrations' versions) without running any SQL. Tables a down step
  /// would drop are emptied (down from 1 also restarts tokens at 1, as on SQLite).
  int schema_version(deadline until) override;
  int latest_schema_version() const noexcept override;
  int migrate(int target, deadline until) override;
  int migrate_with(int target, const migrate_options& options, deadline until) override;

  acquire_result try_acquire(const acquire_request& request, deadline until) override;
  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override;
  bool release(const lease_key& key, deadline until) override;
  bool abandon(const lease_key& key, deadline until) override;
  std::optional<lock_record> inspect(std::string_view name, deadline until) override;
  std::vector<lock_record> list(const list_filter& filter, deadline until) override;
  bool force_release(std::string_view name, deadline until) override;
  std::size_t request_release(lease_kind kind, std::string_view name, std::int64_t token,
                              std::chrono::milliseconds grace, deadline until) override;
  bool update_metadata(const lease_key& key, std::string_view metadata, deadline until) override;
  std::vector<acquire_result> try_acquire_all(const std::vector<acquire_request>& requests,
                                              deadline until) override;
  std::size_t purge(std::chrono::milliseconds free_for, deadline until) override;

  acquire_result try_acquire_semaphore(const semaphore_request& request, deadline until) override;
  std::optional<semaphore_record> inspect_semaphore(std::string_view name, deadline until) override;
  std::vector<semaphore_record> list_semaphores(const list_filter& filter, deadline until) override;
  std::size_t force_release_semaphore(std::string_view name, std::int64_t token,
                                      deadline until) override;

  std::shared_ptr<release_watch> watch(std::string_view name) override;
  bool wakes_other_processes() const noexcept override;

 private:
  memory_backend(std::shared_ptr<detail::memory_database> db, backend_options backend);
  void warn(const std::string& text) const;

  std::shared_ptr<detail::memory_database> db_;
  backend_options options_;
};

/// Wraps any backend (a `memory_backend`, or a real PostgreSQL or SQLite one from
/// `sqlock::open_backend`) and injects the faults a test asks for into the calls that follow,
/// each a one-shot (or N-shot) order that the next matching call consumes:
///
/// \code
///   auto faults = std::make_shared<sqlock::testing::fault_injector>(sqlock::open_backend(url));
///   sqlock::client c(faults);
///   faults->fail_renewals(3);                       // 3 renewals fail: the lease is at_risk
///   faults->stall_renewals(std::chrono::seconds(2)); // the next renewal hangs for 2 s
///   faults->lose_lease(sqlock::renew_outcome::force_released, "job");
///   faults->acquire_in_doubt();                     // the next grant's reply is "lost"
/// \endcode
///
/// Every call it does not fault goes to the wrapped backend unchanged (it is a
/// `backend_wrapper`). Ownership: shares the wrapped backend. Thread safety: thread-safe.
/// Throws: the injected `sqlock::error`s, and whatever the wrapped backend throws.
class SQLOCK_EXPORT fault_injector : public backend_wrapper {
 public:
  explicit fault_injector(std::shared_ptr<backend> wrapped);

  /// The next `n` renew calls fail at once with `errc::unavailable`, sending nothing (a
  /// refused connection). A lease stays `at_risk` while they fail (the keepalive retries every
  /// ttl/10), and is lost ("safety deadline passed without a successful renewal") if they still
  /// fail at its safety deadline.
  void fail_renewals(int n = 1);
  /// The next `n` renew calls hang for `d` before they are sent, whatever their deadline (a
  /// stuck connection: the client's timer declares the loss at the lease's safety deadline
  /// meanwhile). Then a call whose deadline has passed fails with `errc::unavailable`, sending
  /// nothing; one whose deadline has not goes through, late.
  void stall_renewals(std::chrono::milliseconds d, int n = 1);
  /// The next renewal of a lease named `name` (empty: of any lease) ends that lease in the
  /// wrapped backend (`force_released`: by force release; otherwise by releasing it, which
  /// hands it to a queued waiter as a real release would) and reports `outcome` for it, so the
  /// client declares it lost with that outcome's reason ("taken over", "force released",
  /// "expired", "lock row deleted"). Throws `errc::invalid_argument` for `renewed` or `busy`.
  void lose_lease(renew_outcome outcome = renew_outcome::taken_over, std::string name = {});
  /// The next `n` acquire calls (locks and semaphores) run on the wrapped backend, then throw
  /// `errc::in_doubt` as if the connection dropped before the reply: the client cleans up
  /// with `abandon` and reports `unavailable` (or `in_doubt` when that fails too).
  void acquire_in_doubt(int n = 1);
  /// The next `n` acquire calls fail at once with `errc::unavailable`, sending nothing.
  void fail_acquires(int n = 1);
  /// The next `n` release calls fail at once with `errc::unavailable`, sending nothing (the
  /// client ends the lease locally and retries the release in the background).
  void fail_releases(int n = 1);
  /// The next `n` abandon calls (in-doubt cleanups, waiters leaving a queue) fail at once
  /// with `errc::unavailable`.
  void fail_abandons(int n = 1);
  /// Advances the wrapped `memory_backend`'s clock (see `clock::advance`). Throws
  /// `errc::usage` when the wrapped backend is not a `memory_backend`.
  void advance(std::chrono::milliseconds d);
  /// Drops every pending fault.
  void clear();

  /// Renew calls received so far (each renews a batch of leases), faulted ones included.
  int renew_calls() const;
  /// Acquire calls (locks and semaphores) received so far, faulted ones included.
  int acquire_calls() const;

  acquire_result try_acquire(const acquire_request& request, deadline until) override;
  acquire_result try_acquire_semaphore(const semaphore_request& request, deadline until) override;
  std::vector<renew_result> renew(const std::vector<renew_request>& requests,
                                  deadline until) override;
  bool release(const lease_key& key, deadline until) override;
  bool abandon(const lease_key& key, deadline until) override;

 private:
  struct loss {
    renew_outcome outcome;
    std::string name;
  };
  // Consumes one of `count`'s shots; whether there was one. Called with mu_ held.
  static bool take(int& count);
  // The fault (if any) an acquire consumes: 0 none, 1 fail before, 2 in doubt after.
  int acquire_fault();
  [[noreturn]] void fail(errc code, const std::string& what) const;

  mutable std::mutex mu_;
  int renew_failures_ = 0;
  int renew_stalls_ = 0;
  std::chrono::milliseconds stall_{0};
  std::vector<loss> losses_;
  int in_doubt_ = 0;
  int acquire_failures_ = 0;
  int release_failures_ = 0;
  int abandon_failures_ = 0;
  int renew_calls_ = 0;
  int acquire_calls_ = 0;
};

}  // namespace sqlock::testing
