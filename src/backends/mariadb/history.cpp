// SPDX-License-Identifier: Apache-2.0
// The history of leases in the MariaDB backend (schema 10): reading it, the switch, trimming it.
// Recording is done by the triggers of 010_history.up.sql, in the statements that end leases;
// the only C++ part of it is the 'lost' mark of abandon (locks.cpp, semaphores.cpp).

#include "backends/common/history.hpp"

#include <algorithm>

#include "backends/mariadb/backend.hpp"
#include "backends/mariadb/errors.hpp"
#include "backends/mariadb/rows.hpp"
#include "backends/mariadb/statements.hpp"

namespace sqlock::detail::mariadb {

std::vector<history_record> mariadb_backend::history(const history_filter& f, deadline until) {
  const std::string what = f.name.empty() ? std::string("history") : "history " + quoted(f.name);
  auto c = checkout(until, what);
  const std::int64_t now = c->now_us(what);
  auto s = c->prepare(sql::history_read, what);
  s.bind(1, f.name);
  if (f.since > milliseconds::zero())
    s.bind(2, now - us(f.since));
  else
    s.bind_null(2);
  s.bind(3, f.limit == 0 ? INT64_MAX : static_cast<std::int64_t>(f.limit));
  s.bind(4, now);
  std::vector<history_record> out;
  while (s.step()) {
    out.push_back(read_history_row(s, us_time, kind_name));
  }
  std::reverse(out.begin(), out.end());  // the statement returns the newest first
  return out;
}

bool mariadb_backend::set_history_enabled(bool on, deadline until) {
  const std::string what = on ? "enable history" : "disable history";
  auto c = checkout(until, what);
  write_transaction tx(*c, what);
  bool was = false;
  {
    auto s = c->prepare(sql::history_enabled, what);
    if (s.step()) was = s.integer(0) != 0;
  }
  c->prepare(sql::history_set, what).bind(1, std::string_view(on ? "on" : "off")).run();
  tx.commit();
  return was;
}

bool mariadb_backend::history_enabled(deadline until) {
  const std::string what = "read history setting";
  auto c = checkout(until, what);
  auto s = c->prepare(sql::history_enabled, what);
  return s.step() && s.integer(0) != 0;
}

std::size_t mariadb_backend::purge_history(milliseconds older_than, deadline until) {
  const std::string what = "purge history";
  constexpr std::int64_t batch = 500;  // short write transactions, as purge()
  auto c = checkout(until, what);
  std::size_t total = 0;
  for (;;) {
    write_transaction tx(*c, what);
    auto n = static_cast<std::int64_t>(c->prepare(sql::history_purge, what)
                                           .bind(1, tx.now() - us(older_than))
                                           .bind(2, batch)
                                           .run());
    tx.commit();
    total += static_cast<std::size_t>(n);
    if (n < batch || steady::now() >= until) return total;
  }
}

}  // namespace sqlock::detail::mariadb
