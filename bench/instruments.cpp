// SPDX-License-Identifier: Apache-2.0
// Server counters and the notification counter (see instruments.hpp).

#include "instruments.hpp"

#include <sys/select.h>

namespace bench {

double server_stats::role_calls() {
  return std::stod(
      admin.scalar("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_roles r "
                   "ON r.oid = s.userid WHERE r.rolname = $1",
                   {role}));
}

std::pair<double, double> server_stats::calls_like(const std::string& prefix) {
  auto rows = admin.query(
      "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
      "FROM pg_stat_statements WHERE query LIKE $1",
      {prefix + "%"});
  return {std::stod(rows[0][0]), std::stod(rows[0][1])};
}

double server_stats::server_cpu() {
  double sum = 0;
  for (auto& row : admin.query("SELECT pid FROM pg_stat_activity")) {
    double c = pid_cpu_seconds(std::stoi(row[0]));
    if (c > 0) sum += c;
  }
  return sum;
}

notification_counter::notification_counter(const std::string& url,
                                           const std::vector<std::string>& channels)
    : conn_(url) {
  for (const auto& channel : channels) conn_.exec("LISTEN " + channel);
  thread_ = std::thread([this] {
    while (!stop_) {
      int fd = PQsocket(conn_.get());
      fd_set set;
      FD_ZERO(&set);
      FD_SET(fd, &set);
      timeval tv{0, 100000};
      if (select(fd + 1, &set, nullptr, nullptr, &tv) > 0) {
        PQconsumeInput(conn_.get());
        while (PGnotify* n = PQnotifies(conn_.get())) {
          ++heard_;
          PQfreemem(n);
        }
      }
    }
  });
}

notification_counter::~notification_counter() {
  stop_ = true;
  thread_.join();
}

}  // namespace bench
