// SPDX-License-Identifier: Apache-2.0
// The SQLite backend's lock operations: acquire (with the queue of waiting tickets), renew (locks
// and semaphore holders alike), release and abandon (which hand the lock to the oldest ticket),
// force release, inspect, list; and the token counter grants and tickets draw from.

#include <sqlite3.h>

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/rows.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::sqlite {

grant sqlite_backend::write_grant(connection& c, const acquire_request& r, std::int64_t floor,
                                  std::int64_t now, const std::string& what) {
  std::int64_t token = next_token(c, floor, what);
  std::int64_t expires = now + r.ttl.count();
  {
    auto up = c.prepare(sql::lock_upsert, what);
    up.bind(1, r.name).bind(2, r.owner).bind(3, r.nonce).bind(4, token).bind(5, now);
    up.bind(6, expires).bind(7, r.metadata);
    up.step();
  }
  drop_taken_tickets(c, r.name, r.nonce, now, what);
  return grant{token, from_epoch_ms(now), from_epoch_ms(expires)};
}

acquire_result sqlite_backend::try_acquire(const acquire_request& r, deadline until) {
  const std::string what = "acquire " + quoted(r.name);
  const bool queue = r.waiting && r.queue;
  auto c = checkout(until, false, what);
  // Look first, without the write lock: under contention most attempts that do not queue stop
  // here, and a refused attempt that does not queue never writes. A queueing one writes its
  // ticket; a lock handed to this nonce is taken in the write transaction.
  if (!queue) {
    auto look = c->prepare(sql::lock_look, what);
    look.bind(1, r.name);
    if (look.step() && look.integer(0) > 0 && look.text(1) != r.nonce)
      return {std::nullopt, milliseconds{look.integer(0)}};
  }
  write_transaction tx(*c, what);
  std::int64_t now = c->now_ms(what);
  std::int64_t floor = 1;
  std::int64_t refused_for = 0;  // > 0: refused, for the time until the obstacle lapses (ms)
  bool handed = false;           // the row holds a lease of this nonce: a release handed it over
  {
    auto cur = c->prepare(sql::lock_current, what);
    cur.bind(1, r.name);
    if (cur.step()) {
      if (cur.integer(1) > now) {
        handed = !r.nonce.empty() && cur.text(2) == r.nonce;
        refused_for = cur.integer(1) - now;
      }
      floor = cur.integer(0) + 1;
    }
  }
  if (handed) {
    // Taken as a renewal would be: its token, and an expiry no earlier than it had.
    grant g;
    {
      auto ext = c->prepare(sql::lock_extend, what);
      ext.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count())).bind(3, r.name);
      ext.bind(4, r.nonce);
      if (!ext.step())
        throw error(errc::internal, what + " on sqlite: the lock handed to this nonce is gone",
                    kind_name);
      g = {ext.integer(0), from_epoch_ms(ext.integer(1)), from_epoch_ms(ext.integer(2))};
    }
    drop_taken_tickets(*c, r.name, r.nonce, now, what);
    tx.commit();
    return {g, milliseconds::zero()};
  }
  if (refused_for == 0 && r.fair) {
    // Free, but a fair attempt does not pass an older live ticket.
    auto ahead = c->prepare(sql::waiters_ahead, what);
    ahead.bind(1, r.name).bind(2, now).bind(3, r.nonce);
    if (ahead.step() && ahead.integer(0) > 0)
      refused_for = std::max<std::int64_t>(ahead.integer(1) - now, 1);
  }
  if (refused_for > 0) {
    acquire_result out{std::nullopt, milliseconds{refused_for}};
    if (!queue) return out;  // rolls back: nothing written, no token drawn
    const auto ticket_ttl = r.ticket_ttl > milliseconds::zero() ? r.ticket_ttl : fair_ticket_ttl;
    auto keep = c->prepare(sql::waiter_refresh, what);
    keep.bind(1, now).bind(2, static_cast<std::int64_t>(ticket_ttl.count())).bind(3, r.attempt);
    keep.bind(4, r.name).bind(5, r.nonce).step();
    if (sqlite3_changes(c->get()) == 0) {
      // First refusal of this wait: a place at the end of the queue.
      std::int64_t ticket = next_token(*c, 1, what);
      auto add = c->prepare(sql::waiter_add, what);
      add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, r.metadata);
      // A handed lock's first term (see acquire_request::handoff_ttl).
      add.bind(5, static_cast<std::int64_t>(r.handoff_term().count()))
          .bind(6, std::int64_t{r.fair ? 1 : 0});
      add.bind(7, ticket).bind(8, r.attempt).bind(9, now);
      add.bind(10, static_cast<std::int64_t>(ticket_ttl.count())).step();
    }
    tx.commit();
    out.queued = true;
    return out;
  }
  grant g = write_grant(*c, r, floor, now, what);
  tx.commit();
  return {g, milliseconds::zero()};
}

// All or nothing in ONE write transaction: each name is checked as try_acquire checks it, and
// only when every one is free are they all granted (tokens drawn in the request order); a
// refusal rolls back, so nothing is written and no token is drawn. A first look without the
// write lock answers most refusals, as in try_acquire. No ticket is taken (not fair).
std::vector<acquire_result> sqlite_backend::try_acquire_all(
    const std::vector<acquire_request>& requests, deadline until) {
  std::string what = "acquire";
  for (const auto& r : requests) what += (what.size() > 7 ? ", " : " ") + quoted(r.name);
  std::vector<acquire_result> out(requests.size());
  if (requests.empty()) return out;
  auto c = checkout(until, false, what);
  bool refused = false;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto look = c->prepare(sql::lock_look, what);
    look.bind(1, requests[i].name);
    if (look.step() && look.integer(0) > 0 && look.text(1) != requests[i].nonce) {
      out[i].holder_expires_in = milliseconds{look.integer(0)};
      out[i].blocking = true;
      refused = true;
    }
  }
  if (refused) return out;
  write_transaction tx(*c, what);
  const std::int64_t now = c->now_ms(what);
  std::vector<std::int64_t> floors(requests.size(), 1);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto cur = c->prepare(sql::lock_current, what);
    cur.bind(1, requests[i].name);
    if (!cur.step()) continue;
    floors[i] = cur.integer(0) + 1;
    // A live row, even one carrying this attempt's nonce: the nonces are fresh per attempt, so
    // that cannot be a grant of this call.
    if (cur.integer(1) > now) {
      out[i].holder_expires_in = milliseconds{cur.integer(1) - now};
      out[i].blocking = true;
      refused = true;
    }
  }
  if (refused) return out;  // rolls back: nothing written
  for (std::size_t i = 0; i < requests.size(); ++i) {
    out[i].granted = write_grant(*c, requests[i], floors[i], now, what);
  }
  tx.commit();
  return out;
}

bool sqlite_backend::update_metadata(const lease_key& key, std::string_view metadata,
                                     deadline until) {
  const std::string what =
      "update metadata of " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  bool updated = false;
  {
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    {
      auto up = c->prepare(sql::lock_set_metadata, what);
      up.bind(1, metadata).bind(2, key.name).bind(3, key.nonce).bind(4, key.token).bind(5, now);
      up.step();
      updated = sqlite3_changes(c->get()) > 0;
    }
    tx.commit();
  }
  // Observers in this process see it at once; in other processes, at their next poll.
  if (updated) registry()->notify_observers(key.name);
  return updated;
}

std::vector<renew_result> sqlite_backend::renew(const std::vector<renew_request>& requests,
                                                deadline until) {
  std::vector<renew_result> out;
  if (requests.empty()) return out;
  const std::string what = describe_renewal(requests);
  auto c = checkout(until, false, what);
  write_transaction tx(*c, what);
  std::int64_t now = c->now_ms(what);
  out.reserve(requests.size());
  for (const auto& r : requests) {
    if (r.key.kind == lease_kind::semaphore) {
      out.push_back(renew_holder(*c, now, r, what));
      continue;
    }
    auto up = c->prepare(sql::lock_renew, what);
    up.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count())).bind(3, r.key.name);
    up.bind(4, r.key.nonce).bind(5, r.key.token);
    if (up.step()) {
      out.push_back(renewed(now, up));
      continue;
    }
    auto cur = c->prepare(sql::lock_nonce_token, what);
    cur.bind(1, r.key.name);
    // One write transaction at a time: nothing else can hold the row, so never busy.
    renew_outcome o = renew_outcome::missing;
    if (cur.step()) {
      o = refused_renewal(r.key, cur.text(0), cur.integer(1), false);
      if (o == renew_outcome::expired && cur.integer(2) != 0) o = renew_outcome::revoked;
    }
    out.push_back(not_renewed(o));
  }
  tx.commit();
  return out;
}

std::size_t sqlite_backend::request_release(lease_kind kind, std::string_view name,
                                            std::int64_t token, milliseconds grace,
                                            deadline until) {
  const bool sem = kind == lease_kind::semaphore;
  const std::string what = describe_request(kind, name);
  std::size_t marked;
  {
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    auto s = c->prepare(sem ? sql::holder_request_release : sql::lock_request_release, what);
    s.bind(1, now).bind(2, name).bind(3, now + static_cast<std::int64_t>(grace.count()));
    s.bind(4, token).step();
    marked = static_cast<std::size_t>(sqlite3_changes(c->get()));
    tx.commit();
  }
  // Holders in this process hear it at once (their keepalive watches their names); others at
  // their next renewal.
  if (marked > 0) registry()->notify(name);
  return marked;
}

bool sqlite_backend::release(const lease_key& key, deadline until) {
  const std::string what =
      "release " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  if (key.kind == lease_kind::semaphore) return end_holder(key, false, until, what);
  return end_lock(key, false, until, what);
}

bool sqlite_backend::abandon(const lease_key& key, deadline until) {
  const std::string what = "clean up acquire " + quoted(key.name);
  if (key.kind == lease_kind::semaphore) return end_holder(key, true, until, what);
  return end_lock(key, true, until, what);
}

// A release (`abandon`: of whatever lease carries the nonce, and of its ticket) in one write
// transaction that also hands the lock to the oldest live ticket. Then wakes local waiters: the
// one it was handed to (with the grant), or the next in line.
//
// Durability: a release that hands nothing over commits with synchronous=NORMAL (no fsync of the
// WAL). Lost in a power failure, it leaves the row held until it expires; a process crash loses
// nothing (WAL mode), and the next durable commit on the file (FULL: it syncs the WAL, which is
// written in order) carries it. It draws no token, so none can go back. A handoff is a grant and
// stays durable: SQLite refuses to change `synchronous` inside a transaction, so a release that
// finds a ticket rolls back and runs again with FULL (its second run may find none: a durable
// release, which is only slower). With sqlite_sync::normal, every commit is NORMAL anyway.
bool sqlite_backend::end_lock(const lease_key& key, bool abandon, deadline until,
                              const std::string& what) {
  bool ended = false, ticket_dropped = false;
  std::optional<handoff> handed;
  {
    auto c = checkout(until, false, what);
    // Declared before the transaction: restores FULL after its rollback or commit.
    struct restore_durability {
      connection& c;
      const std::string& what;
      bool lowered = false;
      ~restore_durability() {
        if (!lowered) return;
        try {
          c.set_durable(true, what);
        } catch (const std::exception&) {
          // Left NORMAL: give_back drops the connection.
        }
      }
    } restore{*c, what};
    if (c->durable()) {
      c->set_durable(false, what);
      restore.lowered = true;
    }
    for (bool hand_off_found = false;;) {
      if (hand_off_found) c->set_durable(true, what);  // outside a transaction only
      write_transaction tx(*c, what);
      std::int64_t now = c->now_ms(what);
      ended = false;
      std::int64_t token = 0;
      // An abandon without a token ends a grant the client never learnt of: the history
      // trigger records it as 'lost' while this transaction holds the mark (schema 10).
      const bool lost = abandon && key.token == 0;
      if (lost) c->prepare(sql::history_mark_lost, what).step();
      {
        auto s = c->prepare(abandon ? sql::lock_abandon : sql::lock_release, what);
        s.bind(1, now).bind(2, key.name).bind(3, key.nonce);
        if (!abandon) s.bind(4, key.token);
        if (s.step()) {
          ended = true;
          token = s.integer(0);
        }
      }
      if (lost) c->prepare(sql::history_unmark, what).step();
      if (abandon) {
        auto drop = c->prepare(sql::waiter_drop, what);
        drop.bind(1, key.name).bind(2, key.nonce).step();
        ticket_dropped = sqlite3_changes(c->get()) > 0;
      }
      handed.reset();
      if (ended) {
        bool queued = false;
        std::string nonce, owner, metadata;
        std::int64_t ttl = 0, attempt = 0;
        {
          auto head = c->prepare(sql::waiter_head, what);
          head.bind(1, key.name).bind(2, now);
          if (head.step()) {
            queued = true;
            nonce = head.text(0);
            owner = head.text(1);
            metadata = head.text(2);
            ttl = head.integer(3);
            attempt = head.integer(4);
          }
        }
        if (queued) {
          if (restore.lowered && !c->durable()) {
            hand_off_found = true;
            continue;  // rolls back
          }
          std::int64_t next = next_token(*c, token + 1, what);
          auto give = c->prepare(sql::lock_hand_off, what);
          give.bind(1, key.name).bind(2, owner).bind(3, nonce).bind(4, next).bind(5, now);
          give.bind(6, now + ttl).bind(7, metadata).step();
          handed =
              handoff{nonce, grant{next, from_epoch_ms(now), from_epoch_ms(now + ttl)}, attempt};
          drop_taken_tickets(*c, key.name, nonce, now, what);
        } else {
          auto lapsed = c->prepare(sql::waiters_drop_lapsed, what);
          lapsed.bind(1, key.name).bind(2, now).step();
        }
      }
      tx.commit();
      break;
    }
  }
  if (handed)
    registry()->hand_off(key.name, *handed);
  else if (ended || ticket_dropped)
    registry()->notify(key.name);
  return ended;
}

bool sqlite_backend::force_release(std::string_view name, deadline until) {
  const std::string what = "force release " + quoted(name);
  // nonce '' marks the lease as ended by an admin, so its holder can tell why it lost it.
  return end_lease(sql::lock_force_release, name, {}, nullptr, until, what);
}

std::optional<lock_record> sqlite_backend::inspect(std::string_view name, deadline until) {
  const std::string what = "inspect " + quoted(name);
  auto c = checkout(until, false, what);
  auto s = c->prepare(sql::lock_inspect, what);
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  auto record = read_record(s);
  auto w = c->prepare(sql::lock_waiters, what);
  w.bind(1, name).bind(2, c->now_ms(what));
  while (w.step())
    record.waiters.push_back({w.text(0), w.integer(1), w.integer(2) != 0,
                              from_epoch_ms(w.integer(3)), milliseconds{w.integer(4)}});
  record.queued = record.waiters.size();
  return record;
}

std::vector<lock_record> sqlite_backend::list(const list_filter& f, deadline until) {
  const std::string what = "list";
  auto c = checkout(until, false, what);
  std::int64_t now = c->now_ms(what);
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
  s.bind(5, f.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(f.limit));
  std::vector<lock_record> out;
  while (s.step()) {
    out.push_back(read_record(s));
    out.back().queued = static_cast<std::size_t>(s.integer(7));
  }
  return out;
}

// After a grant (or handoff) to `nonce`: its ticket is used up, and lapsed ones of the name
// are dropped while the write lock is held anyway.
void sqlite_backend::drop_taken_tickets(connection& c, std::string_view name,
                                        std::string_view nonce, std::int64_t now,
                                        const std::string& what) {
  auto drop = c.prepare(sql::waiters_drop_taken, what);
  drop.bind(1, name).bind(2, nonce).bind(3, now).step();
}

// Drawn inside the write transaction that grants: no other grant can interleave, and
// max(counter + 1, row.token + 1) keeps a name's tokens increasing even if the counter was
// ever reset by hand.
std::int64_t sqlite_backend::next_token(connection& c, std::int64_t floor,
                                        const std::string& what) {
  auto next = c.prepare(sql::next_token, what);
  next.bind(1, floor);
  if (!next.step())
    throw error(errc::schema_mismatch, what + " on sqlite: the token counter row is missing",
                kind_name);
  // Past 2^63 - 1 SQLite turns value + 1 into a REAL, which reads back clamped to the
  // maximum: the same token twice. The caller's write transaction rolls back on the throw.
  if (!next.is_integer(0))
    throw error(errc::schema_mismatch,
                what +
                    " on sqlite: the fencing token counter (sqlock_counters, name 'token') "
                    "is exhausted: no lock or semaphore can be granted until an operator "
                    "sets it below 9223372036854775807, above every token already issued "
                    "if any remain; it only gets there if it was set by hand",
                kind_name);
  return next.integer(0);
}

}  // namespace sqlock::detail::sqlite
