// SPDX-License-Identifier: Apache-2.0
// client::try_acquire_all: several locks at once, all or none.
//
// Design: every attempt asks the backend for all the names in one call
// (backend::try_acquire_all: one statement on PostgreSQL, one write transaction on SQLite), in
// byte order of the names, so no caller ever holds some names while it waits for others: there
// is no hold-and-wait, hence no deadlock between callers asking in different orders, and a
// refusal leaves nothing held. A refused call waits as a single acquire does (section 3 of the
// design): until the earliest of a release of the name that refused it, that holder's expiry by
// the database clock, a capped jittered backoff and the caller's deadline. It waits on one of
// the names that refused it, the one whose holder's lease runs longest: every name must be free
// at once, so a release of another name alone could not let it in. Its watches are observers'
// (release_watch::make_observer), so a release's one wake-up still goes to a single-name waiter
// of that name. It takes no ticket in any name's queue: such waits are not fair, and a release
// hands a lock to a queued single-name waiter before a multi-name waiter can take it.

#include <algorithm>
#include <numeric>

#include <sqlock/client.hpp>
#include <sqlock/error.hpp>

#include "core/core.hpp"
#include "core/wait.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock {

namespace {
std::string quoted_names(const std::vector<acquire_request>& requests) {
  std::string out;
  for (const auto& r : requests) out += (out.empty() ? "" : ", ") + detail::quoted(r.name);
  return out;
}
}  // namespace

std::optional<std::vector<lease>> client::try_acquire_all(const std::vector<std::string>& names,
                                                          std::chrono::milliseconds wait,
                                                          const lock_options& options) {
  using namespace std::chrono;
  const auto start = steady_clock::now();
  // Everything is checked before any I/O.
  if (names.empty()) throw error(errc::invalid_argument, "try_acquire_all: no lock names given");
  for (const auto& n : names) detail::validate_name(n);
  detail::validate(options);
  if (options.fair)
    throw error(errc::invalid_argument,
                "try_acquire_all: lock_options::fair is not supported (several locks are taken "
                "without queueing)");
  // The canonical order: bytes of the names (std::string compares chars as unsigned char).
  std::vector<std::size_t> order(names.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return names[a] < names[b]; });
  for (std::size_t k = 1; k < order.size(); ++k)
    if (names[order[k]] == names[order[k - 1]])
      throw error(errc::invalid_argument, "try_acquire_all: lock name " +
                                              detail::quoted(names[order[k]]) + " is given twice");
  const auto until = detail::wait_deadline("try_acquire_all", names[order[0]], start, wait);
  core_->ensure_open();
  const bool waits = until > start;
  const std::size_t n = names.size();

  // Subscribed BEFORE the first attempt, so no release between a refusal and the sleep is
  // missed. Dropped on every way out.
  struct watches_guard {
    detail::client_core& core;
    std::vector<std::shared_ptr<release_watch>> watches;  // in canonical order
    ~watches_guard() {
      for (auto& w : watches) core.remove_waiter(w);
    }
  } guard{*core_, {}};
  if (waits) {
    for (std::size_t k = 0; k < n; ++k) {
      guard.watches.push_back(core_->add_waiter(names[order[k]]));
      guard.watches.back()->make_observer();
    }
  }
  auto emit_each = [&](event_kind kind, const char* reason) {
    for (std::size_t k = 0; k < n; ++k)
      core_->emit({kind, names[order[k]], 0,
                   duration_cast<milliseconds>(steady_clock::now() - start), reason});
  };

  detail::backoff delay(core_->db().wakes_other_processes());
  bool failing = false;
  std::int64_t number = 0;
  for (;;) {
    std::size_t blocker = n;  // the name to wait on (n: none known)
    milliseconds blocker_left{0};
    try {
      core_->ensure_schema();
      ++number;
      std::vector<acquire_request> requests;
      requests.reserve(n);
      for (std::size_t k = 0; k < n; ++k) {
        acquire_request r;
        r.name = names[order[k]];
        r.owner = core_->owner();
        r.nonce = detail::random_hex(16);  // fresh per attempt: nothing queues under it
        r.metadata = options.metadata;
        r.ttl = options.ttl;
        r.waiting = waits;
        r.attempt = number;
        requests.push_back(std::move(r));
        core_->emit({event_kind::attempt, names[order[k]], 0, {}, {}});
      }
      // Ends whatever an attempt may have granted, by nonce; the first failure's message.
      auto abandon_all = [&]() -> std::string {
        std::string failed;
        for (const auto& r : requests) {
          try {
            core_->db().abandon({r.name, r.nonce, 0, lease_kind::lock}, core_->op_deadline());
          } catch (const error& e) {
            if (failed.empty()) failed = e.what();
          }
        }
        return failed;
      };
      const auto sent = steady_clock::now();
      std::vector<acquire_result> results;
      try {
        results = core_->db().try_acquire_all(requests, core_->op_deadline());
      } catch (const error& e) {
        if (e.code() != errc::in_doubt) throw;
        // The grants may have committed before the connection dropped: end every lease that
        // carries this attempt's nonces, so no row is left held by a lease nobody knows.
        if (auto failed = abandon_all(); !failed.empty())
          throw error(errc::in_doubt,
                      "acquire " + quoted_names(requests) + " on " +
                          std::string(core_->db().kind()) +
                          ": outcome unknown and the cleanup failed (" + failed +
                          "); if they were granted the rows expire by themselves within " +
                          std::to_string(options.ttl.count()) + " ms",
                      e.backend(), e.sqlstate());
        throw error(errc::unavailable,
                    std::string(e.what()) + " (the attempt was cleaned up; retry)", e.backend(),
                    e.sqlstate());
      }
      const auto granted = static_cast<std::size_t>(
          std::count_if(results.begin(), results.end(),
                        [](const acquire_result& r) { return r.granted.has_value(); }));
      if (results.size() != n || (granted != 0 && granted != n)) {
        // A backend that broke the contract: give back what it may have granted.
        (void)abandon_all();
        throw error(errc::internal, "acquire " + quoted_names(requests) + " on " +
                                        std::string(core_->db().kind()) +
                                        ": the backend granted only some of the locks");
      }
      if (granted == n) {
        std::vector<std::optional<lease>> held(n);
        std::size_t k = 0;
        try {
          for (; k < n; ++k) {
            const auto& r = requests[k];
            detail::client_core::target what{r.name, options, nullptr, 1, r.nonce};
            held[order[k]].emplace(lease(core_->adopt(what, r.nonce, *results[k].granted, sent)));
          }
        } catch (...) {
          // Shut down while the grants were in flight: adopt gave back its own grant, the
          // leases already made release theirs in their destructors; the rest go back here.
          for (std::size_t j = k + 1; j < n; ++j) {
            try {
              core_->db().release({requests[j].name, requests[j].nonce, results[j].granted->token,
                                   lease_kind::lock},
                                  core_->op_deadline());
            } catch (const error&) {
            }
          }
          throw;
        }
        std::vector<lease> out;
        out.reserve(n);
        for (auto& l : held) {
          core_->emit({event_kind::acquired,
                       l->name(),
                       l->token(),
                       duration_cast<milliseconds>(steady_clock::now() - start),
                       {}});
          out.push_back(std::move(*l));
        }
        return out;
      }
      for (std::size_t k = 0; k < n; ++k) {
        if (!results[k].blocking) continue;
        if (blocker == n || results[k].holder_expires_in > blocker_left) {
          blocker = k;
          blocker_left = results[k].holder_expires_in;
        }
      }
      failing = false;
    } catch (const error& e) {
      // While waiting, an unreachable or restarting database is retried until the deadline,
      // as acquire_until does; every other error is final.
      if (e.code() != errc::unavailable || steady_clock::now() >= until) throw;
      core_->log(
          failing ? log_level::debug : log_level::warn,
          std::string("acquire: attempt failed, retrying until the wait's deadline: ") + e.what());
      failing = true;
    }
    const auto now = steady_clock::now();
    if (now >= until) {
      emit_each(event_kind::not_acquired, waits ? "timed out" : "held");
      return std::nullopt;
    }
    auto wake_at = now + delay.next();
    if (blocker_left > milliseconds::zero())
      wake_at = std::min(wake_at, now + blocker_left + milliseconds{1});
    wake_at = std::min(wake_at, until);
    auto& watch = guard.watches[blocker == n ? 0 : blocker];
    if (watch->wait_until(wake_at) == release_watch::wake::cancelled) {
      emit_each(event_kind::not_acquired, "cancelled");
      throw error(errc::cancelled, "try_acquire_all " + detail::quoted(names[order[0]]) +
                                       ": the client was shut down while waiting");
    }
  }
}

}  // namespace sqlock
