// SPDX-License-Identifier: Apache-2.0
// The memory backend's lock operations, step for step as src/backends/sqlite/locks.cpp runs
// them in its write transactions: acquire (with the queue of waiting tickets), renew (locks and
// semaphore holders alike), release and abandon (which hand the lock to the oldest ticket),
// force release, inspect, list.

#include <algorithm>
#include <vector>

#include "backends/common/backend_common.hpp"
#include "testing/memory_database.hpp"
#include "util/util.hpp"

namespace sqlock::testing {

using sqlock::detail::from_epoch_ms;
using sqlock::detail::quoted;
using std::chrono::milliseconds;

namespace detail {
namespace {

// The live tickets of a lock's queue, oldest first.
std::vector<std::pair<std::string, const lock_ticket*>> live_tickets(const memory_database& db,
                                                                     std::string_view name,
                                                                     std::int64_t now) {
  std::vector<std::pair<std::string, const lock_ticket*>> out;
  auto q = db.lock_queues.find(std::string(name));
  if (q == db.lock_queues.end()) return out;
  for (const auto& [nonce, t] : q->second)
    if (t.expires_at > now) out.emplace_back(nonce, &t);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second->ticket < b.second->ticket; });
  return out;
}

// Drops the tickets of `name` that `drop` selects (and the queue when it empties).
template <class Pred>
void drop_tickets(memory_database& db, const std::string& name, Pred drop) {
  auto q = db.lock_queues.find(name);
  if (q == db.lock_queues.end()) return;
  for (auto t = q->second.begin(); t != q->second.end();)
    t = drop(t->first, t->second) ? q->second.erase(t) : std::next(t);
  if (q->second.empty()) db.lock_queues.erase(q);
}

// After a grant (or handoff) to `nonce`: its ticket is used up, and lapsed ones of the name go.
void drop_taken_tickets(memory_database& db, const std::string& name, const std::string& nonce,
                        std::int64_t now) {
  drop_tickets(db, name, [&](const std::string& n, const lock_ticket& t) {
    return n == nonce || t.expires_at <= now;
  });
}

lock_record record_of(const std::string& name, const lock_row& r, std::int64_t now) {
  lock_record out;
  out.name = name;
  out.owner = r.owner;
  out.metadata = r.metadata;
  out.token = r.token;
  out.acquired_at = from_epoch_ms(r.acquired_at);
  out.expires_at = from_epoch_ms(r.expires_at);
  out.expires_in = milliseconds{r.expires_at - now};
  out.held = out.expires_in > milliseconds::zero();
  return out;
}

}  // namespace

// A release (`abandon`: of whatever lease carries the nonce, and of its ticket) that hands the
// lock to the oldest live ticket in the same step. Then wakes the waiters: the one it was
// handed to (with the grant), or the next in line.
bool end_lock(memory_database& db, const lease_key& key, bool abandon, const std::string& what) {
  bool ended = false, ticket_dropped = false;
  std::optional<handoff> handed;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(schema_lock_queue, what);
    const std::int64_t now = db.now_ms();
    std::int64_t token = 0;
    auto row = db.locks.find(key.name);
    if (row != db.locks.end()) {
      auto& l = row->second;
      if (l.nonce == key.nonce && (abandon || l.token == key.token) && l.expires_at > now) {
        l.expires_at = now;
        ended = true;
        token = l.token;
      }
    }
    if (abandon) {
      auto q = db.lock_queues.find(key.name);
      if (q != db.lock_queues.end()) ticket_dropped = q->second.erase(key.nonce) > 0;
    }
    if (ended) {
      const auto live = live_tickets(db, key.name, now);
      if (!live.empty()) {
        const std::string nonce = live.front().first;
        const lock_ticket head = *live.front().second;
        const std::int64_t next = db.next_token(token + 1, what);
        const std::int64_t expires = now + head.ttl_ms;
        row->second = lock_row{head.owner, nonce, head.metadata, next, now, expires};
        handed =
            handoff{nonce, grant{next, from_epoch_ms(now), from_epoch_ms(expires)}, head.attempt};
        drop_taken_tickets(db, key.name, nonce, now);
      } else {
        drop_tickets(db, key.name,
                     [&](const std::string&, const lock_ticket& t) { return t.expires_at <= now; });
      }
    }
  }
  if (handed)
    db.registry.hand_off(key.name, *handed);
  else if (ended || ticket_dropped)
    db.registry.notify(key.name);
  return ended;
}

// A semaphore holder's renewal and release (memory_semaphores.cpp); renew_holder with mu held.
renew_result renew_holder(memory_database& db, std::int64_t now, const renew_request& r);
bool end_holder(memory_database& db, const lease_key& key, bool abandon, const std::string& what);
acquire_result try_acquire_locked(memory_database& db, const acquire_request& r, std::int64_t now,
                                  const std::string& what);

}  // namespace detail

acquire_result memory_backend::try_acquire(const acquire_request& r, deadline) {
  const std::string what = "acquire " + quoted(r.name);
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_lock_queue, what);
  return detail::try_acquire_locked(db, r, db.now_ms(), what);
}

// All or nothing, in one step under the database's mutex: refused (nothing written, the names
// that refused it marked `blocking`) unless every name is free or already this attempt's.
std::vector<acquire_result> memory_backend::try_acquire_all(
    const std::vector<acquire_request>& requests, deadline) {
  const std::string what = "acquire " + std::to_string(requests.size()) + " locks";
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_lock_queue, what);
  const std::int64_t now = db.now_ms();
  std::vector<acquire_result> out(requests.size());
  bool refused = false;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto row = db.locks.find(requests[i].name);
    if (row == db.locks.end() || row->second.expires_at <= now ||
        (!requests[i].nonce.empty() && row->second.nonce == requests[i].nonce))
      continue;
    out[i].holder_expires_in = milliseconds{row->second.expires_at - now};
    out[i].blocking = refused = true;
  }
  if (refused) return out;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto plain = requests[i];
    plain.waiting = plain.queue = plain.fair = false;  // no queue: every name is free
    out[i] = detail::try_acquire_locked(db, plain, now, what);
  }
  return out;
}

namespace detail {

// One grant attempt (memory_backend::try_acquire), with the database's mutex held.
acquire_result try_acquire_locked(memory_database& db, const acquire_request& r, std::int64_t now,
                                  const std::string& what) {
  const bool queue = r.waiting && r.queue;
  std::int64_t floor = 1;
  std::int64_t refused_for = 0;  // > 0: refused, for the time until the obstacle lapses (ms)
  bool handed = false;           // the row holds a lease of this nonce: a release handed it over
  auto row = db.locks.find(r.name);
  if (row != db.locks.end()) {
    if (row->second.expires_at > now) {
      handed = !r.nonce.empty() && row->second.nonce == r.nonce;
      refused_for = row->second.expires_at - now;
    }
    floor = row->second.token + 1;
  }
  if (handed) {
    // Taken as a renewal would be: its token, and an expiry no earlier than it had.
    auto& l = row->second;
    l.expires_at = detail::renewed_expiry(l, now, r.ttl);
    grant g{l.token, from_epoch_ms(l.acquired_at), from_epoch_ms(l.expires_at)};
    detail::drop_taken_tickets(db, r.name, r.nonce, now);
    return {g, milliseconds::zero()};
  }
  if (refused_for == 0 && r.fair) {
    // Free, but a fair attempt does not pass an older live ticket of another waiter.
    const auto live = detail::live_tickets(db, r.name, now);
    std::optional<std::int64_t> mine;
    for (const auto& [nonce, t] : live)
      if (nonce == r.nonce) mine = t->ticket;
    std::optional<std::int64_t> first_lapse;
    for (const auto& [nonce, t] : live)
      if (nonce != r.nonce && (!mine || t->ticket < *mine))
        first_lapse = std::min(first_lapse.value_or(t->expires_at), t->expires_at);
    if (first_lapse) refused_for = std::max<std::int64_t>(*first_lapse - now, 1);
  }
  if (refused_for > 0) {
    acquire_result out{std::nullopt, milliseconds{refused_for}};
    if (!queue) return out;  // nothing written, no token drawn
    const auto ticket_ttl = r.ticket_ttl > milliseconds::zero() ? r.ticket_ttl : fair_ticket_ttl;
    auto& tickets = db.lock_queues[r.name];
    auto mine = tickets.find(r.nonce);
    if (mine != tickets.end()) {
      // Keeps the ticket's number and `since`, even when it had lapsed (and was not dropped).
      mine->second.expires_at = now + ticket_ttl.count();
      mine->second.attempt = r.attempt;
    } else {
      // First refusal of this wait: a place at the end of the queue.
      detail::lock_ticket t;
      t.owner = r.owner;
      t.metadata = r.metadata;
      t.ttl_ms = r.handoff_term().count();  // a handed lock's first term
      t.fair = r.fair;
      t.ticket = db.next_token(1, what);
      t.attempt = r.attempt;
      t.since = now;
      t.expires_at = now + ticket_ttl.count();
      tickets.emplace(r.nonce, std::move(t));
    }
    out.queued = true;
    return out;
  }
  const std::int64_t token = db.next_token(floor, what);
  const std::int64_t expires = now + r.ttl.count();
  db.locks[r.name] = detail::lock_row{r.owner, r.nonce, r.metadata, token, now, expires};
  detail::drop_taken_tickets(db, r.name, r.nonce, now);
  return {grant{token, from_epoch_ms(now), from_epoch_ms(expires)}, milliseconds::zero()};
}

}  // namespace detail

std::vector<renew_result> memory_backend::renew(const std::vector<renew_request>& requests,
                                                deadline) {
  std::vector<renew_result> out;
  if (requests.empty()) return out;
  const std::string what = sqlock::detail::describe_renewal(requests);
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  bool semaphores = false;
  for (const auto& r : requests) semaphores = semaphores || r.key.kind == lease_kind::semaphore;
  db.require(semaphores ? detail::schema_semaphores : detail::schema_locks, what);
  const std::int64_t now = db.now_ms();
  out.reserve(requests.size());
  for (const auto& r : requests) {
    if (r.key.kind == lease_kind::semaphore) {
      out.push_back(detail::renew_holder(db, now, r));
      continue;
    }
    auto row = db.locks.find(r.key.name);
    if (row == db.locks.end()) {
      out.push_back(sqlock::detail::not_renewed(renew_outcome::missing));
      continue;
    }
    auto& l = row->second;
    if (l.nonce == r.key.nonce && l.token == r.key.token && l.expires_at > now) {
      // Never shortens: a renewal that arrives after a newer one keeps the later expiry.
      out.push_back(detail::renew_row(l, now, r.ttl));
      continue;
    }
    // No transactions here: nothing else can hold the row, so never busy.
    auto o = sqlock::detail::refused_renewal(r.key, l.nonce, l.token, false);
    if (o == renew_outcome::expired && l.revoke_token == l.token) o = renew_outcome::revoked;
    out.push_back(sqlock::detail::not_renewed(o));
  }
  return out;
}

bool memory_backend::release(const lease_key& key, deadline) {
  const std::string what =
      "release " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  if (key.kind == lease_kind::semaphore) return detail::end_holder(*db_, key, false, what);
  return detail::end_lock(*db_, key, false, what);
}

bool memory_backend::abandon(const lease_key& key, deadline) {
  const std::string what = "clean up acquire " + quoted(key.name);
  if (key.kind == lease_kind::semaphore) return detail::end_holder(*db_, key, true, what);
  return detail::end_lock(*db_, key, true, what);
}

std::size_t memory_backend::request_release(lease_kind kind, std::string_view name,
                                            std::int64_t token, milliseconds grace, deadline) {
  const std::string what = sqlock::detail::describe_request(kind, name);
  auto& db = *db_;
  std::size_t marked = 0;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(kind == lease_kind::semaphore ? detail::schema_semaphores : detail::schema_locks,
               what);
    const std::int64_t now = db.now_ms();
    const std::int64_t by = now + grace.count();
    if (kind == lease_kind::lock) {
      auto row = db.locks.find(std::string(name));
      if (row != db.locks.end() && row->second.expires_at > now &&
          (token == 0 || row->second.token == token)) {
        detail::request_row_release(row->second, by);
        marked = 1;
      }
    } else if (auto s = db.semaphores.find(std::string(name)); s != db.semaphores.end()) {
      for (auto& [nonce, h] : s->second.holders) {
        if (h.expires_at <= now || (token != 0 && h.token != token)) continue;
        detail::request_row_release(h, by);
        ++marked;
      }
    }
  }
  if (marked > 0) db.registry.notify(name);
  return marked;
}

bool memory_backend::update_metadata(const lease_key& key, std::string_view metadata, deadline) {
  const std::string what = "update metadata of " + quoted(key.name);
  auto& db = *db_;
  bool updated = false;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(detail::schema_locks, what);
    const std::int64_t now = db.now_ms();
    auto row = db.locks.find(key.name);
    if (key.kind == lease_kind::lock && row != db.locks.end() && row->second.nonce == key.nonce &&
        row->second.token == key.token && row->second.expires_at > now) {
      row->second.metadata = std::string(metadata);
      updated = true;
    }
  }
  // Observers read the new value at once (as a release wakes them).
  if (updated) db.registry.notify(key.name);
  return updated;
}

bool memory_backend::force_release(std::string_view name, deadline) {
  const std::string what = "force release " + quoted(name);
  auto& db = *db_;
  bool ended = false;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(detail::schema_locks, what);
    const std::int64_t now = db.now_ms();
    auto row = db.locks.find(std::string(name));
    if (row != db.locks.end() && row->second.expires_at > now) {
      // nonce "" marks the lease as ended by an admin, so its holder can tell why it lost it.
      row->second.expires_at = now;
      row->second.nonce.clear();
      ended = true;
    }
  }
  if (ended) db.registry.notify(name);
  return ended;
}

std::optional<lock_record> memory_backend::inspect(std::string_view name, deadline) {
  const std::string what = "inspect " + quoted(name);
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_lock_queue, what);
  const std::int64_t now = db.now_ms();
  auto row = db.locks.find(std::string(name));
  if (row == db.locks.end()) return std::nullopt;
  auto record = detail::record_of(row->first, row->second, now);
  for (const auto& [nonce, t] : detail::live_tickets(db, name, now))
    record.waiters.push_back(
        {t->owner, t->ticket, t->fair, from_epoch_ms(t->since), milliseconds{t->expires_at - now}});
  record.queued = record.waiters.size();
  return record;
}

std::vector<lock_record> memory_backend::list(const list_filter& f, deadline) {
  const std::string what = "list";
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_lock_queue, what);
  const std::int64_t now = db.now_ms();
  std::vector<lock_record> out;
  // std::string orders by bytes (char_traits<char> compares as unsigned char), as BINARY does.
  for (auto it = db.locks.lower_bound(f.prefix); it != db.locks.end(); ++it) {
    if (it->first.compare(0, f.prefix.size(), f.prefix) != 0) break;
    const bool held = it->second.expires_at > now;
    if ((f.show == list_filter::which::held && !held) ||
        (f.show == list_filter::which::free && held))
      continue;
    if (f.limit != 0 && out.size() >= f.limit) break;
    out.push_back(detail::record_of(it->first, it->second, now));
    out.back().queued = detail::live_tickets(db, it->first, now).size();
  }
  return out;
}

}  // namespace sqlock::testing
