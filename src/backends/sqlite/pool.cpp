// SPDX-License-Identifier: Apache-2.0
// The SQLite backend's connection pool (checkout, give-back) and end_lease, the one-UPDATE
// write transaction that ends a lease and wakes local waiters.

#include <sqlite3.h>

#include "backends/sqlite/backend.hpp"

namespace sqlock::detail::sqlite {

sqlite_backend::pooled sqlite_backend::checkout(deadline until, bool create,
                                                const std::string& what) {
  std::unique_ptr<connection> c;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!c) {
    try {
      c = std::make_unique<connection>(location_, uri_, create, options_.sqlite_synchronous);
    } catch (const error& e) {
      throw error(e.code(), what + ": " + e.what(), kind_name, e.sqlstate());
    }
  }
  c->set_deadline(until);
  return pooled(c.release(), pooled_deleter{this});
}

void sqlite_backend::give_back(connection* raw) noexcept {
  std::unique_ptr<connection> c(raw);
  if (sqlite3_get_autocommit(c->get()) == 0) return;  // left mid-transaction: drop it
  if (c->durability_changed()) return;                // a release could not restore it: drop it
  try {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (idle_.size() < 8) idle_.push_back(std::move(c));
  } catch (...) {
  }
}

bool sqlite_backend::end_lease(const char* sql, std::string_view name, std::string_view nonce,
                               const std::int64_t* token, deadline until, const std::string& what) {
  bool ended;
  {
    auto c = checkout(until, false, what);
    write_transaction tx(*c, what);
    std::int64_t now = c->now_ms(what);
    auto s = c->prepare(sql, what);
    s.bind(1, now).bind(2, name);
    if (!nonce.empty()) s.bind(3, nonce);
    if (token) s.bind(4, *token);
    s.step();
    ended = sqlite3_changes(c->get()) > 0;
    tx.commit();
  }
  if (ended) registry()->notify(name);
  return ended;
}

}  // namespace sqlock::detail::sqlite
