// SPDX-License-Identifier: Apache-2.0
#pragma once
// Design: one PostgreSQL connection driven through libpq's asynchronous API, so that no call
// blocks a sqlock thread past its deadline, even on a stalled socket (a proxy that accepts
// bytes and answers nothing; TCP keepalives never fire then). Every wait is a poll() on
// PQsocket bounded by the call's deadline. A connection that misses a deadline mid-statement is
// abandoned: its running statement is cancelled from a detached helper thread (PQcancel itself
// blocks and cannot be bounded) and the connection is closed; it is never reused, because its
// protocol state is unknown. libpq's blocking calls (PQconnectdb, PQexec and the like) wait
// without a bound, so only the asynchronous ones are used (PQconnectStartParams/PQconnectPoll,
// PQsend*, PQconsumeInput/PQisBusy).

#include <libpq-fe.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <sqlock/backend.hpp>
#include <sqlock/error.hpp>

namespace sqlock::detail::pg {

inline constexpr const char* kind_name = "postgresql";

/// libpq connection parameters as keyword/value arrays, parsed once from the user's URI or
/// key=value string (PQconninfoParse) with `fallback_application_name=sqlock` added.
struct conninfo {
  std::vector<std::string> keys, values;
  std::string redacted;  ///< the original string with any password masked, for messages
  std::string source;    ///< the original string: only to redact libpq's messages about it
  /// Of a multi-host string: the host that answered last (connection::open starts there),
  /// shared by the copies of one parsed string.
  std::shared_ptr<std::atomic<std::size_t>> last_good =
      std::make_shared<std::atomic<std::size_t>>(0);

  /// How many hosts the string names (host or hostaddr lists, as libpq counts them).
  std::size_t hosts() const;
  /// The string for host `i` alone (its host, hostaddr and port; every other setting kept).
  conninfo only_host(std::size_t i) const;
};

/// Throws errc::invalid_argument (with a redacted message) for a malformed string.
conninfo parse_conninfo(const std::string& text);

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};

/// A successful statement's rows, in text format.
class result {
 public:
  result() = default;
  explicit result(PGresult* r) : r_(r) {}
  int rows() const noexcept { return r_ ? PQntuples(r_.get()) : 0; }
  int columns() const noexcept { return r_ ? PQnfields(r_.get()) : 0; }
  bool null(int row, int col) const noexcept { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<std::size_t>(PQgetlength(r_.get(), row, col)));
  }
  std::int64_t integer(int row, int col) const;
  bool boolean(int row, int col) const { return PQgetvalue(r_.get(), row, col)[0] == 't'; }
  /// Rows affected by the command (INSERT/UPDATE/DELETE), 0 when none.
  std::size_t affected() const;

 private:
  std::unique_ptr<PGresult, result_deleter> r_;
};

using param = std::optional<std::string>;

class connection {
 public:
  /// Connects within the deadline. `interrupt_fd`, when >= 0, aborts any wait when readable.
  /// A multi-host string's hosts are tried one by one (see connection.cpp). Throws
  /// errc::unavailable.
  static std::unique_ptr<connection> open(const conninfo& info, deadline until,
                                          const std::string& what, int interrupt_fd = -1);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// One statement through the extended protocol (parameters as text, never spliced into
  /// SQL). With `prepared_name`, a named prepared statement (prepared on first use on this
  /// connection). Throws sqlock::error; a connection failure or a missed deadline after the
  /// statement was sent throws `after_send_code` (errc::in_doubt for grants), before it
  /// errc::unavailable. Server errors leave the connection usable.
  result exec(const std::string& what, const char* prepared_name, const std::string& sql,
              const std::vector<param>& params, deadline until,
              errc after_send_code = errc::unavailable);
  /// A simple-protocol query string (may hold several statements; no parameters). Returns
  /// every statement's result; throws on the first failure.
  std::vector<result> exec_simple(const std::string& what, const std::string& sql, deadline until);

  /// Waits until the socket is readable (or the interrupt fd, or the deadline), then reads what
  /// arrived. Returns false on timeout/interrupt. Throws errc::unavailable if the connection
  /// broke.
  bool wait_readable(deadline until, const std::string& what);
  /// A notification: its channel and payload.
  struct notification {
    std::string channel, payload;
  };
  /// Takes the next pending notification.
  std::optional<notification> next_notification();

  bool broken() const noexcept { return broken_; }
  /// The backend's server epoch when this connection was opened (postgresql_backend::identify).
  std::uint64_t server_epoch = 0;
  /// true while a statement of a transaction block is open (PQtransactionStatus).
  bool in_transaction() const noexcept;
  PGconn* get() const noexcept { return conn_; }
  std::string escape_identifier(std::string_view s) const;
  std::string escape_literal(std::string_view s) const;
  const std::string& server_message() const noexcept { return last_error_; }

 private:
  explicit connection(PGconn* c, int interrupt_fd) : conn_(c), interrupt_fd_(interrupt_fd) {}
  /// Connects to the one host `info` names; messages name the string `named` (redacted).
  static std::unique_ptr<connection> open_one(const conninfo& info, const conninfo& named,
                                              deadline until, const std::string& what,
                                              int interrupt_fd);
  enum class ready { yes, timeout, interrupted };
  ready wait_for(bool want_write, deadline until);
  /// Sends what is buffered and reads the results of the statement just sent.
  std::vector<PGresult*> finish(const std::string& what, deadline until, errc after_send_code);
  [[noreturn]] void abandon(const std::string& what, const std::string& why, errc code);
  bool prepare(const std::string& what, const char* name, const std::string& sql, int nparams,
               deadline until);

  PGconn* conn_;
  int interrupt_fd_;
  bool broken_ = false;
  std::set<std::string> prepared_;
  std::string last_error_;
};

}  // namespace sqlock::detail::pg
