// SPDX-License-Identifier: Apache-2.0
// The memory backend's semaphore operations, step for step as
// src/backends/sqlite/semaphores.cpp runs them: acquire (with the fair queue of tickets),
// release and abandon (which hand the room to the oldest tickets that fit), inspect, list,
// force release, and the renewal of one holder.

#include <algorithm>
#include <vector>

#include "testing/memory_database.hpp"
#include "util/util.hpp"

namespace sqlock::testing {

using sqlock::detail::from_epoch_ms;
using sqlock::detail::quoted;
using std::chrono::milliseconds;

namespace detail {
namespace {

// A semaphore as one attempt sees it (the SQLite backend's semaphore_state).
struct semaphore_view {
  bool exists = false;
  std::int64_t limit = 0, token = 0, used = 0;
  std::optional<std::int64_t> head, mine;  // oldest other live ticket; this nonce's live ticket
  std::int64_t soonest = 0;  // first lapse of a live holder or another ticket (epoch ms); 0: none

  bool grantable(const semaphore_request& r) const {
    if (used > 0 && limit != r.limit) return true;  // let the caller report it
    if (used + r.count > r.limit) return false;
    return !head || (mine && *mine < *head);  // no older live ticket
  }
  milliseconds retry_in(std::int64_t now) const {
    return soonest == 0 ? milliseconds::zero()
                        : milliseconds{std::max<std::int64_t>(soonest - now, 1)};
  }
};

semaphore_view view_of(const memory_database& db, const std::string& name, const std::string& nonce,
                       std::int64_t now) {
  semaphore_view v;
  auto it = db.semaphores.find(name);
  if (it == db.semaphores.end()) return v;
  const auto& s = it->second;
  v.exists = true;
  v.limit = s.limit;
  v.token = s.token;
  auto sooner = [&](std::int64_t t) { v.soonest = v.soonest == 0 ? t : std::min(v.soonest, t); };
  for (const auto& [n, h] : s.holders) {
    if (h.expires_at <= now) continue;
    v.used += h.units;
    sooner(h.expires_at);
  }
  for (const auto& [n, t] : s.tickets) {
    if (t.expires_at <= now) continue;
    if (n == nonce) {
      v.mine = t.ticket;
    } else {
      v.head = std::min(v.head.value_or(t.ticket), t.ticket);
      sooner(t.expires_at);
    }
  }
  return v;
}

semaphore_record record_of(const std::string& name, const semaphore_row& s, std::int64_t now) {
  semaphore_record rec;
  rec.name = name;
  rec.limit = s.limit;
  for (const auto& [nonce, h] : s.holders) {
    if (h.expires_at <= now) continue;
    rec.holders.push_back({h.owner, h.metadata, h.token, h.units, from_epoch_ms(h.acquired_at),
                           from_epoch_ms(h.expires_at), milliseconds{h.expires_at - now}});
    rec.used += h.units;
  }
  std::sort(rec.holders.begin(), rec.holders.end(),
            [](const auto& a, const auto& b) { return a.token < b.token; });
  for (const auto& [nonce, t] : s.tickets)
    if (t.expires_at > now)
      rec.waiters.push_back({t.owner, t.ticket, t.units, milliseconds{t.expires_at - now}});
  std::sort(rec.waiters.begin(), rec.waiters.end(),
            [](const auto& a, const auto& b) { return a.ticket < b.ticket; });
  return rec;
}

bool has_live_holder(const semaphore_row& s, std::int64_t now) {
  return std::any_of(s.holders.begin(), s.holders.end(),
                     [&](const auto& h) { return h.second.expires_at > now; });
}

// Grants `r` (seen as `v`, grantable): ended holders and lapsed tickets (and this nonce's) go,
// a holder with a new token comes; changed_at remembers when the last of those ended, for
// purge. Returns the token.
std::int64_t add_holder(memory_database& db, const semaphore_request& r, const semaphore_view& v,
                        std::int64_t now, const std::string& what) {
  auto& s = db.semaphores[r.name];  // created on first use
  std::int64_t ended_upto = 0;
  for (auto h = s.holders.begin(); h != s.holders.end();) {
    if (h->second.expires_at <= now) {
      ended_upto = std::max(ended_upto, h->second.expires_at);
      h = s.holders.erase(h);
    } else {
      ++h;
    }
  }
  for (auto t = s.tickets.begin(); t != s.tickets.end();) {
    if (t->second.expires_at <= now || t->first == r.nonce) {
      ended_upto = std::max(ended_upto, std::min(t->second.expires_at, now));
      t = s.tickets.erase(t);
    } else {
      ++t;
    }
  }
  const std::int64_t token = db.next_token(v.token + 1, what);
  s.holders[r.nonce] = holder_row{r.owner, r.metadata, token, r.count, now, now + r.ttl.count()};
  s.changed_at = v.exists ? std::max(s.changed_at, ended_upto) : now;
  s.limit = r.limit;
  s.token = token;
  return token;
}

}  // namespace

renew_result renew_holder(memory_database& db, std::int64_t now, const renew_request& r) {
  auto s = db.semaphores.find(r.key.name);
  using sqlock::detail::not_renewed;
  if (s == db.semaphores.end()) return not_renewed(renew_outcome::expired);
  auto h = s->second.holders.find(r.key.nonce);
  if (h == s->second.holders.end() || h->second.token != r.key.token)
    // A holder row ends by expiry, release or an admin, and is deleted by a later grant:
    // missing is an ordinary end here.
    return not_renewed(renew_outcome::expired);
  auto& row = h->second;
  if (row.expires_at > now) return renew_row(row, now, r.ttl);
  return not_renewed(row.forced                      ? renew_outcome::force_released
                     : row.revoke_token == row.token ? renew_outcome::revoked
                                                     : renew_outcome::expired);
}

// A holder's release (`abandon`: the nonce's ticket first, then whatever it holds) that hands
// the room it makes to the oldest live tickets, in order, as many as fit (a head that does not
// fit blocks those behind it; a ticket whose nonce already holds is stale and dropped). Each
// gets a holder with a new token and its first term from now. Then wakes the waiters.
bool end_holder(memory_database& db, const lease_key& key, bool abandon, const std::string& what) {
  bool ended = false, ticket_dropped = false;
  std::vector<handoff> handed;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(schema_semaphores, what);
    const std::int64_t now = db.now_ms();
    auto it = db.semaphores.find(key.name);
    if (it != db.semaphores.end()) {
      auto& s = it->second;
      if (abandon) ticket_dropped = s.tickets.erase(key.nonce) > 0;
      auto h = s.holders.find(key.nonce);
      if (h != s.holders.end() && (abandon || h->second.token == key.token) &&
          h->second.expires_at > now) {
        h->second.expires_at = now;
        ended = true;
      }
      if (ended || ticket_dropped) {
        auto v = view_of(db, key.name, key.nonce, now);
        if (v.head) {
          std::vector<std::pair<std::string, semaphore_ticket>> queue;
          for (const auto& [nonce, t] : s.tickets)
            if (t.expires_at > now && t.ttl_ms > 0) queue.emplace_back(nonce, t);
          std::sort(queue.begin(), queue.end(),
                    [](const auto& a, const auto& b) { return a.second.ticket < b.second.ticket; });
          std::int64_t token = v.token;
          for (const auto& [nonce, t] : queue) {
            const bool stale = s.holders.count(nonce) > 0;
            if (!stale && v.used + t.units > v.limit) break;
            s.tickets.erase(nonce);
            if (stale) continue;
            token = db.next_token(token + 1, what);
            s.holders[nonce] = holder_row{t.owner, t.metadata, token, t.units, now, now + t.ttl_ms};
            v.used += t.units;
            handed.push_back({nonce,
                              grant{token, from_epoch_ms(now), from_epoch_ms(now + t.ttl_ms)},
                              t.attempt});
          }
          if (!handed.empty()) s.token = token;
        }
      }
    }
  }
  for (const auto& h : handed) db.registry.hand_off(key.name, h);
  if (ended || ticket_dropped) db.registry.notify(key.name);
  return ended;
}

}  // namespace detail

acquire_result memory_backend::try_acquire_semaphore(const semaphore_request& r, deadline) {
  const std::string what = "acquire semaphore " + quoted(r.name);
  auto& db = *db_;
  std::int64_t token = 0, acquired = 0, expires = 0;
  detail::semaphore_view v;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(detail::schema_semaphores, what);
    const std::int64_t now = db.now_ms();
    auto s = db.semaphores.find(r.name);
    if (r.attempt > 1 && r.waiting && r.fair && s != db.semaphores.end()) {
      // A later attempt of a fair wait: a release may have handed units to this nonce (its
      // wake-up missed). Taken as a renewal would, so its local clock can start at this attempt.
      auto h = s->second.holders.find(r.nonce);
      if (h != s->second.holders.end() && h->second.expires_at > now) {
        h->second.expires_at = renewed_expiry(h->second, now, r.ttl);
        s->second.tickets.erase(r.nonce);
        return {grant{h->second.token, from_epoch_ms(h->second.acquired_at),
                      from_epoch_ms(h->second.expires_at)},
                milliseconds::zero()};
      }
    }
    v = detail::view_of(db, r.name, r.nonce, now);
    if (v.exists && v.used > 0 && v.limit != r.limit)
      throw error(errc::invalid_argument,
                  what + ": the semaphore has limit " + std::to_string(v.limit) +
                      " (its live holders use it); this acquisition asks for limit " +
                      std::to_string(r.limit),
                  detail::kind_name);
    if (v.exists && !v.grantable(r)) {
      if (r.waiting && r.fair) {
        auto& tickets = s->second.tickets;
        auto mine = tickets.find(r.nonce);
        if (mine != tickets.end() && mine->second.expires_at > now) {
          mine->second.expires_at = now + r.ticket_ttl.count();
          mine->second.attempt = r.attempt;
        } else {
          // First refusal, or our ticket lapsed: a new place at the end of the queue.
          detail::semaphore_ticket t;
          t.owner = r.owner;
          t.metadata = r.metadata;
          t.ticket = db.next_token(1, what);
          t.units = r.count;
          t.expires_at = now + r.ticket_ttl.count();
          t.ttl_ms = r.handoff_term().count();
          t.attempt = r.attempt;
          tickets[r.nonce] = std::move(t);
        }
      }
      return {std::nullopt, v.retry_in(now)};
    }
    token = detail::add_holder(db, r, v, now, what);
    acquired = now;
    expires = now + r.ttl.count();
  }
  // Room left and others queued: the next waiter may fit too.
  if (v.head && v.used + r.count < r.limit) db.registry.notify(r.name);
  return {grant{token, from_epoch_ms(acquired), from_epoch_ms(expires)}, milliseconds::zero()};
}

std::optional<semaphore_record> memory_backend::inspect_semaphore(std::string_view name, deadline) {
  const std::string what = "inspect semaphore " + quoted(name);
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_semaphores, what);
  auto s = db.semaphores.find(std::string(name));
  if (s == db.semaphores.end()) return std::nullopt;
  return detail::record_of(s->first, s->second, db.now_ms());
}

std::vector<semaphore_record> memory_backend::list_semaphores(const list_filter& f, deadline) {
  const std::string what = "list semaphores";
  auto& db = *db_;
  std::lock_guard<std::mutex> lock(db.mu);
  db.require(detail::schema_semaphores, what);
  const std::int64_t now = db.now_ms();
  std::vector<semaphore_record> out;
  for (auto it = db.semaphores.lower_bound(f.prefix); it != db.semaphores.end(); ++it) {
    if (it->first.compare(0, f.prefix.size(), f.prefix) != 0) break;
    const bool held = detail::has_live_holder(it->second, now);
    if ((f.show == list_filter::which::held && !held) ||
        (f.show == list_filter::which::free && held))
      continue;
    if (f.limit != 0 && out.size() >= f.limit) break;
    out.push_back(detail::record_of(it->first, it->second, now));
  }
  return out;
}

std::size_t memory_backend::force_release_semaphore(std::string_view name, std::int64_t token,
                                                    deadline) {
  const std::string what = "force release semaphore " + quoted(name);
  auto& db = *db_;
  std::size_t ended = 0;
  {
    std::lock_guard<std::mutex> lock(db.mu);
    db.require(detail::schema_semaphores, what);
    const std::int64_t now = db.now_ms();
    auto s = db.semaphores.find(std::string(name));
    if (s != db.semaphores.end())
      for (auto& [nonce, h] : s->second.holders)
        if ((token == 0 || h.token == token) && h.expires_at > now) {
          h.expires_at = now;
          h.forced = true;
          ++ended;
        }
  }
  for (std::size_t i = 0; i < ended; ++i) db.registry.notify(name);
  return ended;
}

}  // namespace sqlock::testing
