// SPDX-License-Identifier: Apache-2.0
// The SQLite backend's semaphore operations: acquire (with the fair queue of tickets),
// inspect, list, force release, and the renewal of one holder.

#include <sqlite3.h>

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/rows.hpp"
#include "backends/sqlite/semaphore_rows.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::sqlite {

// Granted: drop ended holders and lapsed tickets (and ours); changed_at remembers when the last
// of them ended, for purge.
std::int64_t add_holder(connection& c, const semaphore_request& r, const semaphore_state& v,
                        std::int64_t now, const std::string& what) {
  std::int64_t ended_upto = 0;
  {
    auto gone = c.prepare(sql::semaphore_ended_upto, what);
    gone.bind(1, r.name).bind(2, now).bind(3, r.nonce);
    if (gone.step() && !gone.is_null(0)) ended_upto = gone.integer(0);
    auto d1 = c.prepare(sql::holders_delete_ended, what);
    d1.bind(1, r.name).bind(2, now).step();
    auto d2 = c.prepare(sql::tickets_delete_ended, what);
    d2.bind(1, r.name).bind(2, now).bind(3, r.nonce).step();
  }
  std::int64_t token = sqlite_backend::next_token(c, v.token + 1, what);
  auto add = c.prepare(sql::holder_add, what);
  add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, token).bind(5, r.count);
  add.bind(6, now).bind(7, now + r.ttl.count()).bind(8, r.metadata).step();
  auto sem = c.prepare(sql::semaphore_upsert, what);
  sem.bind(1, r.name).bind(2, r.limit).bind(3, token).bind(4, now).bind(5, ended_upto).step();
  return token;
}

// The release's handoff: the oldest live tickets, in order, as many as fit (a head that does
// not fit blocks those behind it; a ticket whose nonce already holds is stale and dropped).
// Each gets a holder row with a new token and its first term from now, as a lock's handoff
// does (end_lock).
holder_end end_holder_rows(connection& c, const lease_key& key, bool abandon, std::int64_t now,
                           const std::string& what) {
  holder_end out;
  if (abandon) {
    auto drop = c.prepare(sql::ticket_drop, what);
    drop.bind(1, key.name).bind(2, key.nonce).step();
    out.ticket_dropped = sqlite3_changes(c.get()) > 0;
  }
  // As a lock's abandon (end_lock): a grant the client never learnt of is recorded 'lost'.
  const bool lost = abandon && key.token == 0;
  if (lost) c.prepare(sql::history_mark_lost, what).step();
  {
    auto s = c.prepare(abandon ? sql::holder_abandon : sql::holder_release, what);
    s.bind(1, now).bind(2, key.name).bind(3, key.nonce);
    if (!abandon) s.bind(4, key.token);
    s.step();
    out.ended = sqlite3_changes(c.get()) > 0;
  }
  if (lost) c.prepare(sql::history_unmark, what).step();
  if (!out.ended && !out.ticket_dropped) return out;
  auto v = semaphore_view(c, key.name, key.nonce, now, what);
  struct waiter {
    std::string nonce, owner, metadata;
    std::int64_t units, ttl, attempt;
  };
  std::vector<waiter> queue;
  if (v.exists && v.others_queued) {
    auto q = c.prepare(sql::tickets_to_hand, what);
    q.bind(1, key.name).bind(2, now);
    while (q.step())
      queue.push_back({q.text(0), q.text(1), q.text(3), q.integer(2), q.integer(4), q.integer(5)});
  }
  std::int64_t token = v.token;
  for (const auto& w : queue) {
    bool stale;
    {
      auto holds = c.prepare(sql::holder_exists, what);
      holds.bind(1, key.name).bind(2, w.nonce);
      stale = holds.step();
    }
    if (!stale && v.used + w.units > v.limit) break;
    auto drop = c.prepare(sql::ticket_drop, what);
    drop.bind(1, key.name).bind(2, w.nonce).step();
    if (stale) continue;
    token = sqlite_backend::next_token(c, token + 1, what);
    auto add = c.prepare(sql::holder_add, what);
    add.bind(1, key.name).bind(2, w.nonce).bind(3, w.owner).bind(4, token).bind(5, w.units);
    add.bind(6, now).bind(7, now + w.ttl).bind(8, w.metadata).step();
    v.used += w.units;
    out.handed.push_back(
        {w.nonce, grant{token, from_epoch_ms(now), from_epoch_ms(now + w.ttl)}, w.attempt});
  }
  if (!out.handed.empty()) {
    auto up = c.prepare(sql::semaphore_token, what);
    up.bind(1, key.name).bind(2, token).step();
  }
  return out;
}

acquire_result sqlite_backend::try_acquire_semaphore(const semaphore_request& r, deadline until) {
  const std::string what = "acquire semaphore " + quoted(r.name);
  auto c = checkout(until, false, what);
  // Look first, without the write lock: a certain refusal of a non-queueing attempt writes
  // nothing. Everything is decided again inside the write transaction.
  if (!(r.waiting && r.fair)) {
    std::int64_t now = c->now_ms(what);
    auto v = semaphore_view(*c, r.name, r.nonce, now, what);
    if (v.exists && !v.grantable(r)) return {std::nullopt, v.retry_in(now, ms_time)};
  }
  write_transaction tx(*c, what);
  std::int64_t now = c->now_ms(what);
  if (r.attempt > 1 && r.waiting && r.fair) {
    // A later attempt of a fair wait: a release may have handed units to this nonce (the
    // waiter in another process, or its wake-up missed). Taken as a renewal would, so its
    // local clock can start at this attempt.
    std::optional<grant> g;
    {
      auto handed = c->prepare(sql::holder_handed, what);
      handed.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count()));
      handed.bind(3, r.name).bind(4, r.nonce);
      if (handed.step())
        g = grant{handed.integer(0), from_epoch_ms(handed.integer(1)),
                  from_epoch_ms(handed.integer(2))};
    }
    if (g) {
      auto drop = c->prepare(sql::ticket_drop, what);
      drop.bind(1, r.name).bind(2, r.nonce).step();
      tx.commit();
      return {g, milliseconds::zero()};
    }
  }
  auto v = semaphore_view(*c, r.name, r.nonce, now, what);
  check_semaphore_limit(v, r, what);
  if (v.exists && !v.grantable(r)) {
    if (r.waiting && r.fair) {
      auto keep = c->prepare(sql::ticket_keep, what);
      keep.bind(1, now).bind(2, static_cast<std::int64_t>(r.ticket_ttl.count()));
      keep.bind(3, r.name).bind(4, r.nonce).bind(5, r.attempt).step();
      if (sqlite3_changes(c->get()) == 0) {
        // First refusal, or our ticket lapsed: a new place at the end of the queue.
        auto drop = c->prepare(sql::ticket_drop, what);
        drop.bind(1, r.name).bind(2, r.nonce).step();
        std::int64_t ticket = next_token(*c, 1, what);
        auto add = c->prepare(sql::ticket_add, what);
        add.bind(1, r.name).bind(2, r.nonce).bind(3, r.owner).bind(4, ticket).bind(5, r.count);
        add.bind(6, now + r.ticket_ttl.count()).bind(7, r.metadata);
        add.bind(8, static_cast<std::int64_t>(r.handoff_term().count())).bind(9, r.attempt).step();
      }
      tx.commit();
    }
    return {std::nullopt, v.retry_in(now, ms_time)};
  }
  std::int64_t token = add_holder(*c, r, v, now, what);
  std::int64_t expires = now + r.ttl.count();
  tx.commit();
  // Room left and others queued: the next waiter in this process may fit too.
  if (v.others_queued && v.used + r.count < r.limit) registry()->notify(r.name);
  return {grant{token, from_epoch_ms(now), from_epoch_ms(expires)}, milliseconds::zero()};
}

// A semaphore holder's release (`abandon`: the nonce's ticket first, then whatever it holds) in
// one write transaction that hands the room to the queue (end_holder_rows); the waiter in this
// process is handed its grant, one in another process takes it at its next attempt. Then wakes
// the local waiters.
bool sqlite_backend::end_holder(const lease_key& key, bool abandon, deadline until,
                                const std::string& what) {
  holder_end e;
  {
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    e = end_holder_rows(*c, key, abandon, c->now_ms(what), what);
    tx.commit();
  }
  for (const auto& h : e.handed) registry()->hand_off(key.name, h);
  if (e.ended || e.ticket_dropped) registry()->notify(key.name);
  return e.ended;
}

std::optional<semaphore_record> sqlite_backend::inspect_semaphore(std::string_view name,
                                                                  deadline until) {
  const std::string what = "inspect semaphore " + quoted(name);
  auto c = checkout(until, false, what);
  auto s = c->prepare(sql::semaphore_inspect, what);
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  std::int64_t now = c->now_ms(what);
  return read_semaphore(*c, s.text(0), s.integer(1), now, what);
}

std::vector<semaphore_record> sqlite_backend::list_semaphores(const list_filter& f,
                                                              deadline until) {
  const std::string what = "list semaphores";
  auto c = checkout(until, false, what);
  // One read transaction: every row of the list comes from the same snapshot.
  auto begin = c->prepare(sql::begin, what);
  begin.step();
  struct end_read {
    connection& c;
    ~end_read() { sqlite3_exec(c.get(), sql::commit, nullptr, nullptr, nullptr); }
  } done{*c};
  std::int64_t now = c->now_ms(what);
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
  s.bind(5, f.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(f.limit));
  std::vector<std::pair<std::string, std::int64_t>> names;
  while (s.step()) names.emplace_back(s.text(0), s.integer(1));
  std::vector<semaphore_record> out;
  out.reserve(names.size());
  for (auto& [name, limit] : names) out.push_back(read_semaphore(*c, name, limit, now, what));
  return out;
}

std::size_t sqlite_backend::force_release_semaphore(std::string_view name, std::int64_t token,
                                                    deadline until) {
  const std::string what = "force release semaphore " + quoted(name);
  std::size_t ended;
  {
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    auto s = c->prepare(sql::semaphore_force_release, what);
    s.bind(1, now).bind(2, name).bind(3, token).step();
    ended = static_cast<std::size_t>(sqlite3_changes(c->get()));
    tx.commit();
  }
  for (std::size_t i = 0; i < ended; ++i) registry()->notify(name);
  return ended;
}

renew_result sqlite_backend::renew_holder(connection& c, std::int64_t now, const renew_request& r,
                                          const std::string& what) {
  auto up = c.prepare(sql::holder_renew, what);
  up.bind(1, now).bind(2, static_cast<std::int64_t>(r.ttl.count())).bind(3, r.key.name);
  up.bind(4, r.key.nonce).bind(5, r.key.token);
  if (up.step()) return renewed(now, up);
  // A holder row ends by expiry, release or an admin, and is deleted by a later grant:
  // missing is an ordinary end here.
  auto cur = c.prepare(sql::holder_forced, what);
  cur.bind(1, r.key.name).bind(2, r.key.nonce).bind(3, r.key.token);
  if (cur.step()) {
    if (cur.integer(0) != 0) return not_renewed(renew_outcome::force_released);
    if (cur.integer(1) != 0) return not_renewed(renew_outcome::revoked);
  }
  return not_renewed(renew_outcome::expired);
}

}  // namespace sqlock::detail::sqlite
