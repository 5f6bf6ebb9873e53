// SPDX-License-Identifier: Apache-2.0
// Lock operations of the PostgreSQL backend: try_acquire, renew (of locks and semaphore holders
// alike), release, abandon, force_release, inspect, list and inspect_watched.

#include <algorithm>
#include <mutex>
#include <thread>

#include "backends/common/backend_common.hpp"
#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/json.hpp"
#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

acquire_result postgresql_backend::try_acquire(const acquire_request& r, deadline until) {
  const std::string what = "acquire " + quoted(r.name);
  auto c = checkout(until, what);
  // A dropped connection or a missed deadline after sending leaves the grant unknown:
  // in_doubt, and the client cleans up by nonce.
  // Mark the row for a wake-up only when a notification can reach us: a marked row makes
  // the release notify, and a notifying commit takes a server-wide lock.
  const bool mark = r.waiting && options_.notifications && !listener_.known_deaf();
  // An attempt that will not wait and follows no earlier one sends the statement without the
  // queue (statements::acquire_try).
  const bool plain = !r.waiting && r.attempt <= 1;
  auto res = plain ? run(*c, what, "sqlock_acquire_try", sql().acquire_try,
                         {r.name, r.owner, r.nonce, r.metadata, std::to_string(r.ttl.count()),
                          std::string(r.fair ? "true" : "false")},
                         until, errc::in_doubt)
                   : run(*c, what, "sqlock_acquire", sql().acquire,
                         {r.name, r.owner, r.nonce, r.metadata, std::to_string(r.ttl.count()),
                          std::string(mark ? "true" : "false"), std::to_string(waiter_mark.count()),
                          std::string(r.fair ? "true" : "false"),
                          std::string(r.waiting && r.queue ? "true" : "false"),
                          std::to_string(r.ticket_ttl.count()), std::to_string(r.attempt),
                          std::to_string(r.handoff_term().count()), handoff_channel_},
                         until, errc::in_doubt);
  acquire_result out;
  if (res.rows() == 0)
    throw error(errc::internal, what + " on postgresql: the statement returned no row", kind_name);
  if (res.boolean(0, 0)) {
    out.granted = read_grant(res);
    out.granted->server_epoch = c->server_epoch;
    return out;
  }
  out.queued = res.boolean(0, 4);
  if (res.null(0, 1)) {
    // No row: we lost a race with a concurrent grant of a missing row (we do not know the
    // winner's expiry: look again shortly), or, fair, an older ticket waits for a lock that
    // was never granted (back off: its waiter takes it at its next attempt).
    out.holder_expires_in = r.fair ? milliseconds{0} : milliseconds{1};
    return out;
  }
  // Contention: someone here may soon wait, so have the listener ready by then (started
  // from here rather than from inside the waiter's deadline window).
  if (options_.notifications) listener_.ensure_started(milliseconds{0});
  std::int64_t left = res.integer(0, 1);
  // An expired row that was refused is locked by another transaction (a fenced one, or a
  // concurrent grant); a mark that was due but not written means a release slipped in, or
  // the row is locked. Either way the expiry is unknown: 0 makes the caller back off
  // (2 ms, doubling), so a row pinned for long is not polled in a tight loop.
  bool mark_missed = mark && res.integer(0, 3) == 1 && res.integer(0, 2) == 0;
  out.holder_expires_in =
      left <= 0 || mark_missed ? milliseconds{0} : std::max(milliseconds{1}, us_to_ms(left));
  return out;
}

// statements::acquire_all: every name or none, in one statement (one round trip).
std::vector<acquire_result> postgresql_backend::try_acquire_all(
    const std::vector<acquire_request>& requests, deadline until) {
  std::vector<acquire_result> out(requests.size());
  if (requests.empty()) return out;
  std::string what = "acquire";
  std::string json = "[";
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    what += (i ? ", " : " ") + quoted(r.name);
    if (i) json += ',';
    json += "{\"i\":" + std::to_string(i) + ",\"n\":";
    append_json_string(json, r.name);
    json += ",\"o\":";
    append_json_string(json, r.nonce);
    json += ",\"w\":";
    append_json_string(json, r.owner);
    json += ",\"m\":";
    append_json_string(json, r.metadata);
    json += ",\"ms\":" + std::to_string(r.ttl.count()) + "}";
  }
  json += ']';
  // As try_acquire: mark held rows only when a notification can reach us.
  const bool waiting = std::any_of(requests.begin(), requests.end(),
                                   [](const acquire_request& r) { return r.waiting; });
  const bool mark = waiting && options_.notifications && !listener_.known_deaf();
  auto c = checkout(until, what);
  result res;
  try {
    res = run(*c, what, "sqlock_acquire_all", sql().acquire_all,
              {json, std::string(mark ? "true" : "false"), std::to_string(waiter_mark.count())},
              until, errc::in_doubt);
  } catch (const error& e) {
    // division_by_zero: the statement's guard (see statements::acquire_all) rolled back a
    // grant that a concurrent one made partial. Someone else just took a name: back off.
    if (e.sqlstate() != "22012" || c->broken()) throw;
    return out;
  }
  if (res.rows() != static_cast<int>(requests.size()))
    throw error(errc::internal,
                what + " on postgresql: " + std::to_string(res.rows()) + " rows for " +
                    std::to_string(requests.size()) + " names",
                kind_name);
  bool granted = false, contended = false;
  for (int row = 0; row < res.rows(); ++row) {
    auto& o = out.at(static_cast<std::size_t>(res.integer(row, 0)));
    if (!res.null(row, 1)) {
      o.granted = grant{res.integer(row, 1), from_epoch_us(res.integer(row, 2)),
                        from_epoch_us(res.integer(row, 3)), c->server_epoch};
      granted = true;
      continue;
    }
    o.blocking = res.boolean(row, 9);
    if (!o.blocking) continue;
    contended = true;
    // As try_acquire: an expired row that blocked is locked by another transaction, and a mark
    // that was due but not written means the row changed meanwhile: expiry unknown (0).
    const bool live = res.boolean(row, 5);
    const bool mark_missed = mark && res.boolean(row, 7) && !res.boolean(row, 8);
    o.holder_expires_in = !live || mark_missed
                              ? milliseconds{0}
                              : std::max(milliseconds{1}, us_to_ms(res.integer(row, 6)));
  }
  if (granted) {
    for (const auto& o : out)
      if (!o.granted)
        throw error(errc::internal, what + " on postgresql: granted only some of the names",
                    kind_name);
  }
  if (contended && options_.notifications) listener_.ensure_started(milliseconds{0});
  return out;
}

bool postgresql_backend::update_metadata(const lease_key& key, std::string_view metadata,
                                         deadline until) {
  const std::string what =
      "update metadata of " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  ended_rows out;
  {
    auto c = checkout(until, what);
    // A row locked for a moment (a contender's mark) is looked at again a few times, as
    // end_lease does; one that stays locked is an open fenced transaction.
    for (int attempt = 0;; ++attempt) {
      out = read_ended(
          run(*c, what, "sqlock_set_metadata", sql().set_metadata,
              {key.name, key.nonce, std::to_string(key.token), std::string(metadata), channel_},
              until));
      if (!out.locked) break;
      auto pause = jitter(milliseconds{1}, milliseconds{1 << std::min(attempt, 3)});
      if (attempt >= 6 || steady::now() + pause >= until)
        throw row_locked(what +
                             " on postgresql: the lease's row is locked by another open "
                             "transaction (a fenced transaction?); not waiting for it",
                         kind_name, std::string(sqlstate_row_locked));
      std::this_thread::sleep_for(pause);
    }
  }
  // Observers in this process at once (a NOTIFY reaches them only when one marked the row).
  if (out.ended) registry_.notify_observers(key.name);
  return out.ended;
}

std::vector<renew_result> postgresql_backend::renew(const std::vector<renew_request>& requests,
                                                    deadline until) {
  std::vector<renew_result> out;
  if (requests.empty()) return out;
  const std::string what = describe_renewal(requests);
  std::string json = "[";
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto& q = requests[i];
    if (i) json += ',';
    json += "{\"i\":" + std::to_string(i) +
            ",\"k\":" + (q.key.kind == lease_kind::semaphore ? "1" : "0") + ",\"n\":";
    append_json_string(json, q.key.name);
    json += ",\"o\":";
    append_json_string(json, q.key.nonce);
    json +=
        ",\"t\":" + std::to_string(q.key.token) + ",\"ms\":" + std::to_string(q.ttl.count()) + "}";
  }
  json += ']';
  const bool mixed = std::any_of(requests.begin(), requests.end(), [](const renew_request& q) {
    return q.key.kind == lease_kind::semaphore;
  });
  const char* statement_name = mixed ? "sqlock_renew_mixed" : "sqlock_renew";
  // (Selected by member: the statements exist only once a first connection was made.)
  std::string statements::*statement = mixed ? &statements::renew_mixed : &statements::renew;

  // The keepalive's dedicated connection when free; otherwise (a user renew racing the
  // keepalive) a pool connection.
  std::unique_lock<std::mutex> own(renew_mu_, std::try_to_lock);
  result res;
  std::uint64_t epoch = 0;
  if (own.owns_lock()) {
    if (!renew_conn_ || renew_conn_->broken() || stale(*renew_conn_)) {
      renew_conn_.reset();
      // Adopt an idle pool connection when there is one: the keepalive's first renewal
      // has a short budget and must not spend it on a connection handshake (SCRAM through
      // a pooler can take longer than a 100 ms lease's first renewal window).
      {
        std::lock_guard<std::mutex> lock(pool_mu_);
        while (!renew_conn_ && !idle_.empty()) {
          renew_conn_ = std::move(idle_.back());
          idle_.pop_back();
          --open_;
          pool_cv_.notify_one();
          if (stale(*renew_conn_)) renew_conn_.reset();
        }
      }
      if (!renew_conn_) renew_conn_ = connect(until, what);
    }
    try {
      epoch = renew_conn_->server_epoch;
      res = run(*renew_conn_, what, statement_name, sql().*statement, {json}, until);
    } catch (...) {
      if (renew_conn_->broken()) renew_conn_.reset();
      throw;
    }
  } else {
    auto c = checkout(until, what);
    epoch = c->server_epoch;
    res = run(*c, what, statement_name, sql().*statement, {json}, until);
  }
  if (res.rows() != static_cast<int>(requests.size()))
    throw error(errc::internal,
                what + " on postgresql: " + std::to_string(res.rows()) + " results for " +
                    std::to_string(requests.size()),
                kind_name);
  out.resize(requests.size());
  // The schema 9 columns (statements_locks.cpp): time left, time to a release request's
  // deadline, and whether a lease that was not renewed carried a request.
  const int extra = mixed ? 6 : 5;
  for (int row = 0; row < res.rows(); ++row) {
    auto i = static_cast<std::size_t>(res.integer(row, 0));
    const auto& key = requests.at(i).key;
    auto& o = out.at(i);
    const bool marked = !res.null(row, extra + 2) && res.boolean(row, extra + 2);
    if (!res.null(row, 1)) {
      o.outcome = renew_outcome::renewed;
      o.expires_at = from_epoch_us(res.integer(row, 1));
      o.server_epoch = epoch;
      o.expires_in = std::max(milliseconds{1}, us_to_ms(res.integer(row, extra)));
      if (!res.null(row, extra + 1))
        o.revoke_in = std::max(milliseconds{0}, us_to_ms(res.integer(row, extra + 1)));
    } else if (marked && res.integer(row, 3) == key.token && !res.boolean(row, 4) &&
               (key.kind == lease_kind::semaphore ? !res.boolean(row, 5)
                                                  : res.text(row, 2) == key.nonce)) {
      o.outcome = renew_outcome::revoked;  // ended by its release request's deadline
    } else if (key.kind == lease_kind::semaphore) {
      // A holder row is this lease alone (its key is name and nonce). Missing is the normal
      // end of a holder row (deleted by a later grant once it ended), so: expired.
      if (res.null(row, 2))
        o.outcome = renew_outcome::expired;
      else if (res.boolean(row, 5))
        o.outcome = renew_outcome::force_released;
      else if (res.integer(row, 3) != key.token)
        o.outcome = renew_outcome::taken_over;  // re-granted to the same nonce (in doubt)
      else
        o.outcome = res.boolean(row, 4) ? renew_outcome::busy : renew_outcome::expired;
    } else if (res.null(row, 2)) {
      o.outcome = renew_outcome::missing;
    } else {
      o.outcome = refused_renewal(key, res.text(row, 2), res.integer(row, 3), res.boolean(row, 4));
    }
  }
  return out;
}

bool postgresql_backend::release(const lease_key& key, deadline until) {
  const bool sem = key.kind == lease_kind::semaphore;
  const std::string what = std::string(sem ? "release semaphore " : "release ") + quoted(key.name) +
                           " (token " + std::to_string(key.token) + ")";
  const std::vector<param> params{key.name, key.nonce, std::to_string(key.token), channel_,
                                  handoff_channel_};
  // Wait for the row at most briefly: a lock still held after that is an open fenced
  // transaction (possibly this thread's own), which a release must never wait for. The
  // statement that missed the short deadline is cancelled with its connection; then the
  // non-waiting form decides between "locked" (the client finishes in the background, with
  // abandon()) and a real failure.
  if (steady::now() + milliseconds{100} < until) {
    deadline brief{};
    try {
      ended_rows out;
      {
        // The window starts once a connection is in hand: it bounds the wait for the row,
        // not a connect (tens of ms, more on a loaded machine).
        auto c = checkout(until, what);
        brief = std::min(until, steady::now() + milliseconds{100});
        out = read_ended(
            sem ? run(*c, what, "sqlock_sem_release_waiting", sql().sem_release_waiting, params,
                      brief)
                : run(*c, what, "sqlock_release_waiting", sql().release_waiting, params, brief));
        out.stamp(c->server_epoch);
      }
      wake(key.name, out, key.kind);
      return out.ended;
    } catch (const error& e) {
      if (e.code() != errc::unavailable || brief == deadline{} || steady::now() < brief) throw;
    }
  }
  return sem ? end_lease(what, "sqlock_sem_release", &statements::sem_release, params, until,
                         key.kind)
             : end_lease(what, "sqlock_release", &statements::release, params, until);
}

bool postgresql_backend::abandon(const lease_key& key, deadline until) {
  const std::vector<param> params{key.name, key.nonce, std::nullopt, channel_, handoff_channel_};
  // Without a token, the lease (if any) is a grant the client never learnt of (an in-doubt
  // acquire, a lock handed to a waiter that gave up): the history records it as 'lost'. With
  // one, it is the background retry of a release: recorded as released.
  const bool lost = key.token == 0;
  // A semaphore's function leaves the queue first, then ends what the nonce holds in a later
  // snapshot (006_semaphore_handoff.up.sql), as the two statements below do for a lock.
  if (key.kind == lease_kind::semaphore)
    return end_lease("clean up semaphore acquire " + quoted(key.name),
                     lost ? "sqlock_sem_abandon_lost" : "sqlock_sem_abandon",
                     lost ? &statements::sem_abandon_lost : &statements::sem_abandon, params, until,
                     key.kind);
  const std::string what = "clean up acquire " + quoted(key.name);
  {
    // First out of the queue, then (in a later snapshot) end whatever lease the nonce holds,
    // handing it on: see statements::leave_queue.
    auto c = checkout(until, what);
    run(*c, what, "sqlock_leave_queue", sql().leave_queue, {key.name, key.nonce}, until);
  }
  return end_lease(what, lost ? "sqlock_abandon_lost" : "sqlock_abandon",
                   lost ? &statements::abandon_lost : &statements::abandon, params, until);
}

bool postgresql_backend::force_release(std::string_view name, deadline until) {
  return end_lease("force release " + quoted(name), "sqlock_force", &statements::force,
                   {std::string(name), std::nullopt, std::nullopt, channel_}, until);
}

std::size_t postgresql_backend::request_release(lease_kind kind, std::string_view name,
                                                std::int64_t token, milliseconds grace,
                                                deadline until) {
  const bool sem = kind == lease_kind::semaphore;
  const std::string what = describe_request(kind, name);
  std::size_t n;
  {
    auto c = checkout(until, what);
    auto r = run(
        *c, what, sem ? "sqlock_sem_request_release" : "sqlock_request_release",
        sem ? sql().sem_request_release : sql().request_release,
        {std::string(name), std::to_string(token), std::to_string(grace.count()), channel_}, until);
    n = static_cast<std::size_t>(r.integer(0, 0));
  }
  // This process's own holders hear it at once too (a NOTIFY reaches other listeners only).
  if (n > 0) registry_.notify(name);
  return n;
}

std::optional<lock_record> postgresql_backend::inspect(std::string_view name, deadline until) {
  const std::string what = "inspect " + quoted(name);
  auto c = checkout(until, what);
  auto r = run(*c, what, "sqlock_inspect", sql().inspect, {std::string(name)}, until);
  if (r.rows() == 0) return std::nullopt;
  auto record = read_record(r, 0);
  auto w =
      run(*c, what, "sqlock_inspect_waiters", sql().inspect_waiters, {std::string(name)}, until);
  for (int row = 0; row < w.rows(); ++row)
    record.waiters.push_back({w.text(row, 0), w.integer(row, 1), w.boolean(row, 2),
                              from_epoch_us(w.integer(row, 3)), us_to_ms(w.integer(row, 4))});
  record.queued = record.waiters.size();
  return record;
}

std::vector<lock_record> postgresql_backend::list(const list_filter& f, deadline until) {
  const std::string what = "list";
  auto c = checkout(until, what);
  auto upper = prefix_upper_bound(f.prefix);
  param hi = f.prefix.empty() || upper.empty() ? param{} : param{upper};
  int show = f.show == list_filter::which::all ? 0 : f.show == list_filter::which::held ? 1 : 2;
  param limit = f.limit == 0 ? param{} : param{std::to_string(f.limit)};
  auto r =
      run(*c, what, "sqlock_list", sql().list, {f.prefix, hi, std::to_string(show), limit}, until);
  std::vector<lock_record> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(read_record(r, i));
    out.back().queued = static_cast<std::size_t>(r.integer(i, 7));
  }
  return out;
}

std::optional<lock_record> postgresql_backend::inspect_watched(std::string_view name,
                                                               milliseconds mark_for,
                                                               deadline until) {
  const std::string what = "inspect " + quoted(name);
  // Mark only when a notification can reach us (as try_acquire does).
  const bool mark =
      mark_for > milliseconds::zero() && options_.notifications && !listener_.known_deaf();
  std::optional<lock_record> out;
  {
    auto c = checkout(until, what);
    auto r =
        run(*c, what, "sqlock_inspect_watched", sql().inspect_watched,
            {std::string(name), std::to_string(mark_for.count()), mark ? "true" : "false"}, until);
    if (r.rows() == 0) return std::nullopt;
    if (!r.boolean(0, 8)) return read_record(r, 0);
    // The row changed after our snapshot (the mark's UPDATE saw a newer version): it was
    // released or re-marked meanwhile. Look again rather than report a stale holder.
    auto again = run(*c, what, "sqlock_inspect", sql().inspect, {std::string(name)}, until);
    if (again.rows() > 0) out = read_record(again, 0);
  }
  return out;
}

}  // namespace sqlock::detail::pg
