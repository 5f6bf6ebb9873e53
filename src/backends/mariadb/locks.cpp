// SPDX-License-Identifier: Apache-2.0
// The MariaDB backend's lock operations: acquire (with the queue of waiting tickets), the
// all-or-nothing acquire, release and abandon (which hand the lock to the oldest ticket),
// metadata, release requests, force release, inspect, list. The same rules as the SQLite
// backend's locks.cpp, statement for statement, in write transactions that hold the counter row.

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/mariadb/backend.hpp"
#include "backends/mariadb/errors.hpp"
#include "backends/mariadb/rows.hpp"
#include "backends/mariadb/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::mariadb {
namespace {

// A lock row as the write transaction locked it (sql::lock_row).
struct lock_row {
  std::int64_t token = 0, expires_at = 0, acquired_at = 0;
  std::string nonce;
  std::optional<std::int64_t> revoke_by;  // a pending release request on this lease
};

// Locks and reads `name`'s row with NOWAIT: throws row_locked when another transaction (a
// fenced one) holds it.
std::optional<lock_row> lock_current(connection& c, std::string_view name,
                                     const std::string& what) {
  auto s = c.prepare(sql::lock_row, what);
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  lock_row r;
  r.token = s.integer(0);
  r.expires_at = s.integer(1);
  r.nonce = s.text(2);
  if (!s.is_null(3) && !s.is_null(4) && s.integer(3) == r.token) r.revoke_by = s.integer(4);
  r.acquired_at = s.integer(5);
  return r;
}

milliseconds left_ms(std::int64_t left_us) { return std::max(milliseconds{1}, ms_floor(left_us)); }

}  // namespace

grant mariadb_backend::write_grant(connection& c, write_transaction& tx, const acquire_request& r,
                                   std::int64_t floor, const std::string& what) {
  const std::int64_t token = tx.next_token(floor);
  const std::int64_t now = tx.now(), expires = now + us(r.ttl);
  auto up = c.prepare(sql::lock_upsert, what);
  up.bind(1, r.name).bind(2, r.owner).bind(3, r.nonce).bind(4, token).bind(5, now);
  up.bind(6, expires).bind(7, r.metadata);
  up.run();
  // A waiter's nonce may hold a ticket from an earlier attempt; a try's fresh nonce never does
  // (lapsed tickets of others go at the next release or purge).
  if (r.waiting) drop_taken_tickets(c, r.name, r.nonce, now, what);
  return grant{token, from_epoch_us(now), from_epoch_us(expires)};
}

acquire_result mariadb_backend::try_acquire(const acquire_request& r, deadline until) {
  const std::string what = "acquire " + quoted(r.name);
  const bool queue = r.waiting && r.queue;
  auto c = checkout(until, what);
  // Look first, without any lock: under contention most attempts that do not queue stop here,
  // and a refused attempt that does not queue never writes.
  if (!queue) {
    auto look = c->prepare(sql::lock_look, what);
    look.bind(1, r.name);
    if (look.step() && look.integer(0) > 0 && look.text(1) != r.nonce)
      return {std::nullopt, left_ms(look.integer(0))};
  }
  write_transaction tx(*c, what);
  const std::int64_t now = tx.now();
  std::optional<lock_row> row;
  try {
    row = lock_current(*c, r.name, what);
  } catch (const row_locked&) {
    // A fenced transaction holds the row (its lease may have lapsed since): refused, no token
    // drawn; the caller backs off and tries again.
    return {std::nullopt, milliseconds::zero()};
  }
  std::int64_t floor = 1;
  std::int64_t refused_for = 0;  // > 0: refused, for the time until the obstacle lapses (µs)
  bool handed = false;           // the row holds a lease of this nonce: a release handed it over
  if (row) {
    if (row->expires_at > now) {
      handed = !r.nonce.empty() && row->nonce == r.nonce;
      refused_for = row->expires_at - now;
    }
    floor = row->token + 1;
  }
  if (handed) {
    // Taken as a renewal would be: its token, and an expiry no earlier than it had.
    const std::int64_t expires = renewed_expiry(row->expires_at, now, us(r.ttl), row->revoke_by);
    c->prepare(sql::lock_set_expiry, what).bind(1, expires).bind(2, r.name).run();
    drop_taken_tickets(*c, r.name, r.nonce, now, what);
    tx.commit(errc::in_doubt);
    return {grant{row->token, from_epoch_us(row->acquired_at), from_epoch_us(expires)},
            milliseconds::zero()};
  }
  if (refused_for == 0 && r.fair) {
    // Free, but a fair attempt does not pass an older live ticket.
    auto ahead = c->prepare(sql::waiters_ahead, what);
    ahead.bind(1, r.name).bind(2, now).bind(3, r.nonce);
    if (ahead.step() && ahead.integer(0) > 0)
      refused_for = std::max<std::int64_t>(ahead.integer(1) - now, 1);
  }
  if (refused_for > 0) {
    acquire_result out{std::nullopt, left_ms(refused_for)};
    if (!queue) return out;  // rolls back: nothing written, no token drawn
    const auto ticket_ttl = r.ticket_ttl > milliseconds::zero() ? r.ticket_ttl : fair_ticket_ttl;
    auto keep = c->prepare(sql::waiter_refresh, what);
    keep.bind(1, now).bind(2, us(ticket_ttl)).bind(3, r.attempt).bind(4, r.name).bind(5, r.nonce);
    if (keep.run() == 0) {
      // First refusal of this wait: a place at the end of the queue.
      const std::int64_t ticket = tx.next_token(1);
      auto add = c->prepare(sql::waiter_add, what);
      add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, r.metadata);
      add.bind(5, us(r.handoff_term())).bind(6, std::int64_t{r.fair ? 1 : 0});
      add.bind(7, ticket).bind(8, r.attempt).bind(9, now).bind(10, us(ticket_ttl));
      add.run();
    }
    tx.commit();
    out.queued = true;
    return out;
  }
  grant g = write_grant(*c, tx, r, floor, what);
  tx.commit(errc::in_doubt);
  return {g, milliseconds::zero()};
}

// All or nothing in ONE write transaction, as on SQLite: each name is checked (and its row
// locked) in the request order, and only when every one is free are they all granted; a refusal
// rolls back, so nothing is written and no token is drawn.
std::vector<acquire_result> mariadb_backend::try_acquire_all(
    const std::vector<acquire_request>& requests, deadline until) {
  std::string what = "acquire";
  for (const auto& r : requests) what += (what.size() > 7 ? ", " : " ") + quoted(r.name);
  std::vector<acquire_result> out(requests.size());
  if (requests.empty()) return out;
  auto c = checkout(until, what);
  bool refused = false;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto look = c->prepare(sql::lock_look, what);
    look.bind(1, requests[i].name);
    if (look.step() && look.integer(0) > 0 && look.text(1) != requests[i].nonce) {
      out[i].holder_expires_in = left_ms(look.integer(0));
      out[i].blocking = true;
      refused = true;
    }
  }
  if (refused) return out;
  write_transaction tx(*c, what);
  const std::int64_t now = tx.now();
  std::vector<std::int64_t> floors(requests.size(), 1);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    std::optional<lock_row> row;
    try {
      row = lock_current(*c, requests[i].name, what);
    } catch (const row_locked&) {
      out[i].blocking = true;  // held by another transaction: holder_expires_in 0
      refused = true;
      continue;
    }
    if (!row) continue;
    floors[i] = row->token + 1;
    if (row->expires_at > now) {
      out[i].holder_expires_in = left_ms(row->expires_at - now);
      out[i].blocking = true;
      refused = true;
    }
  }
  if (refused) return out;  // rolls back: nothing written
  for (std::size_t i = 0; i < requests.size(); ++i)
    out[i].granted = write_grant(*c, tx, requests[i], floors[i], what);
  tx.commit(errc::in_doubt);
  return out;
}

bool mariadb_backend::update_metadata(const lease_key& key, std::string_view metadata,
                                      deadline until) {
  const std::string what =
      "update metadata of " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  bool updated = false;
  {
    auto c = checkout(until, what);
    write_transaction tx(*c, what);
    (void)lock_current(*c, key.name, what);  // row_locked: a fenced transaction holds it
    auto up = c->prepare(sql::lock_set_metadata, what);
    up.bind(1, metadata).bind(2, key.name).bind(3, key.nonce).bind(4, key.token).bind(5, tx.now());
    updated = up.run() > 0;
    tx.commit();
  }
  // Observers in this process see it at once; in other processes, at their next poll.
  if (updated) registry()->notify_observers(key.name);
  return updated;
}

std::size_t mariadb_backend::request_release(lease_kind kind, std::string_view name,
                                             std::int64_t token, milliseconds grace,
                                             deadline until) {
  const bool sem = kind == lease_kind::semaphore;
  const std::string what = describe_request(kind, name);
  auto c = checkout(until, what);
  const std::size_t marked = retry_locked(*c, until, [&] {
    write_transaction tx(*c, what);
    const std::int64_t now = tx.now();
    if (sem) {
      auto lock = c->prepare(sql::semaphore_lock_holders, what);
      lock.bind(1, name).bind(2, token).bind(3, now);
      while (lock.step()) {
      }
    } else if (!lock_current(*c, name, what)) {
      return std::size_t{0};
    }
    auto s = c->prepare(sem ? sql::holder_request_release : sql::lock_request_release, what);
    s.bind(1, now).bind(2, name).bind(3, now + us(grace)).bind(4, token);
    auto n = static_cast<std::size_t>(s.run());
    tx.commit();
    return n;
  });
  // Holders in this process hear it at once (their keepalive watches their names); others at
  // their next renewal.
  if (marked > 0) registry()->notify(name);
  return marked;
}

bool mariadb_backend::release(const lease_key& key, deadline until) {
  const std::string what =
      "release " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  if (key.kind == lease_kind::semaphore) return end_holder(key, false, until, what);
  return end_lock(key, false, until, what);
}

bool mariadb_backend::abandon(const lease_key& key, deadline until) {
  const std::string what = "clean up acquire " + quoted(key.name);
  if (key.kind == lease_kind::semaphore) return end_holder(key, true, until, what);
  return end_lock(key, true, until, what);
}

// A release (`abandon`: of whatever lease carries the nonce, and of its ticket) in one write
// transaction that also hands the lock to the oldest live ticket. Then wakes local waiters: the
// one it was handed to (with the grant), or the next in line. A fenced transaction holding the
// row makes it throw row_locked at once (the client retries in the background).
bool mariadb_backend::end_lock(const lease_key& key, bool abandon, deadline until,
                               const std::string& what) {
  bool ended = false, ticket_dropped = false;
  std::optional<handoff> handed;
  {
    auto c = checkout(until, what);
    write_transaction tx(*c, what);
    const std::int64_t now = tx.now();
    std::int64_t token = 0;
    auto row = lock_current(*c, key.name, what);
    if (row && row->expires_at > now && row->nonce == key.nonce &&
        (abandon || row->token == key.token)) {
      // An abandon without a token ends a grant the client never learnt of: the history
      // trigger records it as 'lost' while the session carries the mark (schema 10).
      const bool lost = abandon && key.token == 0;
      if (lost) c->prepare(sql::history_mark_lost, what).run();
      c->prepare(sql::lock_set_expiry, what).bind(1, now).bind(2, key.name).run();
      if (lost) c->prepare(sql::history_unmark, what).run();
      ended = true;
      token = row->token;
    }
    if (abandon) {
      auto drop = c->prepare(sql::waiter_drop, what);
      drop.bind(1, key.name).bind(2, key.nonce);
      ticket_dropped = drop.run() > 0;
    }
    if (ended) {
      auto head = c->prepare(sql::waiter_head, what);
      head.bind(1, key.name).bind(2, now);
      const bool found = head.step();
      if (found && head.integer(5) != 0) {
        const std::string nonce = head.text(0);
        const std::int64_t ttl = head.integer(3);
        const std::int64_t next = tx.next_token(token + 1);
        auto give = c->prepare(sql::lock_hand_off, what);
        give.bind(1, key.name).bind(2, head.text(1)).bind(3, nonce).bind(4, next).bind(5, now);
        give.bind(6, now + ttl).bind(7, head.text(2)).run();
        handed = handoff{nonce, grant{next, from_epoch_us(now), from_epoch_us(now + ttl)},
                         head.integer(4)};
        drop_taken_tickets(*c, key.name, nonce, now, what);
      } else if (found) {  // only lapsed tickets
        c->prepare(sql::waiters_drop_lapsed, what).bind(1, key.name).bind(2, now).run();
      }
    }
    tx.commit();
  }
  if (handed)
    registry()->hand_off(key.name, *handed);
  else if (ended || ticket_dropped)
    registry()->notify(key.name);
  return ended;
}

bool mariadb_backend::force_release(std::string_view name, deadline until) {
  const std::string what = "force release " + quoted(name);
  auto c = checkout(until, what);
  // nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
  const bool ended = retry_locked(*c, until, [&] {
    write_transaction tx(*c, what);
    if (!lock_current(*c, name, what)) return false;
    auto s = c->prepare(sql::lock_force_release, what);
    s.bind(1, tx.now()).bind(2, name);
    bool n = s.run() > 0;
    tx.commit();
    return n;
  });
  if (ended) registry()->notify(name);
  return ended;
}

std::optional<lock_record> mariadb_backend::inspect(std::string_view name, deadline until) {
  const std::string what = "inspect " + quoted(name);
  auto c = checkout(until, what);
  auto s = c->prepare(sql::lock_inspect, what);
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  auto record = read_record(s);
  const std::int64_t now = c->now_us(what);
  auto w = c->prepare(sql::lock_waiters, what);
  w.bind(1, name).bind(2, now);
  while (w.step())
    record.waiters.push_back({w.text(0), w.integer(1), w.integer(2) != 0,
                              from_epoch_us(w.integer(3)), left_ms(w.integer(4))});
  record.queued = record.waiters.size();
  return record;
}

std::vector<lock_record> mariadb_backend::list(const list_filter& f, deadline until) {
  const std::string what = "list";
  auto c = checkout(until, what);
  const std::int64_t now = c->now_us(what);
  auto s = c->prepare(sql::lock_list, what);
  s.bind(1, now).bind(2, f.prefix);
  auto upper = prefix_upper_bound(f.prefix);
  if (f.prefix.empty() || upper.empty())
    s.bind_null(3);
  else
    s.bind(3, upper);
  s.bind(4, std::int64_t{f.show == list_filter::which::all    ? 0
                         : f.show == list_filter::which::held ? 1
                                                              : 2});
  s.bind(5, f.limit == 0 ? INT64_MAX : static_cast<std::int64_t>(f.limit));
  std::vector<lock_record> out;
  while (s.step()) {
    out.push_back(read_record(s));
    out.back().queued = static_cast<std::size_t>(s.integer(7));
  }
  return out;
}

// After a grant (or handoff) to `nonce`: its ticket is used up, and lapsed ones of the name
// are dropped while the write lock is held anyway.
void mariadb_backend::drop_taken_tickets(connection& c, std::string_view name,
                                         std::string_view nonce, std::int64_t now,
                                         const std::string& what) {
  c.prepare(sql::waiters_drop_taken, what).bind(1, name).bind(2, nonce).bind(3, now).run();
}

}  // namespace sqlock::detail::mariadb
