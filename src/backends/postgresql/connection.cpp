// SPDX-License-Identifier: Apache-2.0
// One PostgreSQL connection through libpq's asynchronous API (see connection.hpp), the parsing
// of connection strings, and the text-format result accessors.

#include "backends/postgresql/connection.hpp"

#include <poll.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "backends/common/url.hpp"
#include "backends/postgresql/errors.hpp"

namespace sqlock::detail::pg {
namespace {

using steady = std::chrono::steady_clock;

// PQcancel blocks (it opens a connection and waits for the server to close it) and cannot be
// bounded, so it runs on a detached helper thread that owns its PGcancel. On a stalled network
// such a helper may hang until the process exits: at most this many exist at once; beyond that
// we only close the connection (the server ends the statement when it next writes to us).
std::atomic<int> cancellers{0};
constexpr int max_cancellers = 4;

void cancel_in_background(PGconn* conn) noexcept {
  if (cancellers.fetch_add(1) >= max_cancellers) {
    --cancellers;
    return;
  }
  PGcancel* c = PQgetCancel(conn);
  if (!c) {
    --cancellers;
    return;
  }
  try {
    std::thread([c] {
      char buf[256];
      PQcancel(c, buf, sizeof buf);
      PQfreeCancel(c);
      --cancellers;
    }).detach();
  } catch (...) {
    PQfreeCancel(c);
    --cancellers;
  }
}

int poll_timeout_ms(deadline until) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - steady::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left + 1, 60'000));
}

}  // namespace

conninfo parse_conninfo(const std::string& text) {
  conninfo out;
  out.redacted = redact_url(text);
  out.source = text;
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(text.c_str(), &err);
  if (!opts) {
    // libpq's parse errors quote the string or pieces of it ("invalid percent-encoded token:
    // "<the whole URI>"", "missing "=" after "<half a password>""): only their wording is
    // kept, never what they quote.
    std::string why = err ? redact_message(trimmed(err), text, true) : "out of memory";
    if (err) PQfreemem(err);
    throw error(errc::invalid_argument, "database URL '" + out.redacted + "': " + why, kind_name);
  }
  bool have_fallback = false;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::strcmp(o->keyword, "fallback_application_name") == 0) have_fallback = true;
    out.keys.emplace_back(o->keyword);
    out.values.emplace_back(o->val);
  }
  PQconninfoFree(opts);
  if (!have_fallback) {
    out.keys.emplace_back("fallback_application_name");
    out.values.emplace_back("sqlock");
  }
  return out;
}

std::int64_t result::integer(int row, int col) const {
  const char* v = PQgetvalue(r_.get(), row, col);
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0')
    throw error(errc::internal, std::string("postgresql: not an integer: '") + v + "'", kind_name);
  return n;
}

std::size_t result::affected() const {
  const char* n = r_ ? PQcmdTuples(r_.get()) : "";
  return *n ? static_cast<std::size_t>(std::strtoull(n, nullptr, 10)) : 0;
}

namespace {

std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  std::string::size_type from = 0, comma;
  while ((comma = v.find(',', from)) != std::string::npos) {
    out.push_back(v.substr(from, comma - from));
    from = comma + 1;
  }
  out.push_back(v.substr(from));
  return out;
}

// The value of `key` in `info`, or empty.
std::string value_of(const conninfo& info, const char* key) {
  for (std::size_t i = 0; i < info.keys.size(); ++i)
    if (info.keys[i] == key) return info.values[i];
  return {};
}

}  // namespace

std::size_t conninfo::hosts() const {
  std::size_t n = 1;
  for (const char* key : {"host", "hostaddr"}) {
    auto v = value_of(*this, key);
    if (!v.empty()) n = std::max(n, split_commas(v).size());
  }
  return n;
}

conninfo conninfo::only_host(std::size_t i) const {
  conninfo one = *this;
  for (std::size_t k = 0; k < one.keys.size(); ++k) {
    const auto& key = one.keys[k];
    if (key != "host" && key != "hostaddr" && key != "port") continue;
    auto parts = split_commas(one.values[k]);
    // libpq: one port for every host, or one per host.
    one.values[k] = parts.size() == 1 ? parts[0] : i < parts.size() ? parts[i] : std::string();
  }
  return one;
}

std::unique_ptr<connection> connection::open(const conninfo& info, deadline until,
                                             const std::string& what, int interrupt_fd) {
  const std::size_t hosts = info.hosts();
  if (hosts == 1) return open_one(info, info, until, what, interrupt_fd);
  // Several hosts (a multi-host URL, e.g. a primary and its standbys with
  // target_session_attrs=read-write). libpq moves on to the next host when one refuses, or,
  // in its blocking calls only, when one does not answer within connect_timeout; through the
  // asynchronous API a host that accepts the TCP connection and never answers (a frozen
  // primary) would hold every attempt until its deadline, and the next attempt would start
  // with it again. So each host is tried on its own, for at most connect_timeout (default 2
  // s; the last host tried gets all the time left), starting with the one that answered last.
  // As libpq: one port for every host or one per host, host and hostaddr lists alike long.
  for (const char* key : {"host", "hostaddr", "port"}) {
    auto v = value_of(info, key);
    auto n = v.empty() ? 0 : split_commas(v).size();
    if (n > 1 && n != hosts)
      throw error(errc::invalid_argument,
                  "database URL '" + info.redacted + "': " + std::to_string(n) + " " + key +
                      " values for " + std::to_string(hosts) + " hosts",
                  kind_name);
  }
  const std::string timeout = value_of(info, "connect_timeout");
  using std::chrono::milliseconds;
  const long seconds = timeout.empty() ? 0 : std::atol(timeout.c_str());
  const milliseconds per_host{seconds <= 0 ? 2000 : std::min(std::max(2L, seconds), 3600L) * 1000};
  const std::size_t first = info.last_good ? info.last_good->load() % hosts : 0;
  const std::string prefix = what + " on postgresql: cannot connect to " + info.redacted + ": ";
  std::string errors;
  for (std::size_t k = 0; k < hosts; ++k) {
    const std::size_t i = (first + k) % hosts;
    const bool last = k + 1 == hosts;
    const deadline host_until = last ? until : std::min(until, steady::now() + per_host);
    try {
      auto c = open_one(info.only_host(i), info, host_until, what, interrupt_fd);
      if (info.last_good) info.last_good->store(i);
      return c;
    } catch (const error& e) {
      if (e.code() != errc::unavailable) throw;
      std::string why = e.what();
      if (why.rfind(prefix, 0) == 0) why = why.substr(prefix.size());
      if (why == "interrupted") throw;  // shutting down: no other host
      errors +=
          (errors.empty() ? "" : "; ") + std::string("host ") + std::to_string(i + 1) + ": " + why;
      if (last || steady::now() >= until)
        throw error(errc::unavailable, prefix + errors, kind_name, "08001");
    }
  }
  throw error(errc::internal, what + " on postgresql: no host to connect to", kind_name);
}

std::unique_ptr<connection> connection::open_one(const conninfo& info, const conninfo& named,
                                                 deadline until, const std::string& what,
                                                 int interrupt_fd) {
  std::vector<const char*> keys, values;
  for (std::size_t i = 0; i < info.keys.size(); ++i) {
    keys.push_back(info.keys[i].c_str());
    values.push_back(info.values[i].c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // Name resolution inside PQconnectStartParams is synchronous (getaddrinfo): use addresses or
  // a local resolver where that matters.
  PGconn* raw = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!raw) throw error(errc::unavailable, what + " on postgresql: out of memory", kind_name);
  std::unique_ptr<connection> c(new connection(raw, interrupt_fd));
  auto fail = [&](const std::string& why) {
    c->broken_ = true;
    throw error(errc::unavailable,
                what + " on postgresql: cannot connect to " + named.redacted + ": " +
                    redact_message(trimmed(why), named.source),
                kind_name, "08001");
  };
  if (PQstatus(raw) == CONNECTION_BAD) fail(PQerrorMessage(raw));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) fail(PQerrorMessage(raw));
    auto r = c->wait_for(st == PGRES_POLLING_WRITING, until);
    if (r != ready::yes) fail(r == ready::timeout ? "timed out" : "interrupted");
    st = PQconnectPoll(raw);
  }
  if (PQsetnonblocking(raw, 1) != 0) fail(PQerrorMessage(raw));
  // libpq prints server NOTICEs to stderr by default; a library must stay quiet.
  PQsetNoticeProcessor(
      raw, [](void*, const char*) {}, nullptr);
  return c;
}

connection::~connection() {
  if (conn_) PQfinish(conn_);  // non-blocking socket: the Terminate message never blocks
}

bool connection::in_transaction() const noexcept {
  return PQtransactionStatus(conn_) != PQTRANS_IDLE;
}

std::string connection::escape_identifier(std::string_view s) const {
  char* p = PQescapeIdentifier(conn_, s.data(), s.size());
  if (!p)
    throw error(errc::invalid_argument,
                "postgresql: cannot quote identifier: " + trimmed(PQerrorMessage(conn_)),
                kind_name);
  std::string out(p);
  PQfreemem(p);
  return out;
}

std::string connection::escape_literal(std::string_view s) const {
  char* p = PQescapeLiteral(conn_, s.data(), s.size());
  if (!p)
    throw error(errc::invalid_argument,
                "postgresql: cannot quote literal: " + trimmed(PQerrorMessage(conn_)), kind_name);
  std::string out(p);
  PQfreemem(p);
  return out;
}

connection::ready connection::wait_for(bool want_write, deadline until) {
  for (;;) {
    pollfd fds[2] = {{PQsocket(conn_), static_cast<short>(want_write ? POLLOUT : POLLIN), 0},
                     {interrupt_fd_, POLLIN, 0}};
    if (fds[0].fd < 0) return ready::yes;  // let libpq report the broken connection
    int n = ::poll(fds, interrupt_fd_ >= 0 ? 2 : 1, poll_timeout_ms(until));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ready::yes;
    }
    if (interrupt_fd_ >= 0 && (fds[1].revents & POLLIN)) return ready::interrupted;
    if (n > 0 && fds[0].revents) return ready::yes;
    if (steady::now() >= until) return ready::timeout;
  }
}

void connection::abandon(const std::string& what, const std::string& why, errc code) {
  // The statement may still run (or already have committed): the caller treats the outcome
  // as unknown. The connection is never reused.
  if (!broken_ && PQstatus(conn_) == CONNECTION_OK && PQisBusy(conn_)) cancel_in_background(conn_);
  broken_ = true;
  throw error(code, what + " on postgresql: " + why, kind_name,
              code == errc::unavailable || code == errc::in_doubt ? "08006" : "");
}

std::vector<PGresult*> connection::finish(const std::string& what, deadline until,
                                          errc after_send_code) {
  std::vector<PGresult*> results;
  auto lost = [&](const std::string& why) {
    for (auto* r : results) PQclear(r);
    abandon(what, why, after_send_code);
  };
  for (;;) {
    int f = PQflush(conn_);
    if (f == 0) break;
    if (f < 0) lost("connection lost: " + trimmed(PQerrorMessage(conn_)));
    auto r = wait_for(true, until);
    if (r == ready::timeout) lost("timed out (no answer before the call's deadline)");
    if (r == ready::interrupted) lost("interrupted");
    if (!PQconsumeInput(conn_)) lost("connection lost: " + trimmed(PQerrorMessage(conn_)));
  }
  for (;;) {
    while (PQisBusy(conn_)) {
      auto r = wait_for(false, until);
      if (r == ready::timeout) lost("timed out (no answer before the call's deadline)");
      if (r == ready::interrupted) lost("interrupted");
      if (!PQconsumeInput(conn_)) lost("connection lost: " + trimmed(PQerrorMessage(conn_)));
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    results.push_back(r);
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    // A result may be a synthesised "server closed the connection" error.
    lost("connection lost: " + trimmed(PQerrorMessage(conn_)));
  }
  return results;
}

bool connection::prepare(const std::string& what, const char* name, const std::string& sql,
                         int nparams, deadline until) {
  if (prepared_.count(name)) return true;
  if (!PQsendPrepare(conn_, name, sql.c_str(), nparams, nullptr))
    abandon(what, "connection lost: " + trimmed(PQerrorMessage(conn_)), errc::unavailable);
  auto results = finish(what, until, errc::unavailable);
  PGresult* bad = nullptr;
  for (auto* r : results)
    if (PQresultStatus(r) != PGRES_COMMAND_OK && !bad) bad = r;
  if (bad) {
    const char* state = PQresultErrorField(bad, PG_DIAG_SQLSTATE);
    if (state && std::strcmp(state, "42P05") == 0) {
      // Already prepared on this server connection (shared through a pooler): names carry a
      // hash of the text, so it is this very statement.
      for (auto* r : results) PQclear(r);
      prepared_.insert(name);
      return true;
    }
    std::unique_ptr<PGresult, result_deleter> hold(bad);
    for (auto* r : results)
      if (r != bad) PQclear(r);
    throw_server_error(what, bad);
  }
  for (auto* r : results) PQclear(r);
  prepared_.insert(name);
  return true;
}

result connection::exec(const std::string& what, const char* prepared_name, const std::string& sql,
                        const std::vector<param>& params, deadline until, errc after_send_code) {
  if (broken_) abandon(what, "connection lost", errc::unavailable);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const int n = static_cast<int>(values.size());
  int ok;
  if (prepared_name) {
    prepare(what, prepared_name, sql, n, until);
    ok = PQsendQueryPrepared(conn_, prepared_name, n, values.data(), nullptr, nullptr, 0);
  } else {
    ok = PQsendQueryParams(conn_, sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0);
  }
  if (!ok) abandon(what, "connection lost: " + trimmed(PQerrorMessage(conn_)), errc::unavailable);
  auto results = finish(what, until, after_send_code);
  PGresult* out = nullptr;
  PGresult* bad = nullptr;
  for (auto* r : results) {
    auto st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      if (!out) {
        out = r;
        continue;
      }
    } else if (!bad) {
      bad = r;
      continue;
    }
    PQclear(r);
  }
  if (bad) {
    if (out) PQclear(out);
    std::unique_ptr<PGresult, result_deleter> hold(bad);
    throw_server_error(what, bad);
  }
  if (!out) abandon(what, "no result", errc::internal);
  return result(out);
}

std::vector<result> connection::exec_simple(const std::string& what, const std::string& sql,
                                            deadline until) {
  if (broken_) abandon(what, "connection lost", errc::unavailable);
  if (!PQsendQuery(conn_, sql.c_str()))
    abandon(what, "connection lost: " + trimmed(PQerrorMessage(conn_)), errc::unavailable);
  auto results = finish(what, until, errc::unavailable);
  std::vector<result> out;
  PGresult* bad = nullptr;
  for (auto* r : results) {
    auto st = PQresultStatus(r);
    if ((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) && !bad)
      out.emplace_back(r);
    else if (!bad)
      bad = r;
    else
      PQclear(r);
  }
  if (bad) {
    std::unique_ptr<PGresult, result_deleter> hold(bad);
    throw_server_error(what, bad);
  }
  return out;
}

bool connection::wait_readable(deadline until, const std::string& what) {
  if (broken_) abandon(what, "connection lost", errc::unavailable);
  auto r = wait_for(false, until);
  if (r != ready::yes) return false;
  if (!PQconsumeInput(conn_)) {
    broken_ = true;
    throw error(errc::unavailable,
                what + " on postgresql: connection lost: " + trimmed(PQerrorMessage(conn_)),
                kind_name, "08006");
  }
  return true;
}

std::optional<connection::notification> connection::next_notification() {
  PGnotify* n = PQnotifies(conn_);
  if (!n) return std::nullopt;
  notification out{n->relname ? n->relname : "", n->extra ? n->extra : ""};
  PQfreemem(n);
  return out;
}

}  // namespace sqlock::detail::pg
