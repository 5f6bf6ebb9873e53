// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <deque>
#include <utility>

#include <sqlock/client.hpp>
#include <sqlock/error.hpp>

#include "backends/common/migrations.hpp"
#include "core/core.hpp"
#include "core/wait.hpp"
#include "util/fault_points.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock {
namespace detail {

namespace {
client_options prepared(client_options options) {
  if (options.owner.empty())
    options.owner = default_owner();
  else
    validate_owner(options.owner);
  validate_operation_timeout(options.operation_timeout);
  return options;
}

std::shared_ptr<backend> checked(std::shared_ptr<backend> db) {
  if (!db) throw error(errc::invalid_argument, "client: null backend");
  return db;
}
}  // namespace

client_core::client_core(std::shared_ptr<backend> db, client_options options)
    : db_(checked(std::move(db))),
      options_(prepared(std::move(options))),
      keepalive_(
          *db_, [this](log_level l, const std::string& m) { log(l, m); },
          [this](const lock_event& e) { emit(e); }, options_.operation_timeout) {}

client_core::~client_core() = default;

void client_core::log(log_level level, const std::string& message) const noexcept {
  if (!options_.log) return;
  try {
    options_.log(level, message);
  } catch (...) {
  }
}

void client_core::emit(const lock_event& event) const noexcept {
  for (const auto& listener : options_.listeners) {
    if (!listener) continue;
    try {
      listener(event);
    } catch (const std::exception& e) {
      log(log_level::error, std::string("event listener threw on ") + to_string(event.kind) + " " +
                                quoted(event.name) + ": " + e.what());
    } catch (...) {
      log(log_level::error, std::string("event listener threw on ") + to_string(event.kind));
    }
  }
}

void client_core::release_in_database(lease_impl& lease, deadline until) {
  keepalive_.untrack(&lease);
  SQLOCK_FAULT_POINT("release.before");
  db_->release(lease.key(), until);
}

void client_core::emit_released(const lease_impl& lease) const noexcept {
  emit({event_kind::released,
        lease.name,
        lease.token,
        std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - lease.granted_at),
        {}});
}

void client_core::ensure_open() const {
  if (closed_) throw error(errc::cancelled, "sqlock client " + quoted(owner()) + " is shut down");
}

void client_core::ensure_schema() {
  if (schema_ok_) return;
  std::lock_guard<std::mutex> lock(schema_mu_);
  if (schema_ok_) return;
  int have = db_->schema_version(op_deadline());
  int want = db_->latest_schema_version();
  if (have == want) {
    schema_ok_ = true;
    return;
  }
  std::string where = std::string(db_->kind()) + " database " + db_->describe();
  if (have == 0)
    throw error(errc::schema_mismatch,
                "sqlock's tables are missing in " + where +
                    ": run `sqlock migrate up` (or client::migrate()) first",
                std::string(db_->kind()));
  if (have < want)
    throw error(errc::schema_mismatch,
                "sqlock schema version " + std::to_string(have) + " in " + where +
                    " is older than this library's " + std::to_string(want) +
                    ": run `sqlock migrate up` (or client::migrate())",
                std::string(db_->kind()));
  throw error(errc::schema_mismatch,
              "sqlock schema version " + std::to_string(have) + " in " + where +
                  " is newer than this library's " + std::to_string(want) +
                  ": upgrade sqlock in this application",
              std::string(db_->kind()));
}

std::optional<std::shared_ptr<lease_impl>> client_core::attempt(const target& what,
                                                                const attempt_plan& plan,
                                                                refusal& refused) {
  const auto& options = what.options;
  const std::string name(what.name);
  std::string nonce = what.nonce.empty() ? random_hex(16) : what.nonce;
  emit({event_kind::attempt, name, 0, {}, {}});
  auto sent = steady::now();
  acquire_result result;
  try {
    if (what.semaphore) {
      semaphore_request request{name,
                                options_.owner,
                                nonce,
                                options.metadata,
                                what.semaphore->limit,
                                what.units,
                                options.ttl,
                                plan.waiting,
                                plan.waiting && what.semaphore->fair,
                                fair_ticket_ttl,
                                plan.number,
                                handoff_term(options)};
      result = db_->try_acquire_semaphore(request, op_deadline());
    } else {
      acquire_request request{name,
                              options_.owner,
                              nonce,
                              options.metadata,
                              options.ttl,
                              plan.waiting,
                              options.fair,
                              plan.queue,
                              fair_ticket_ttl,
                              plan.number,
                              handoff_term(options)};
      result = db_->try_acquire(request, op_deadline());
    }
  } catch (const error& e) {
    if (e.code() != errc::in_doubt) throw;
    // The grant may have committed before the connection dropped: end whatever lease carries
    // this attempt's nonce (and its ticket), so no row is left held by a lease nobody knows.
    try {
      db_->abandon({name, nonce, 0, what.kind()}, op_deadline());
    } catch (const error& cleanup) {
      throw error(errc::in_doubt,
                  "acquire " + quoted(name) + " on " + std::string(db_->kind()) +
                      ": outcome unknown and the cleanup failed (" + cleanup.what() +
                      "); if it was granted the row expires by itself within " +
                      std::to_string(options.ttl.count()) + " ms",
                  e.backend(), e.sqlstate());
    }
    refused.abandoned = true;
    throw error(errc::unavailable, std::string(e.what()) + " (the attempt was cleaned up; retry)",
                e.backend(), e.sqlstate());
  }
  if (!result.granted) {
    refused.holder_left = result.holder_expires_in;
    refused.queued = result.queued;
    return std::nullopt;
  }
  SQLOCK_FAULT_POINT("acquire.granted");
  return adopt(what, std::move(nonce), *result.granted, sent);
}

std::shared_ptr<lease_impl> client_core::adopt(const target& what, std::string nonce,
                                               const grant& granted, steady::time_point sent,
                                               std::chrono::milliseconds first) {
  auto impl =
      std::make_shared<lease_impl>(shared_from_this(), std::string(what.name), std::move(nonce),
                                   granted, what.options, sent, what.kind(), what.units, first);
  if (!keepalive_.track(impl)) {
    // Shut down while the grant was in flight: hand it straight back.
    impl->state = lease_state::released;
    try {
      db_->release(impl->key(), op_deadline());
    } catch (const error&) {
    }
    throw error(errc::cancelled, "acquire " + quoted(what.name) + ": the client was shut down");
  }
  return impl;
}

std::shared_ptr<release_watch> client_core::add_waiter(std::string_view name) {
  auto watch = db_->watch(name);
  std::lock_guard<std::mutex> lock(waiters_mu_);
  ensure_open();
  waiters_.insert(watch);
  return watch;
}

void client_core::remove_waiter(const std::shared_ptr<release_watch>& watch) {
  std::lock_guard<std::mutex> lock(waiters_mu_);
  waiters_.erase(watch);
}

void client_core::shutdown() {
  if (keepalive_.on_own_thread())
    throw error(errc::usage, "client::shutdown() called from an on_lost callback");
  {
    std::lock_guard<std::mutex> lock(waiters_mu_);
    closed_ = true;
    for (auto& w : waiters_) w->cancel();
  }
  auto leases = keepalive_.stop();
  // One deadline for all releases: a dead database must not make shutdown take N timeouts.
  auto until = op_deadline();
  for (auto& lease : leases) {
    {
      std::lock_guard<std::mutex> io(lease->io);
      std::lock_guard<std::mutex> l(lease->mu);
      // A release pending in the caller's transaction is made certain too.
      if (!lease->renewing_locked()) continue;
      lease->release_in_transaction = false;
      lease->state = lease_state::released;
    }
    if (steady::now() >= until) continue;  // the row expires by itself
    try {
      release_in_database(*lease, until);
    } catch (const std::exception& e) {
      log(log_level::warn, "shutdown: release " + quoted(lease->name) + " (token " +
                               std::to_string(lease->token) + ") failed: " + e.what() +
                               "; the row expires by itself");
    }
    emit_released(*lease);
  }
}

}  // namespace detail

client::client(const std::string& database_url, client_options options) {
  if (!options.backend.log) options.backend.log = options.log;
  auto db = open_backend(database_url, options.backend);
  core_ = std::make_shared<detail::client_core>(std::move(db), std::move(options));
}

client::client(std::shared_ptr<backend> backend, client_options options)
    : core_(std::make_shared<detail::client_core>(std::move(backend), std::move(options))) {}

client::~client() {
  try {
    core_->shutdown();
  } catch (const std::exception& e) {
    core_->log(log_level::error, std::string("client destructor: ") + e.what());
  } catch (...) {
  }
}

namespace detail {
// `now` is also the wait's start: a zero wait is then one attempt that does not wait.
std::chrono::steady_clock::time_point wait_deadline(std::string_view what, std::string_view name,
                                                    std::chrono::steady_clock::time_point now,
                                                    std::chrono::milliseconds wait) {
  if (wait < std::chrono::milliseconds::zero())
    throw error(errc::invalid_argument,
                std::string(what) + " " + detail::quoted(name) + ": negative wait");
  // Saturate: a huge wait means "no deadline", not an overflowed time point.
  return wait >= std::chrono::hours{24 * 365 * 100} ? std::chrono::steady_clock::time_point::max()
                                                    : now + wait;
}
}  // namespace detail

std::optional<lease> client::try_acquire(std::string_view name, const lock_options& options) {
  auto now = std::chrono::steady_clock::now();
  return acquire_until(name, now, now, options);
}

std::optional<lease> client::try_acquire_for(std::string_view name, std::chrono::milliseconds wait,
                                             const lock_options& options) {
  auto now = std::chrono::steady_clock::now();
  return acquire_until(name, now, detail::wait_deadline("try_acquire_for", name, now, wait),
                       options);
}

lease client::acquire(std::string_view name, const lock_options& options) {
  auto l = acquire_until(name, std::chrono::steady_clock::now(),
                         std::chrono::steady_clock::time_point::max(), options);
  if (!l)
    throw error(errc::internal, "acquire " + detail::quoted(name) + ": wait ended unexpectedly");
  return std::move(*l);
}

std::optional<lease> client::try_acquire_semaphore(std::string_view name,
                                                   const semaphore_options& options) {
  auto now = std::chrono::steady_clock::now();
  return acquire_until(name, now, now, options, &options);
}

std::optional<lease> client::try_acquire_semaphore_for(std::string_view name,
                                                       std::chrono::milliseconds wait,
                                                       const semaphore_options& options) {
  auto now = std::chrono::steady_clock::now();
  return acquire_until(name, now,
                       detail::wait_deadline("try_acquire_semaphore_for", name, now, wait), options,
                       &options);
}

lease client::acquire_semaphore(std::string_view name, const semaphore_options& options) {
  auto l = acquire_until(name, std::chrono::steady_clock::now(),
                         std::chrono::steady_clock::time_point::max(), options, &options);
  if (!l)
    throw error(errc::internal,
                "acquire_semaphore " + detail::quoted(name) + ": wait ended unexpectedly");
  return std::move(*l);
}

// `start` is when the caller asked (the wait and the reported wait time count from there).
// `until` <= `start`: one attempt, no waiting.
std::optional<lease> client::acquire_until(std::string_view name,
                                           std::chrono::steady_clock::time_point start,
                                           std::chrono::steady_clock::time_point until,
                                           const lock_options& options,
                                           const semaphore_options* semaphore) {
  using namespace std::chrono;
  detail::validate_name(name);
  detail::client_core::target what{name, options, semaphore, 1, {}};
  if (semaphore) {
    what.units = detail::validate_units(*semaphore);
    what.nonce = detail::random_hex(16);
  } else {
    detail::validate(options);
  }
  core_->ensure_open();
  const bool waits = until > start;
  // Subscribe BEFORE the first attempt: a release between the refusal and the sleep must
  // still wake us. A wait keeps one nonce for all its attempts: it names its queue ticket, and
  // a release that hands the lock over hands it to that nonce.
  std::shared_ptr<release_watch> watch;
  if (waits) {
    if (what.nonce.empty()) what.nonce = detail::random_hex(16);
    watch = core_->add_waiter(name);
    watch->expect_handoff(what.nonce);
  }
  // A lock's waiters queue when they are fair, or when releases can wake them: a lock handed
  // to a waiter that hears of it only at its next poll would sit idle until then. A semaphore
  // queues its fair waiters (the backend decides from the request).
  const bool fair = semaphore ? semaphore->fair : options.fair;
  const bool queue = waits && (fair || (!semaphore && core_->db().wakes_other_processes()));
  // Leaving without a grant: drop the watch, and the queue ticket at once (rather than holding
  // up the queue until it lapses). For a lock, the same step releases (and hands on) a grant
  // that raced with our leaving.
  // It also closes the `waiting` event pair on every way out (grant, timeout, error).
  struct leave_guard {
    detail::client_core& core;
    const std::shared_ptr<release_watch>& w;
    const detail::client_core::target& what;
    bool drop_ticket;
    std::optional<steady_clock::time_point> waiting_since;
    ~leave_guard() {
      if (waiting_since)
        core.emit({event_kind::waiting, std::string(what.name), 0,
                   duration_cast<milliseconds>(steady_clock::now() - *waiting_since), "ended"});
      if (w) core.remove_waiter(w);
      if (!drop_ticket) return;
      try {
        core.db().abandon(
            {std::string(what.name), what.nonce, 0, what.kind()},
            steady_clock::now() + std::min(core.operation_timeout(), milliseconds{1000}));
      } catch (const std::exception& e) {
        core.log(log_level::debug,
                 std::string("leaving the queue failed (the ticket lapses by itself, and a lock "
                             "handed to us meanwhile expires): ") +
                     e.what());
      }
    }
  } guard{*core_, watch, what, false, std::nullopt};

  // When each attempt of this wait was sent, from the oldest one a handoff can still name: a
  // refusal that says "queued" for attempt k means the ticket already shows k or later.
  std::deque<std::pair<std::int64_t, steady_clock::time_point>> sent_at;
  std::int64_t number = 0;
  auto granted = [&](const std::shared_ptr<detail::lease_impl>& impl, const char* how = "") {
    guard.drop_ticket = false;  // the grant took the ticket
    core_->emit({event_kind::acquired, std::string(name), impl->token,
                 duration_cast<milliseconds>(steady_clock::now() - start), how});
    return lease(impl);
  };

  detail::backoff delay(core_->db().wakes_other_processes());
  auto since_start = [&] { return duration_cast<milliseconds>(steady_clock::now() - start); };
  bool failing = false;  // the previous attempt failed too: log at debug level only
  bool queued = false;
  for (;;) {
    detail::client_core::refusal refused;
    try {
      // Inside the loop: the schema check is a database call like the attempt, and a wait
      // must ride out a server that is restarting ("the database system is starting up")
      // from its first call on (without this, 88 of 100 `run --wait 30s` across a restart exited 69
      // at once).
      core_->ensure_schema();
      ++number;
      sent_at.emplace_back(number, steady_clock::now());
      if (queue) guard.drop_ticket = true;  // from the first queued attempt on, a ticket may exist
      if (auto impl = core_->attempt(what, {waits, queue, number}, refused)) return granted(*impl);
      // (A semaphore backend does not report its fair tickets: a fair semaphore waiter is
      // queued from its first attempt.)
      if (refused.queued || (semaphore && queue)) {
        queued = true;
        while (sent_at.size() > 1 && sent_at.front().first < number) sent_at.pop_front();
      }
      failing = false;
      if (waits && !guard.waiting_since) {
        guard.waiting_since = steady_clock::now();
        core_->emit({event_kind::waiting, std::string(name), 0, {}, "started"});
      }
    } catch (const error& e) {
      // While waiting, an unreachable or restarting database is retried until the caller's
      // deadline (a database that stays down past it is reported as unavailable, not as
      // "timed out"). Every other error is final.
      if (e.code() != errc::unavailable) throw;
      if (refused.abandoned && watch) {
        // The cleanup ended whatever the nonce held, a lock handed to it included (and handed
        // it on): a handoff to that nonce still in flight, or already here, must never be
        // adopted. Go on under a new nonce (the old one's ticket went with the cleanup).
        what.nonce = detail::random_hex(16);
        watch->expect_handoff(what.nonce);
        (void)watch->take_handoff();
        sent_at.clear();
        queued = false;
      }
      if (steady_clock::now() >= until) throw;
      core_->log(
          failing ? log_level::debug : log_level::warn,
          std::string("acquire: attempt failed, retrying until the wait's deadline: ") + e.what());
      failing = true;
    }
    for (bool slept = false;; slept = true) {
      // A lock handed to us by a release: its clock starts when we sent the attempt whose
      // ticket refresh the release read (see `handoff`), and its first term is the one our
      // tickets asked for (detail::handoff_term). When that leaves less than a third of the
      // term, the next attempt takes it instead: it finds the lock ours and extends it to the
      // full ttl.
      if (auto h = watch ? watch->take_handoff() : std::nullopt) {
        const auto first = detail::handoff_term(options);
        auto it = std::find_if(sent_at.begin(), sent_at.end(),
                               [&](const auto& p) { return p.first == h->attempt; });
        if (it != sent_at.end() &&
            it->second + first * 2 / 3 - detail::safety_margin(first) > steady_clock::now())
          return granted(core_->adopt(what, what.nonce, h->granted, it->second, first),
                         "handed over");
        break;  // attempt now
      }
      if (slept) break;
      auto now = steady_clock::now();
      if (now >= until) {
        core_->emit({event_kind::not_acquired, std::string(name), 0, since_start(),
                     waits ? "timed out" : "held"});
        return std::nullopt;
      }
      // A queued waiter that releases can wake is handed the lock by the release itself: it
      // polls only to refresh its ticket and when the holder's lease runs out (a holder that
      // died releases nothing). Polling sooner would only send attempts that are refused.
      auto wake_at = queued && core_->db().wakes_other_processes() ? now + fair_ticket_ttl / 3
                                                                   : now + delay.next();
      if (refused.holder_left > milliseconds::zero())
        wake_at = std::min(wake_at, now + refused.holder_left + milliseconds{1});
      // A queued waiter must attempt again before its ticket lapses.
      if (queued) wake_at = std::min(wake_at, now + fair_ticket_ttl / 3);
      wake_at = std::min(wake_at, until);
      if (watch->wait_until(wake_at) == release_watch::wake::cancelled) {
        core_->emit({event_kind::not_acquired, std::string(name), 0, since_start(), "cancelled"});
        throw error(errc::cancelled,
                    "acquire " + detail::quoted(name) + ": the client was shut down while waiting");
      }
    }
  }
}

transaction_grant client::prepare_grant(std::string_view name, const lock_options& options) const {
  detail::validate_name(name);
  detail::validate(options);
  transaction_grant g;
  g.name = std::string(name);
  g.nonce = detail::random_hex(16);
  g.options = options;
  g.sent = std::chrono::steady_clock::now();
  g.requested_at = std::chrono::system_clock::now();
  return g;
}

lease client::adopt(const transaction_grant& g) {
  core_->ensure_open();
  if (g.token <= 0 || g.nonce.empty())
    throw error(errc::invalid_argument,
                "adopt " + detail::quoted(g.name) + ": the grant has no token (it was refused)",
                std::string(core_->db().kind()));
  detail::client_core::target what{g.name, g.options, nullptr, 1, g.nonce};
  grant granted{g.token, g.requested_at, g.requested_at + g.options.ttl};
  lease adopted(core_->adopt(what, g.nonce, granted, g.sent));
  // One renewal proves the grant is in the database (its transaction committed) and learns the
  // database's expiry; a grant that was rolled back is lost here, not at the first keepalive.
  if (!adopted.renew())
    throw error(errc::lease_lost,
                "adopt " + detail::quoted(g.name) + " (token " + std::to_string(g.token) +
                    "): the grant is not in the database (did its transaction commit?)",
                std::string(core_->db().kind()));
  return adopted;
}

int client::schema_version() {
  core_->ensure_open();
  return core_->db().schema_version(core_->op_deadline());
}

int client::migrate() {
  core_->ensure_open();
  int v = core_->db().migrate(core_->db().latest_schema_version(), core_->op_deadline());
  core_->schema_migrated();
  return v;
}

void client::shutdown() { core_->shutdown(); }

const std::string& client::owner() const noexcept { return core_->owner(); }

const std::shared_ptr<backend>& client::get_backend() const noexcept { return core_->db_ptr(); }

}  // namespace sqlock
