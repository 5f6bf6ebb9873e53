// The SQLite backend's lock operations: acquire, renew (locks and semaphore holders alike),
// release, abandon, force release, inspect, list; and the token counter grants draw from.

#include "backends/common/backend_common.hpp"
#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/rows.hpp"
#include "backends/sqlite/statements.hpp"
#include "util/util.hpp"

namespace sqlock::detail::sqlite {

acquire_result sqlite_backend::try_acquire(const acquire_request& r, deadline until) {
  const std::string what = "acquire " + quoted(r.name);
  auto c = checkout(until, false, what);
  // Look first, without the write lock: under contention most attempts stop here, and a
  // refused attempt never writes.
  {
    auto look = c->prepare(sql::lock_look, what);
    look.bind(1, r.name);
    if (look.step() && look.integer(0) > 0) return {std::nullopt, milliseconds{look.integer(0)}};
  }
  write_transaction tx(*c, what);
  std::int64_t now = c->now_ms(what);
  std::int64_t floor = 1;
  {
    auto cur = c->prepare(sql::lock_current, what);
    cur.bind(1, r.name);
    if (cur.step()) {
      if (cur.integer(1) > now) return {std::nullopt, milliseconds{cur.integer(1) - now}};
      floor = cur.integer(0) + 1;
    }
  }
  std::int64_t token = next_token(*c, floor, what);
  std::int64_t expires = now + r.ttl.count();
  {
    auto up = c->prepare(sql::lock_upsert, what);
    up.bind(1, r.name).bind(2, r.owner).bind(3, r.nonce).bind(4, token).bind(5, now);
    up.bind(6, expires).bind(7, r.metadata);
    up.step();
  }
  tx.commit();
  return {grant{token, from_epoch_ms(now), from_epoch_ms(expires)}, milliseconds::zero()};
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
      out.push_back({renew_outcome::renewed, from_epoch_ms(up.integer(0))});
      continue;
    }
    auto cur = c->prepare(sql::lock_nonce_token, what);
    cur.bind(1, r.key.name);
    // One write transaction at a time: nothing else can hold the row, so never busy.
    renew_outcome o = renew_outcome::missing;
    if (cur.step()) o = refused_renewal(r.key, cur.text(0), cur.integer(1), false);
    out.push_back({o, {}});
  }
  tx.commit();
  return out;
}

bool sqlite_backend::release(const lease_key& key, deadline until) {
  const std::string what =
      "release " + quoted(key.name) + " (token " + std::to_string(key.token) + ")";
  if (key.kind == lease_kind::semaphore)
    return end_lease(sql::holder_release, key.name, key.nonce, &key.token, until, what);
  return end_lease(sql::lock_release, key.name, key.nonce, &key.token, until, what);
}

bool sqlite_backend::abandon(const lease_key& key, deadline until) {
  const std::string what = "clean up acquire " + quoted(key.name);
  if (key.kind == lease_kind::semaphore) {
    // A fair waiter that leaves gives up its ticket: the next one may be first now.
    end_lease(sql::ticket_abandon, key.name, key.nonce, nullptr, until, what);
    return end_lease(sql::holder_abandon, key.name, key.nonce, nullptr, until, what);
  }
  return end_lease(sql::lock_abandon, key.name, key.nonce, nullptr, until, what);
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
  return read_record(s);
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
  while (s.step()) out.push_back(read_record(s));
  return out;
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
