// SPDX-License-Identifier: Apache-2.0
// The MariaDB backend's semaphore operations: acquire (with the fair queue of tickets), release
// and abandon (which hand the room to the queue), inspect, list, force release. The same rules
// as the SQLite backend's semaphores.cpp, in write transactions that hold the counter row.

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/mariadb/backend.hpp"
#include "backends/mariadb/errors.hpp"
#include "backends/mariadb/rows.hpp"
#include "backends/mariadb/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::mariadb {
namespace {

semaphore_state semaphore_view(connection& c, const std::string& name, const std::string& nonce,
                               std::int64_t now, const std::string& what) {
  return read_semaphore_state(c, sql::semaphore_row, sql::semaphore_usage, sql::semaphore_queue,
                              name, nonce, now, what);
}

// Granted: drop ended holders and lapsed tickets (and ours); changed_at remembers when the last
// of them ended, for purge.
std::int64_t add_holder(connection& c, write_transaction& tx, const semaphore_request& r,
                        const semaphore_state& v, const std::string& what) {
  const std::int64_t now = tx.now();
  std::int64_t ended_upto = 0;
  {
    auto gone = c.prepare(sql::semaphore_ended_upto, what);
    gone.bind(1, r.name).bind(2, now).bind(3, r.nonce);
    if (gone.step() && !gone.is_null(0)) ended_upto = gone.integer(0);
  }
  c.prepare(sql::holders_delete_ended, what).bind(1, r.name).bind(2, now).run();
  c.prepare(sql::tickets_delete_ended, what).bind(1, r.name).bind(2, now).bind(3, r.nonce).run();
  const std::int64_t token = tx.next_token(v.token + 1);
  auto add = c.prepare(sql::holder_add, what);
  add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, token).bind(5, r.count);
  add.bind(6, now).bind(7, now + us(r.ttl)).bind(8, r.metadata).run();
  auto sem = c.prepare(sql::semaphore_upsert, what);
  sem.bind(1, r.name).bind(2, r.limit).bind(3, token).bind(4, now).bind(5, ended_upto).run();
  return token;
}

struct holder_row {
  std::int64_t token = 0, expires_at = 0, acquired_at = 0;
  bool forced = false;
  std::optional<std::int64_t> revoke_by;
};

// Locks and reads a holder row with NOWAIT (row_locked: a fenced transaction holds it).
std::optional<holder_row> lock_holder(connection& c, std::string_view name, std::string_view nonce,
                                      const std::string& what) {
  auto s = c.prepare(sql::holder_row, what);
  s.bind(1, name).bind(2, nonce);
  if (!s.step()) return std::nullopt;
  holder_row h;
  h.token = s.integer(0);
  h.expires_at = s.integer(1);
  h.forced = s.integer(2) != 0;
  if (!s.is_null(3) && !s.is_null(4) && s.integer(3) == h.token) h.revoke_by = s.integer(4);
  h.acquired_at = s.integer(5);
  return h;
}

}  // namespace

acquire_result mariadb_backend::try_acquire_semaphore(const semaphore_request& r, deadline until) {
  const std::string what = "acquire semaphore " + quoted(r.name);
  auto c = checkout(until, what);
  // Look first, without any lock: a certain refusal of a non-queueing attempt writes nothing.
  // Everything is decided again inside the write transaction.
  if (!(r.waiting && r.fair)) {
    const std::int64_t now = c->now_us(what);
    auto v = semaphore_view(*c, r.name, r.nonce, now, what);
    if (v.exists && !v.grantable(r)) return {std::nullopt, v.retry_in(now, us_time)};
  }
  write_transaction tx(*c, what);
  const std::int64_t now = tx.now();
  if (r.attempt > 1 && r.waiting && r.fair) {
    // A later attempt of a fair wait: a release may have handed units to this nonce. Taken as a
    // renewal would, so its local clock can start at this attempt.
    std::optional<holder_row> h;
    try {
      h = lock_holder(*c, r.name, r.nonce, what);
    } catch (const row_locked&) {
      return {std::nullopt, milliseconds::zero()};
    }
    if (h && h->expires_at > now && !h->forced) {
      const std::int64_t e = renewed_expiry(h->expires_at, now, us(r.ttl), h->revoke_by);
      c->prepare(sql::holder_set_expiry, what).bind(1, e).bind(2, r.name).bind(3, r.nonce).run();
      c->prepare(sql::ticket_drop, what).bind(1, r.name).bind(2, r.nonce).run();
      tx.commit(errc::in_doubt);
      return {grant{h->token, from_epoch_us(h->acquired_at), from_epoch_us(e)},
              milliseconds::zero()};
    }
  }
  auto v = semaphore_view(*c, r.name, r.nonce, now, what);
  check_semaphore_limit(v, r, what, kind_name);
  if (v.exists && !v.grantable(r)) {
    if (r.waiting && r.fair) {
      auto keep = c->prepare(sql::ticket_keep, what);
      keep.bind(1, now).bind(2, us(r.ticket_ttl)).bind(3, r.name).bind(4, r.nonce);
      keep.bind(5, r.attempt);
      if (keep.run() == 0) {
        // First refusal, or our ticket lapsed: a new place at the end of the queue.
        c->prepare(sql::ticket_drop, what).bind(1, r.name).bind(2, r.nonce).run();
        const std::int64_t ticket = tx.next_token(1);
        auto add = c->prepare(sql::ticket_add, what);
        add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, ticket).bind(5, r.count);
        add.bind(6, now + us(r.ticket_ttl)).bind(7, r.metadata);
        add.bind(8, us(r.handoff_term())).bind(9, r.attempt).run();
      }
      tx.commit();
    }
    return {std::nullopt, v.retry_in(now, us_time)};
  }
  const std::int64_t token = add_holder(*c, tx, r, v, what);
  tx.commit(errc::in_doubt);
  // Room left and others queued: the next waiter in this process may fit too.
  if (v.others_queued && v.used + r.count < r.limit) registry()->notify(r.name);
  return {grant{token, from_epoch_us(now), from_epoch_us(now + us(r.ttl))}, milliseconds::zero()};
}

// A semaphore holder's release (`abandon`: the nonce's ticket first, then whatever it holds) in
// one write transaction that hands the room to the oldest live tickets that fit, in order (a
// head that does not fit blocks those behind it; a ticket whose nonce already holds is stale
// and dropped). Each gets a holder row with a new token and its first term from now.
bool mariadb_backend::end_holder(const lease_key& key, bool abandon, deadline until,
                                 const std::string& what) {
  bool ended = false, ticket_dropped = false;
  std::vector<handoff> handed;
  {
    auto c = checkout(until, what);
    write_transaction tx(*c, what);
    const std::int64_t now = tx.now();
    if (abandon)
      ticket_dropped =
          c->prepare(sql::ticket_drop, what).bind(1, key.name).bind(2, key.nonce).run() > 0;
    auto h = lock_holder(*c, key.name, key.nonce, what);
    if (h && h->expires_at > now && (abandon || h->token == key.token)) {
      // As a lock's abandon (end_lock): a grant the client never learnt of is recorded 'lost'.
      const bool lost = abandon && key.token == 0;
      if (lost) c->prepare(sql::history_mark_lost, what).run();
      c->prepare(sql::holder_set_expiry, what)
          .bind(1, now)
          .bind(2, key.name)
          .bind(3, key.nonce)
          .run();
      if (lost) c->prepare(sql::history_unmark, what).run();
      ended = true;
    }
    if (ended || ticket_dropped) {
      auto v = semaphore_view(*c, key.name, key.nonce, now, what);
      struct waiter {
        std::string nonce, owner, metadata;
        std::int64_t units, ttl, attempt;
      };
      std::vector<waiter> queue;
      if (v.exists && v.others_queued) {
        auto q = c->prepare(sql::tickets_to_hand, what);
        q.bind(1, key.name).bind(2, now);
        while (q.step())
          queue.push_back(
              {q.text(0), q.text(1), q.text(3), q.integer(2), q.integer(4), q.integer(5)});
      }
      std::int64_t token = v.token;
      for (const auto& w : queue) {
        bool stale;
        {
          auto holds = c->prepare(sql::holder_exists, what);
          holds.bind(1, key.name).bind(2, w.nonce);
          stale = holds.step();
        }
        if (!stale && v.used + w.units > v.limit) break;
        c->prepare(sql::ticket_drop, what).bind(1, key.name).bind(2, w.nonce).run();
        if (stale) continue;
        token = tx.next_token(token + 1);
        auto add = c->prepare(sql::holder_add, what);
        add.bind(1, key.name).bind(2, w.nonce).bind(3, w.owner).bind(4, token).bind(5, w.units);
        add.bind(6, now).bind(7, now + w.ttl).bind(8, w.metadata).run();
        v.used += w.units;
        handed.push_back(
            {w.nonce, grant{token, from_epoch_us(now), from_epoch_us(now + w.ttl)}, w.attempt});
      }
      if (!handed.empty())
        c->prepare(sql::semaphore_token, what).bind(1, key.name).bind(2, token).run();
    }
    tx.commit();
  }
  for (const auto& h : handed) registry()->hand_off(key.name, h);
  if (ended || ticket_dropped) registry()->notify(key.name);
  return ended;
}

std::optional<semaphore_record> mariadb_backend::inspect_semaphore(std::string_view name,
                                                                   deadline until) {
  const std::string what = "inspect semaphore " + quoted(name);
  auto c = checkout(until, what);
  auto s = c->prepare(sql::semaphore_inspect, what);
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  const std::int64_t now = c->now_us(what);
  return read_semaphore(*c, s.text(0), s.integer(1), now, what);
}

std::vector<semaphore_record> mariadb_backend::list_semaphores(const list_filter& f,
                                                               deadline until) {
  const std::string what = "list semaphores";
  auto c = checkout(until, what);
  const std::int64_t now = c->now_us(what);
  auto s = c->prepare(sql::semaphore_list, what);
  s.bind(1, f.prefix);
  auto upper = prefix_upper_bound(f.prefix);
  if (f.prefix.empty() || upper.empty())
    s.bind_null(2);
  else
    s.bind(2, upper);
  s.bind(3, std::int64_t{f.show == list_filter::which::all    ? 0
                         : f.show == list_filter::which::held ? 1
                                                              : 2});
  s.bind(4, now);
  s.bind(5, f.limit == 0 ? INT64_MAX : static_cast<std::int64_t>(f.limit));
  std::vector<std::pair<std::string, std::int64_t>> names;
  while (s.step()) names.emplace_back(s.text(0), s.integer(1));
  std::vector<semaphore_record> out;
  out.reserve(names.size());
  for (auto& [name, limit] : names) out.push_back(read_semaphore(*c, name, limit, now, what));
  return out;
}

std::size_t mariadb_backend::force_release_semaphore(std::string_view name, std::int64_t token,
                                                     deadline until) {
  const std::string what = "force release semaphore " + quoted(name);
  auto c = checkout(until, what);
  const std::size_t ended = retry_locked(*c, until, [&] {
    write_transaction tx(*c, what);
    auto lock = c->prepare(sql::semaphore_lock_holders, what);
    lock.bind(1, name).bind(2, token).bind(3, tx.now());
    while (lock.step()) {
    }
    auto s = c->prepare(sql::semaphore_force_release, what);
    s.bind(1, tx.now()).bind(2, name).bind(3, token);
    auto n = static_cast<std::size_t>(s.run());
    tx.commit();
    return n;
  });
  for (std::size_t i = 0; i < ended; ++i) registry()->notify(name);
  return ended;
}

}  // namespace sqlock::detail::mariadb
