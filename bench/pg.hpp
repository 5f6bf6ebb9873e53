// SPDX-License-Identifier: Apache-2.0
#pragma once
// Thin RAII wrappers over libpq and a minimal Redis client, for the baselines: they talk to the
// servers with nothing in between (blocking calls, one connection per thread).

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

struct pgresult_free {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using pgresult = std::unique_ptr<PGresult, pgresult_free>;

/// One blocking libpq connection. Thread safety: not thread-safe (one per thread).
class pg {
 public:
  explicit pg(const std::string& url);
  ~pg();
  pg(const pg&) = delete;
  pg& operator=(const pg&) = delete;

  PGconn* get() const noexcept { return c_; }
  /// Simple query (may hold several statements); throws on error.
  void exec(const std::string& sql);
  /// One parameterised statement (unnamed), rows as text; throws on error.
  std::vector<std::vector<std::string>> query(const std::string& sql,
                                              const std::vector<std::string>& params = {});
  std::string scalar(const std::string& sql, const std::vector<std::string>& params = {});
  void prepare(const std::string& name, const std::string& sql, int nparams);
  /// A prepared statement with text parameters (nullptr = NULL); throws on error.
  pgresult run(const char* name, const std::vector<const char*>& params);

 private:
  PGconn* c_;
};

/// A Redis connection speaking RESP over TCP: one request, one reply, like hiredis's blocking
/// API, without the dependency. Thread safety: not thread-safe.
class redis {
 public:
  redis(const std::string& host, int port);
  ~redis();
  redis(const redis&) = delete;
  redis& operator=(const redis&) = delete;
  /// Sends a command and returns the first line of its reply ("+OK", "$-1", ":1", ...).
  std::string command(const std::vector<std::string_view>& args);

 private:
  std::string read_line();
  int fd_ = -1;
  std::string buf_;
};

}  // namespace bench
