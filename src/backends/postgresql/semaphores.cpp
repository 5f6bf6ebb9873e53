// SPDX-License-Identifier: Apache-2.0
// Semaphore operations of the PostgreSQL backend: try_acquire_semaphore, inspect_semaphore,
// list_semaphores and force_release_semaphore. (Renewing, releasing and abandoning a holder
// share the lock operations' code in locks.cpp.)

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

acquire_result postgresql_backend::try_acquire_semaphore(const semaphore_request& r,
                                                         deadline until) {
  const std::string what = "acquire semaphore " + quoted(r.name);
  // Mark the semaphore for wake-ups only when a notification can reach us; take a queue
  // ticket only for a fair attempt that will wait.
  const bool mark = r.waiting && options_.notifications && !listener_.known_deaf();
  const bool fair = r.fair && r.waiting;
  // p_ticket_ms sizes the queue ticket and the waiter mark. A fair waiter attempts every
  // third of its ticket's life, so its ticket_ttl also keeps the mark fresh; a waiter
  // without a ticket sleeps up to the signalled backoff cap (2 s) and marks for as long as
  // a lock's waiter does.
  const milliseconds ticket_ms =
      fair ? (r.ticket_ttl > milliseconds::zero() ? r.ticket_ttl : fair_ticket_ttl)
           : std::max(r.ticket_ttl, waiter_mark);
  auto c = checkout(until, what);
  auto res =
      run(*c, what, "sqlock_sem_acquire", sql().sem_acquire,
          {r.name, std::to_string(r.limit), std::to_string(r.count), r.owner, r.nonce, r.metadata,
           std::to_string(r.ttl.count()), std::string(mark ? "true" : "false"),
           std::string(fair ? "true" : "false"), std::to_string(ticket_ms.count()), channel_,
           std::to_string(r.attempt), std::to_string(r.handoff_term().count()), handoff_channel_},
          until, errc::in_doubt);
  if (res.rows() != 1)
    throw error(errc::internal,
                what + " on postgresql: sqlock_semaphore_attempt returned " +
                    std::to_string(res.rows()) + " rows",
                kind_name);
  acquire_result out;
  if (res.boolean(0, 0)) {
    out.granted = read_grant(res);
    out.granted->server_epoch = c->server_epoch;
    return out;
  }
  if (options_.notifications) listener_.ensure_started(milliseconds{0});
  // 1 us: retry at once (room appeared while this attempt marked itself as a waiter, so
  // no release will wake it); 0: unknown (a lapsed holder's fenced transaction is still
  // open), the caller retries with its backoff.
  std::int64_t retry = res.integer(0, 4);
  out.holder_expires_in = retry <= 0 ? milliseconds{0} : std::max(milliseconds{1}, us_to_ms(retry));
  return out;
}

std::optional<semaphore_record> postgresql_backend::inspect_semaphore(std::string_view name,
                                                                      deadline until) {
  const std::string what = "inspect semaphore " + quoted(name);
  auto c = checkout(until, what);
  auto r = run(*c, what, "sqlock_sem_inspect", sql().sem_inspect, {std::string(name)}, until);
  auto all = read_semaphores(r);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

std::vector<semaphore_record> postgresql_backend::list_semaphores(const list_filter& f,
                                                                  deadline until) {
  const std::string what = "list semaphores";
  auto c = checkout(until, what);
  auto upper = prefix_upper_bound(f.prefix);
  param hi = f.prefix.empty() || upper.empty() ? param{} : param{upper};
  int show = f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2;
  param limit = f.limit == 0 ? param{} : param{std::to_string(f.limit)};
  auto r = run(*c, what, "sqlock_sem_list", sql().sem_list,
               {f.prefix, hi, std::to_string(show), limit}, until);
  return read_semaphores(r);
}

std::size_t postgresql_backend::force_release_semaphore(std::string_view name, std::int64_t token,
                                                        deadline until) {
  const std::string what = "force release semaphore " + quoted(name);
  std::size_t n;
  {
    auto c = checkout(until, what);
    auto r = run(*c, what, "sqlock_sem_force", sql().sem_force,
                 {std::string(name), std::to_string(token), channel_}, until);
    n = static_cast<std::size_t>(r.integer(0, 0));
  }
  if (n > 0) registry_.notify(name);
  return n;
}

}  // namespace sqlock::detail::pg
