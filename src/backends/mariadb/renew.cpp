// SPDX-License-Identifier: Apache-2.0
// The MariaDB backend's renewal of many leases (locks and semaphore holders) in one write
// transaction: per table, one statement locks the rows (skipping those another transaction
// holds: busy), one writes their new expiries, and only when some were skipped one more reads
// them without locking to tell busy from ended. Batches are padded to a power of two (by
// repeating their last lease), so a connection prepares at most a few shapes.

#include <algorithm>
#include <map>

#include "backends/common/backend_common.hpp"
#include "backends/mariadb/backend.hpp"
#include "backends/mariadb/rows.hpp"
#include "backends/mariadb/statements.hpp"

namespace sqlock::detail::mariadb {
namespace {

constexpr std::size_t max_batch = 64;

std::size_t padded(std::size_t n) {
  std::size_t p = 1;
  while (p < n) p *= 2;
  return p;
}

struct lease_row {
  std::string nonce;
  std::int64_t token = 0, expires_at = 0;
  std::optional<std::int64_t> revoke_token, revoke_by;
  bool forced = false;
  bool revoke_pending() const { return revoke_token && *revoke_token == token; }
};

using row_key = std::pair<std::string, std::string>;  // (name, nonce); nonce '' for locks

// The rows of `batch` (indexes into `requests`), locked (`locking`) or merely read.
std::map<row_key, lease_row> read_rows(connection& c, const std::vector<renew_request>& requests,
                                       const std::vector<std::size_t>& batch, bool holders,
                                       bool locking, const std::string& what) {
  const std::size_t n = padded(batch.size());
  auto s = c.prepare(
      holders ? sql::renew_holder_rows(n, locking) : sql::renew_lock_rows(n, locking), what);
  for (std::size_t k = 0; k < n; ++k) {
    const auto& key = requests[batch[std::min(k, batch.size() - 1)]].key;
    if (holders)
      s.bind(static_cast<int>(2 * k + 1), key.name).bind(static_cast<int>(2 * k + 2), key.nonce);
    else
      s.bind(static_cast<int>(k + 1), key.name);
  }
  std::map<row_key, lease_row> rows;
  while (s.step()) {
    lease_row r;
    r.nonce = s.text(1);
    r.token = s.integer(2);
    r.expires_at = s.integer(3);
    if (!s.is_null(4)) r.revoke_token = s.integer(4);
    if (!s.is_null(5)) r.revoke_by = s.integer(5);
    r.forced = s.integer(6) != 0;
    rows[{s.text(0), holders ? r.nonce : std::string()}] = std::move(r);
  }
  return rows;
}

// Why a lease of a row that did not renew ended (`live`: still ours and unexpired, so only a
// transaction holding the row stopped it: busy).
renew_outcome refused(const renew_request& r, const lease_row& row, bool holder, bool live) {
  if (holder) {
    if (row.token != r.key.token) return renew_outcome::expired;  // a later grant's row
    if (live) return renew_outcome::busy;
    if (row.forced) return renew_outcome::force_released;
    if (row.revoke_pending()) return renew_outcome::revoked;
    return renew_outcome::expired;
  }
  auto o = refused_renewal(r.key, row.nonce, row.token, live);
  if (o == renew_outcome::expired && row.revoke_pending()) o = renew_outcome::revoked;
  return o;
}

void renew_batch(connection& c, std::int64_t now, const std::vector<renew_request>& requests,
                 const std::vector<std::size_t>& batch, bool holders,
                 std::vector<renew_result>& out, const std::string& what) {
  auto rows = read_rows(c, requests, batch, holders, true, what);
  std::vector<std::pair<std::size_t, std::int64_t>> writes;  // (request, new expiry)
  std::vector<std::size_t> skipped;
  for (auto i : batch) {
    const auto& key = requests[i].key;
    auto it = rows.find({key.name, holders ? key.nonce : std::string()});
    if (it == rows.end()) {
      skipped.push_back(i);
      continue;
    }
    const auto& row = it->second;
    const bool ours = row.nonce == key.nonce && row.token == key.token && !row.forced;
    if (ours && row.expires_at > now) {
      const auto revoke_by = row.revoke_pending() ? row.revoke_by : std::nullopt;
      const std::int64_t e = renewed_expiry(row.expires_at, now, us(requests[i].ttl), revoke_by);
      if (e != row.expires_at) writes.emplace_back(i, e);
      out[i] = renewed(now, e, revoke_by);
    } else {
      out[i] = not_renewed(refused(requests[i], row, holders, false));
    }
  }
  if (!writes.empty()) {
    const std::size_t n = padded(writes.size());
    auto up = c.prepare(holders ? sql::renew_holder_update(n) : sql::renew_lock_update(n), what);
    for (std::size_t k = 0; k < n; ++k) {
      const auto& [i, e] = writes[std::min(k, writes.size() - 1)];
      const auto& key = requests[i].key;
      if (holders) {
        up.bind(static_cast<int>(3 * k + 1), key.name).bind(static_cast<int>(3 * k + 2), key.nonce);
        up.bind(static_cast<int>(3 * k + 3), e);
      } else {
        up.bind(static_cast<int>(2 * k + 1), key.name).bind(static_cast<int>(2 * k + 2), e);
      }
    }
    up.run();
  }
  if (skipped.empty()) return;
  // Not locked: missing, or held by another transaction (a fenced one). A plain read tells.
  auto seen = read_rows(c, requests, skipped, holders, false, what);
  for (auto i : skipped) {
    const auto& key = requests[i].key;
    auto it = seen.find({key.name, holders ? key.nonce : std::string()});
    if (it == seen.end()) {
      out[i] = not_renewed(holders ? renew_outcome::expired : renew_outcome::missing);
      continue;
    }
    const auto& row = it->second;
    const bool live =
        row.nonce == key.nonce && row.token == key.token && !row.forced && row.expires_at > now;
    out[i] = not_renewed(refused(requests[i], row, holders, live));
  }
}

}  // namespace

std::vector<renew_result> mariadb_backend::renew(const std::vector<renew_request>& requests,
                                                 deadline until) {
  std::vector<renew_result> out(requests.size());
  if (requests.empty()) return out;
  const std::string what = describe_renewal(requests);
  auto c = checkout(until, what);
  write_transaction tx(*c, what);
  for (bool holders : {false, true}) {
    std::vector<std::size_t> batch;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      if ((requests[i].key.kind == lease_kind::semaphore) != holders) continue;
      batch.push_back(i);
      if (batch.size() == max_batch) {
        renew_batch(*c, tx.now(), requests, batch, holders, out, what);
        batch.clear();
      }
    }
    if (!batch.empty()) renew_batch(*c, tx.now(), requests, batch, holders, out, what);
  }
  tx.commit();
  return out;
}

}  // namespace sqlock::detail::mariadb
