// SPDX-License-Identifier: Apache-2.0
// The history of leases in the PostgreSQL backend (schema 10): reading it, the switch, trimming
// it. Recording is done by the triggers of 010_history.up.sql, in the statements that end
// leases; the only C++ part of it is the 'lost' mark of abandon (locks.cpp).

#include "backends/common/history.hpp"

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

std::vector<history_record> postgresql_backend::history(const history_filter& f, deadline until) {
  const std::string what = f.name.empty() ? std::string("history") : "history " + quoted(f.name);
  auto c = checkout(until, what);
  param since = f.since > milliseconds::zero() ? param{std::to_string(f.since.count())} : param{};
  param limit = f.limit == 0 ? param{} : param{std::to_string(f.limit)};
  auto r = run(*c, what, "sqlock_history", sql().history, {f.name, since, limit}, until);
  std::vector<history_record> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = r.rows() - 1; i >= 0; --i) {  // the statement returns the newest first
    history_record h;
    h.kind = r.text(i, 0) == "semaphore" ? lease_kind::semaphore : lease_kind::lock;
    h.name = r.text(i, 1);
    h.token = r.integer(i, 2);
    h.owner = r.text(i, 3);
    h.metadata = r.text(i, 4);
    h.count = r.integer(i, 5);
    h.granted_at = from_epoch_us(r.integer(i, 6));
    h.ended_how = parse_lease_end(r.text(i, 8), kind_name);
    if (h.ended_how != lease_end::live) h.ended_at = from_epoch_us(r.integer(i, 7));
    out.push_back(std::move(h));
  }
  return out;
}

bool postgresql_backend::set_history_enabled(bool on, deadline until) {
  const std::string what = on ? "enable history" : "disable history";
  auto c = checkout(until, what);
  auto r = run(*c, what, nullptr, sql().set_history, {std::string(on ? "true" : "false")}, until);
  return r.boolean(0, 0);
}

bool postgresql_backend::history_enabled(deadline until) {
  const std::string what = "read history setting";
  auto c = checkout(until, what);
  return run(*c, what, "sqlock_history_enabled", sql().history_enabled, {}, until).boolean(0, 0);
}

std::size_t postgresql_backend::purge_history(milliseconds older_than, deadline until) {
  const std::string what = "purge history";
  auto c = checkout(until, what);
  const std::string ms = std::to_string(older_than.count());
  std::size_t total = 0;
  for (;;) {
    auto r = run(*c, what, "sqlock_purge_history", sql().purge_history, {ms}, until);
    auto n = static_cast<std::size_t>(r.integer(0, 0));
    total += n;
    if (n < static_cast<std::size_t>(purge_batch) || steady::now() >= until) return total;
  }
}

}  // namespace sqlock::detail::pg
