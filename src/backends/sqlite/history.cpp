// SPDX-License-Identifier: Apache-2.0
// The history of leases in the SQLite backend (schema 10): reading it, the switch, trimming it.
// Recording is done by the triggers of 010_history.up.sql, in the statements that end leases;
// the only C++ part of it is the 'lost' mark of abandon (locks.cpp, semaphores.cpp).

#include "backends/common/history.hpp"

#include <sqlite3.h>

#include <algorithm>

#include "backends/common/backend_common.hpp"
#include "backends/sqlite/backend.hpp"
#include "backends/sqlite/errors.hpp"
#include "backends/sqlite/rows.hpp"
#include "backends/sqlite/statements.hpp"

namespace sqlock::detail::sqlite {

std::vector<history_record> sqlite_backend::history(const history_filter& f, deadline until) {
  const std::string what = f.name.empty() ? std::string("history") : "history " + quoted(f.name);
  auto c = checkout(until, false, what);
  const std::int64_t now = c->now_ms(what);
  auto s = c->prepare(sql::history_read, what);
  s.bind(1, f.name);
  if (f.since > milliseconds::zero())
    s.bind(2, now - f.since.count());
  else
    s.bind_null(2);
  s.bind(3, f.limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(f.limit));
  s.bind(4, now);
  std::vector<history_record> out;
  while (s.step()) {
    out.push_back(read_history_row(s, ms_time, kind_name));
  }
  std::reverse(out.begin(), out.end());  // the statement returns the newest first
  return out;
}

bool sqlite_backend::set_history_enabled(bool on, deadline until) {
  const std::string what = on ? "enable history" : "disable history";
  auto c = checkout(until, false, what);
  write_transaction tx(*c, what);
  bool was = false;
  {
    auto s = c->prepare(sql::history_enabled, what);
    if (s.step()) was = s.integer(0) != 0;
  }
  c->prepare(sql::history_set, what).bind(1, std::string_view(on ? "on" : "off")).step();
  tx.commit();
  return was;
}

bool sqlite_backend::history_enabled(deadline until) {
  const std::string what = "read history setting";
  auto c = checkout(until, false, what);
  auto s = c->prepare(sql::history_enabled, what);
  return s.step() && s.integer(0) != 0;
}

std::size_t sqlite_backend::purge_history(milliseconds older_than, deadline until) {
  const std::string what = "purge history";
  constexpr std::int64_t batch = 500;  // short write transactions, as purge()
  auto c = checkout(until, false, what);
  std::size_t total = 0;
  for (;;) {
    write_transaction tx(*c, what);
    c->prepare(sql::history_purge, what)
        .bind(1, c->now_ms(what) - older_than.count())
        .bind(2, batch)
        .step();
    auto n = static_cast<std::int64_t>(sqlite3_changes(c->get()));
    tx.commit();
    total += static_cast<std::size_t>(n);
    if (n < batch || steady::now() >= until) return total;
  }
}

}  // namespace sqlock::detail::sqlite
