// SPDX-License-Identifier: Apache-2.0
#include "pg.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "util.hpp"

namespace bench {

namespace {
[[noreturn]] void fail(PGconn* c, const std::string& what) {
  throw failure(what + ": " + (c ? PQerrorMessage(c) : "no connection"));
}
pgresult check(PGconn* c, PGresult* r, const std::string& what) {
  pgresult res(r);
  auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) fail(c, what);
  return res;
}
}  // namespace

pg::pg(const std::string& url) : c_(PQconnectdb(url.c_str())) {
  if (PQstatus(c_) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c_);
    PQfinish(c_);
    throw failure("connect: " + msg);
  }
}

pg::~pg() { PQfinish(c_); }

void pg::exec(const std::string& sql) {
  check(c_, PQexec(c_, sql.c_str()), sql.substr(0, 60));
  // A multi-statement string leaves later results queued in some libpq versions: drain.
  while (PGresult* r = PQgetResult(c_)) PQclear(r);
}

std::vector<std::vector<std::string>> pg::query(const std::string& sql,
                                                const std::vector<std::string>& params) {
  std::vector<const char*> v;
  for (auto& p : params) v.push_back(p.c_str());
  auto r = check(c_,
                 PQexecParams(c_, sql.c_str(), static_cast<int>(v.size()), nullptr, v.data(),
                              nullptr, nullptr, 0),
                 sql.substr(0, 60));
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    rows.emplace_back();
    for (int j = 0; j < PQnfields(r.get()); ++j) rows.back().push_back(PQgetvalue(r.get(), i, j));
  }
  return rows;
}

std::string pg::scalar(const std::string& sql, const std::vector<std::string>& params) {
  auto rows = query(sql, params);
  if (rows.empty() || rows[0].empty()) throw failure("no value from: " + sql.substr(0, 60));
  return rows[0][0];
}

void pg::prepare(const std::string& name, const std::string& sql, int nparams) {
  check(c_, PQprepare(c_, name.c_str(), sql.c_str(), nparams, nullptr), "prepare " + name);
}

pgresult pg::run(const char* name, const std::vector<const char*>& params) {
  return check(
      c_,
      PQexecPrepared(c_, name, static_cast<int>(params.size()), params.data(), nullptr, nullptr, 0),
      name);
}

redis::redis(const std::string& host, int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (fd_ < 0 || inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 ||
      ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd_ >= 0) ::close(fd_);
    throw failure("redis: cannot connect to " + host + ":" + std::to_string(port));
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

redis::~redis() {
  if (fd_ >= 0) ::close(fd_);
}

std::string redis::read_line() {
  for (;;) {
    auto pos = buf_.find("\r\n");
    if (pos != std::string::npos) {
      std::string line = buf_.substr(0, pos);
      buf_.erase(0, pos + 2);
      return line;
    }
    char tmp[512];
    auto n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) throw failure("redis: connection lost");
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
}

std::string redis::command(const std::vector<std::string_view>& args) {
  std::string req = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    req += "$" + std::to_string(a.size()) + "\r\n";
    req.append(a.data(), a.size());
    req += "\r\n";
  }
  std::size_t sent = 0;
  while (sent < req.size()) {
    auto n = ::write(fd_, req.data() + sent, req.size() - sent);
    if (n <= 0) throw failure("redis: write failed");
    sent += static_cast<std::size_t>(n);
  }
  std::string line = read_line();
  if (!line.empty() && line[0] == '-') throw failure("redis: " + line);
  if (!line.empty() && line[0] == '$' && line != "$-1") {
    auto len = std::stoul(line.substr(1));
    while (buf_.size() < len + 2) {
      char tmp[512];
      auto n = ::read(fd_, tmp, sizeof tmp);
      if (n <= 0) throw failure("redis: connection lost");
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
    buf_.erase(0, len + 2);
  }
  return line;
}

}  // namespace bench
