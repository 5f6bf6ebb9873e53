// PostgreSQL-only tests: statements per operation, the SQL's concurrency semantics with raw
// connections, notifications, deadlines on a stalled connection, server settings, privileges,
// search_path independence, redaction and the JSON encoder. They run against the servers of
// scripts/with-postgres (and fail without them).

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <regex>
#include <thread>
#include <vector>

#include "backends/postgresql/json.hpp"
#include "support/fixtures.hpp"
#include "support/poll.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using sqlock_test::eventually;
using sqlock_test::pg_session;
using sqlock_test::postgresql_fixture;
using sqlock_test::required_env;
using steady = std::chrono::steady_clock;

namespace {

sqlock::deadline soon() { return steady::now() + 10s; }

sqlock::acquire_request request(std::string name, std::string nonce,
                                std::chrono::milliseconds ttl = 30s, bool waiting = false) {
  sqlock::acquire_request r;
  r.name = std::move(name);
  r.owner = "test";
  r.nonce = std::move(nonce);
  r.ttl = ttl;
  r.waiting = waiting;
  return r;
}

std::string admin_url() { return required_env("SQLOCK_TEST_POSTGRESQL_ADMIN_URL"); }

// Grants the least-privilege runtime role (sqlock_runtime) what sqlock needs at run time on
// `schema`: exactly the grants the README documents.
void grant_runtime(const std::string& schema) {
  pg_session admin(admin_url());
  auto s = admin.ident(schema);
  admin.query("GRANT USAGE ON SCHEMA " + s + " TO sqlock_runtime");
  admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".sqlock_locks TO sqlock_runtime");
  admin.query("GRANT SELECT ON " + s + ".sqlock_schema_version TO sqlock_runtime");
  admin.query("GRANT USAGE ON SEQUENCE " + s + ".sqlock_token_seq TO sqlock_runtime");
  // Schema 2: semaphores (sqlock_semaphore_acquire runs with the caller's rights).
  admin.query("GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".sqlock_semaphores, " + s +
              ".sqlock_semaphore_holders, " + s + ".sqlock_semaphore_tickets TO sqlock_runtime");
  // Schema 3: EXECUTE on sqlock's functions is no longer PUBLIC's.
  admin.query("GRANT EXECUTE ON FUNCTION " + s + ".sqlock_assert_held(text, bigint), " + s +
              ".sqlock_semaphore_assert_held(text, bigint), " + s +
              ".sqlock_semaphore_acquire(text, bigint, bigint, text, text, text, bigint, "
              "boolean, boolean, bigint, text) TO sqlock_runtime");
}

// Without notifications: the listener's own LISTEN and self-test would show up in the counts.
sqlock::backend_options counting_options(const postgresql_fixture& db) {
  auto o = db.options().backend;
  o.notifications = false;
  return o;
}

// URL with extra libpq parameters appended (the test URLs have no query string).
std::string with_params(const std::string& url, const std::string& params) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + params;
}

struct log_capture {
  std::mutex mu;
  std::vector<std::pair<sqlock::log_level, std::string>> lines;
  std::function<void(sqlock::log_level, std::string_view)> hook() {
    return [this](sqlock::log_level l, std::string_view m) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(l, std::string(m));
    };
  }
  bool has(sqlock::log_level l, const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    return std::any_of(lines.begin(), lines.end(), [&](auto& p) {
      return p.first == l && p.second.find(needle) != std::string::npos;
    });
  }
  bool contains(const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    return std::any_of(lines.begin(), lines.end(),
                       [&](auto& p) { return p.second.find(needle) != std::string::npos; });
  }
};

// pg_stat_statements of one role: statements executed and WAL records they wrote.
struct statement_counter {
  pg_session admin{admin_url()};
  std::string role;
  explicit statement_counter(std::string r) : role(std::move(r)) {}
  void reset() { admin.query("SELECT pg_stat_statements_reset($1::regrole::oid)", {role}); }
  long calls() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE userid = $1::regrole",
        {role}));
  }
  /// Statements sent by the client (pg_stat_statements.track = all also counts the statements
  /// a function runs: those are not round trips).
  long top_calls() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE userid = $1::regrole "
        "AND toplevel",
        {role}));
  }
  long wal_records() {
    return std::stol(admin.value(
        "SELECT coalesce(sum(wal_records), 0) FROM pg_stat_statements WHERE userid = $1::regrole",
        {role}));
  }
  std::string dump() {
    std::string out;
    for (auto& r : admin.query("SELECT calls, query FROM pg_stat_statements WHERE userid = "
                               "$1::regrole",
                               {role}))
      out += r[0] + "x " + r[1].substr(0, 80) + "\n";
    return out;
  }
};

// A loopback TCP proxy in front of the server that can stall: after stall() it forwards
// nothing in either direction but keeps every socket open (like a hung middlebox: the kernel
// still acknowledges bytes, so TCP keepalives never fire).
class stall_proxy {
 public:
  stall_proxy(std::string host, int port) : host_(std::move(host)), port_(port) {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_, 16) != 0)
      throw std::runtime_error("proxy: bind/listen failed");
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    local_port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~stall_proxy() {
    stop_ = true;
    accept_thread_.join();
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_);
  }
  int port() const { return local_port_; }
  void stall() { stalled_ = true; }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int client = ::accept(listen_, nullptr, nullptr);
      if (client < 0) continue;
      int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<std::uint16_t>(port_));
      ::inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      fds_.push_back(client);
      fds_.push_back(server);
      pumps_.emplace_back([this, client, server] { pump(client, server); });
    }
  }
  void pump(int a, int b) {
    char buf[16384];
    while (!stop_) {
      if (stalled_) {
        std::this_thread::sleep_for(5ms);
        continue;
      }
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 20) <= 0) continue;
      if (stalled_) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) return;  // one side closed: stop pumping (sockets closed at the end)
        int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::send(to, buf + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) return;
          off += w;
        }
      }
    }
  }

  std::string host_;
  int port_;
  int listen_ = -1;
  int local_port_ = 0;
  std::atomic<bool> stop_{false}, stalled_{false};
  std::thread accept_thread_;
  std::vector<std::thread> pumps_;
  std::vector<int> fds_;
};

struct url_parts {
  std::string user, host, db;
  int port;
};
url_parts parse_test_url(const std::string& url) {
  static const std::regex re(R"(^postgresql://([^@]+)@([^:/]+):(\d+)/([^?]+))");
  std::smatch m;
  if (!std::regex_search(url, m, re)) throw std::runtime_error("unexpected test URL: " + url);
  return {m[1], m[2], m[4], std::stoi(m[3])};
}

sqlock::semaphore_request sem_request(std::string name, std::string nonce, std::int64_t limit,
                                      std::int64_t count = 1,
                                      std::chrono::milliseconds ttl = 30s,
                                      bool waiting = false, bool fair = false) {
  sqlock::semaphore_request r;
  r.name = std::move(name);
  r.owner = "test";
  r.nonce = std::move(nonce);
  r.limit = limit;
  r.count = count;
  r.ttl = ttl;
  r.waiting = waiting;
  r.fair = fair;
  r.ticket_ttl = sqlock::fair_ticket_ttl;
  return r;
}

sqlock::lease_key holder_key(std::string name, std::string nonce, std::int64_t token) {
  return {std::move(name), std::move(nonce), token, sqlock::lease_kind::semaphore};
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

TEST_SUITE("postgresql") {

TEST_CASE("acquire, renew, renew-many and release are one statement each; a refusal writes "
          "nothing") {
  postgresql_fixture db;
  grant_runtime(db.schema());
  auto b = sqlock::open_backend(required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL"),
                                counting_options(db));
  // Warm up: connections, prepared statements, the dedicated renew connection.
  REQUIRE(b->schema_version(soon()) == b->latest_schema_version());
  auto w = b->try_acquire(request("warm", "w"), soon());
  REQUIRE(w.granted);
  b->renew({{{"warm", "w", w.granted->token}, 30s}}, soon());
  REQUIRE(b->release({"warm", "w", w.granted->token}, soon()));

  statement_counter count("sqlock_runtime");
  pg_session raw(db.direct_url());
  auto seq_value = [&] {
    return raw.value("SELECT last_value FROM " + raw.ident(db.schema()) + ".sqlock_token_seq");
  };

  count.reset();
  auto a = b->try_acquire(request("a", "na"), soon());
  REQUIRE(a.granted);
  CHECK_MESSAGE(count.calls() == 1, count.dump());

  count.reset();
  auto r1 = b->renew({{{"a", "na", a.granted->token}, 30s}}, soon());
  CHECK(r1.at(0).outcome == sqlock::renew_outcome::renewed);
  CHECK_MESSAGE(count.calls() == 1, count.dump());

  auto c = b->try_acquire(request("c", "nc"), soon());
  REQUIRE(c.granted);
  count.reset();
  auto r2 = b->renew({{{"a", "na", a.granted->token}, 30s}, {{"c", "nc", c.granted->token}, 30s}},
                     soon());
  CHECK(r2.at(0).outcome == sqlock::renew_outcome::renewed);
  CHECK(r2.at(1).outcome == sqlock::renew_outcome::renewed);
  CHECK_MESSAGE(count.calls() == 1, count.dump());

  // A refused attempt: one statement, no WAL written, no token drawn.
  auto before = seq_value();
  count.reset();
  auto refused = b->try_acquire(request("a", "other"), soon());
  CHECK_FALSE(refused.granted);
  CHECK(refused.holder_expires_in > 25s);
  CHECK_MESSAGE(count.calls() == 1, count.dump());
  CHECK(count.wal_records() == 0);
  CHECK(seq_value() == before);

  count.reset();
  CHECK(b->release({"a", "na", a.granted->token}, soon()));
  CHECK_MESSAGE(count.calls() == 1, count.dump());

  // A grant of a released row is also one statement.
  count.reset();
  auto again = b->try_acquire(request("a", "na2"), soon());
  REQUIRE(again.granted);
  CHECK(again.granted->token > a.granted->token);
  CHECK_MESSAGE(count.calls() == 1, count.dump());
}

TEST_CASE("a semaphore grant, a holder's renewal, a mixed renewal and a release are one "
          "statement each; a refused attempt writes nothing") {
  postgresql_fixture db;
  grant_runtime(db.schema());
  auto b = sqlock::open_backend(required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL"),
                                counting_options(db));
  // Warm up: connections, prepared statements, the dedicated renew connection.
  REQUIRE(b->schema_version(soon()) == b->latest_schema_version());
  auto w = b->try_acquire_semaphore(sem_request("warm", "w", 2), soon());
  REQUIRE(w.granted);
  auto wl = b->try_acquire(request("warm-lock", "wl"), soon());
  REQUIRE(wl.granted);
  b->renew({{holder_key("warm", "w", w.granted->token), 30s},
            {{"warm-lock", "wl", wl.granted->token}, 30s}},
           soon());
  REQUIRE(b->release(holder_key("warm", "w", w.granted->token), soon()));

  statement_counter count("sqlock_runtime");
  pg_session raw(db.direct_url());
  auto seq_value = [&] {
    return raw.value("SELECT last_value FROM " + raw.ident(db.schema()) + ".sqlock_token_seq");
  };

  count.reset();
  auto g1 = b->try_acquire_semaphore(sem_request("s", "n1", 2), soon());
  REQUIRE(g1.granted);
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());
  auto g2 = b->try_acquire_semaphore(sem_request("s", "n2", 2), soon());
  REQUIRE(g2.granted);
  CHECK(g2.granted->token > g1.granted->token);

  count.reset();
  auto r1 = b->renew({{holder_key("s", "n1", g1.granted->token), 30s}}, soon());
  CHECK(r1.at(0).outcome == sqlock::renew_outcome::renewed);
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());

  auto l = b->try_acquire(request("a-lock", "nl"), soon());
  REQUIRE(l.granted);
  count.reset();
  auto r2 = b->renew({{holder_key("s", "n1", g1.granted->token), 30s},
                      {{"a-lock", "nl", l.granted->token}, 30s},
                      {holder_key("s", "n2", g2.granted->token), 30s}},
                     soon());
  REQUIRE(r2.size() == 3);
  CHECK(r2[0].outcome == sqlock::renew_outcome::renewed);
  CHECK(r2[1].outcome == sqlock::renew_outcome::renewed);
  CHECK(r2[2].outcome == sqlock::renew_outcome::renewed);
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());

  // A refused attempt (the semaphore is full): one statement, no WAL, no token drawn.
  auto before = seq_value();
  count.reset();
  auto refused = b->try_acquire_semaphore(sem_request("s", "n3", 2), soon());
  CHECK_FALSE(refused.granted);
  CHECK(refused.holder_expires_in > 25s);
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());
  CHECK_MESSAGE(count.wal_records() == 0, count.dump());
  CHECK(seq_value() == before);

  count.reset();
  CHECK(b->release(holder_key("s", "n1", g1.granted->token), soon()));
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());

  // A grant that also deletes the ended holder row: still one statement.
  count.reset();
  auto g3 = b->try_acquire_semaphore(sem_request("s", "n3", 2), soon());
  REQUIRE(g3.granted);
  CHECK(g3.granted->token > g2.granted->token);
  CHECK_MESSAGE(count.top_calls() == 1, count.dump());
  CHECK(raw.value("SELECT count(*) FROM " + raw.ident(db.schema()) +
                  ".sqlock_semaphore_holders WHERE name = 's'") == "2");
}

TEST_CASE("renew classifies a semaphore holder's outcomes and skips a holder row share-locked "
          "by sqlock_semaphore_assert_held") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto schema = raw.ident(db.schema());
  auto grant = [&](const std::string& name, const std::string& nonce,
                   std::chrono::milliseconds ttl = 30s) {
    auto g = b->try_acquire_semaphore(sem_request(name, nonce, 10, 1, ttl), soon());
    REQUIRE(g.granted);
    return g.granted->token;
  };
  auto live = grant("s", "live");
  auto fenced = grant("s", "fenced");
  auto forced = grant("s", "forced");
  auto released = grant("s", "released");
  auto expired = grant("s", "expired", 100ms);
  auto gone = grant("g", "gone");
  auto lock = b->try_acquire(request("a-lock", "nl"), soon()).granted;
  REQUIRE(lock);
  CHECK(b->force_release_semaphore("s", forced, soon()) == 1);
  CHECK(b->release(holder_key("s", "released", released), soon()));
  CHECK(b->release(holder_key("g", "gone", gone), soon()));
  grant("g", "next");  // deletes the ended holder row of "gone"
  CHECK(raw.value("SELECT count(*) FROM " + schema +
                  ".sqlock_semaphore_holders WHERE nonce = 'gone'") == "0");
  CHECK(eventually([&] { return b->inspect_semaphore("s", soon())->used == 2; }));  // lapsed

  raw.query("BEGIN");
  raw.query("SELECT " + schema + ".sqlock_semaphore_assert_held('s', $1::bigint)",
            {std::to_string(fenced)});
  auto start = steady::now();
  auto rs = b->renew({{holder_key("s", "live", live), 30s},
                      {holder_key("s", "fenced", fenced), 30s},
                      {holder_key("s", "forced", forced), 30s},
                      {holder_key("s", "released", released), 30s},
                      {holder_key("s", "expired", expired), 30s},
                      {holder_key("g", "gone", gone), 30s},
                      {{"a-lock", "nl", lock->token}, 30s},
                      {holder_key("s", "live", live + 1000), 30s}},
                     soon());
  CHECK(steady::now() - start < 2s);  // skipped, not waited for
  REQUIRE(rs.size() == 8);
  CHECK(rs[0].outcome == sqlock::renew_outcome::renewed);
  CHECK(rs[1].outcome == sqlock::renew_outcome::busy);
  CHECK(rs[2].outcome == sqlock::renew_outcome::force_released);
  CHECK(rs[3].outcome == sqlock::renew_outcome::expired);
  CHECK(rs[4].outcome == sqlock::renew_outcome::expired);
  CHECK(rs[5].outcome == sqlock::renew_outcome::expired);  // the row is gone: it ended
  CHECK(rs[6].outcome == sqlock::renew_outcome::renewed);
  CHECK(rs[7].outcome == sqlock::renew_outcome::taken_over);  // not our token: never renewed
  // The fenced holder's release does not wait for the open transaction: row-locked.
  start = steady::now();
  try {
    b->release(holder_key("s", "fenced", fenced), soon());
    FAIL("expected the release to report the locked row");
  } catch (const sqlock::row_locked& e) {
    CHECK(e.code() == errc::unavailable);
    CHECK(e.sqlstate() == sqlock::sqlstate_row_locked);
  }
  CHECK(steady::now() - start < 1s);
  raw.query("COMMIT");
  auto again = b->renew({{holder_key("s", "fenced", fenced), 30s}}, soon());
  CHECK(again.at(0).outcome == sqlock::renew_outcome::renewed);
  CHECK(b->release(holder_key("s", "fenced", fenced), soon()));
  CHECK_FALSE(b->release(holder_key("s", "fenced", fenced), soon()));  // idempotent
}

TEST_CASE("a semaphore grant does not count out a lapsed holder whose fenced transaction is "
          "open, and does not wait for it") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto schema = raw.ident(db.schema());
  auto first = b->try_acquire_semaphore(sem_request("f", "first", 1, 1, 300ms), soon());
  REQUIRE(first.granted);
  raw.query("BEGIN");
  raw.query("SELECT " + schema + ".sqlock_semaphore_assert_held('f', $1::bigint)",
            {std::to_string(first.granted->token)});
  CHECK(eventually([&] { return b->inspect_semaphore("f", soon())->used == 0; }));  // lapsed
  auto start = steady::now();
  auto refused = b->try_acquire_semaphore(sem_request("f", "second", 1), soon());
  CHECK(steady::now() - start < 1s);
  CHECK_FALSE(refused.granted);
  CHECK(refused.holder_expires_in == 0ms);  // unknown: retry soon
  // A release of another semaphore's holder, or inspecting this one, is not held up either.
  CHECK(b->inspect_semaphore("f", soon())->holders.empty());
  raw.query("COMMIT");
  auto second = b->try_acquire_semaphore(sem_request("f", "second", 1), soon());
  REQUIRE(second.granted);
  CHECK(second.granted->token > first.granted->token);
}

TEST_CASE("abandon ends a semaphore holder by nonce and drops its queue ticket") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  auto held = b->try_acquire_semaphore(sem_request("q", "holder", 1), soon());
  REQUIRE(held.granted);
  auto waiting = b->try_acquire_semaphore(sem_request("q", "waiter", 1, 1, 30s, true, true),
                                          soon());
  CHECK_FALSE(waiting.granted);
  auto rec = b->inspect_semaphore("q", soon());
  REQUIRE(rec);
  REQUIRE(rec->waiters.size() == 1);
  CHECK(rec->waiters[0].ticket > held.granted->token);
  CHECK(rec->waiters[0].expires_in > 1s);
  CHECK_FALSE(b->abandon(holder_key("q", "waiter", 0), soon()));  // no lease, only a ticket
  CHECK(b->inspect_semaphore("q", soon())->waiters.empty());
  CHECK(b->abandon(holder_key("q", "holder", 0), soon()));  // whatever the token
  CHECK(b->inspect_semaphore("q", soon())->used == 0);
  CHECK_FALSE(b->abandon(holder_key("q", "holder", 0), soon()));
  // A lock and a semaphore of one name are unrelated.
  auto lock = b->try_acquire(request("q", "holder"), soon());
  REQUIRE(lock.granted);
  CHECK_FALSE(b->abandon(holder_key("q", "holder", 0), soon()));
  CHECK(b->inspect("q", soon())->held);
}

TEST_CASE("purge skips a semaphore that a grant holds locked and deletes lapsed rows without "
          "their semaphore") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto schema = raw.ident(db.schema());
  for (std::string name : {"idle-a", "idle-b", "busy"}) {
    auto g = b->try_acquire_semaphore(sem_request(name, "n-" + name, 3), soon());
    REQUIRE(g.granted);
    CHECK(b->release(holder_key(name, "n-" + name, g.granted->token), soon()));
  }
  auto live = b->try_acquire_semaphore(sem_request("live", "n-live", 3), soon());
  REQUIRE(live.granted);
  // An orphan: a lapsed holder row whose semaphore row is gone.
  raw.query("INSERT INTO " + schema + ".sqlock_semaphore_holders (name, nonce, owner, token, "
            "units, acquired_at, expires_at) VALUES ('orphan', 'o', 'x', 1, 1, now(), now())");
  raw.query("BEGIN");
  raw.query("SELECT 1 FROM " + schema + ".sqlock_semaphores WHERE name = 'busy' FOR UPDATE");
  auto start = steady::now();
  CHECK(b->purge(0ms, soon()) == 2);
  CHECK(steady::now() - start < 2s);
  raw.query("COMMIT");
  CHECK_FALSE(b->inspect_semaphore("idle-a", soon()));
  CHECK_FALSE(b->inspect_semaphore("idle-b", soon()));
  CHECK(b->inspect_semaphore("busy", soon()));
  CHECK(b->inspect_semaphore("live", soon())->used == 1);
  CHECK(raw.value("SELECT count(*) FROM " + schema + ".sqlock_semaphore_holders WHERE name "
                  "IN ('orphan', 'idle-a', 'idle-b')") == "0");
  CHECK(b->purge(0ms, soon()) == 1);  // "busy" now
  CHECK(b->purge(0ms, soon()) == 0);
  // Tokens stay monotonic across the purge.
  auto again = b->try_acquire_semaphore(sem_request("idle-a", "n2", 3), soon());
  REQUIRE(again.granted);
  CHECK(again.granted->token > live.granted->token);
}

TEST_CASE("inspect_watched marks a held lock so that its release notifies, and writes nothing "
          "for a free one") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
  auto mark_of = [&](const std::string& name) {
    return raw.value("SELECT waiters_until > now() FROM " + locks + " WHERE name = $1",
                     {name});
  };
  CHECK_FALSE(b->inspect_watched("none", 10s, soon()));
  auto held = b->try_acquire(request("held", "h"), soon());
  REQUIRE(held.granted);
  auto free_row = b->try_acquire(request("free", "f"), soon());
  REQUIRE(free_row.granted);
  REQUIRE(b->release({"free", "f", free_row.granted->token}, soon()));
  CHECK(mark_of("held") == "f");
  auto r = b->inspect_watched("held", 10s, soon());
  REQUIRE(r);
  CHECK(r->held);
  CHECK(r->token == held.granted->token);
  CHECK(mark_of("held") == "t");
  auto f = b->inspect_watched("free", 10s, soon());
  REQUIRE(f);
  CHECK_FALSE(f->held);
  CHECK(mark_of("free") == "f");
  // A second look within half the mark writes nothing.
  auto xmin = raw.value("SELECT xmin FROM " + locks + " WHERE name = 'held'");
  CHECK(b->inspect_watched("held", 10s, soon())->held);
  CHECK(raw.value("SELECT xmin FROM " + locks + " WHERE name = 'held'") == xmin);
  // The holder's release notifies an observer in another process.
  auto o = db.options().backend;
  auto observer = sqlock::open_backend(db.url(), o);
  auto watch = observer->watch("held");
  REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
  CHECK(observer->inspect_watched("held", 10s, soon())->held);
  REQUIRE(b->release({"held", "h", held.granted->token}, soon()));
  CHECK(watch->wait_until(steady::now() + 2s) == sqlock::release_watch::wake::notified);
}

TEST_CASE("the least-privilege runtime role can do every runtime operation") {
  postgresql_fixture db;
  grant_runtime(db.schema());
  log_capture logs;
  auto o = db.options();
  o.log = logs.hook();
  auto runtime_url = required_env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL");
  sqlock::client c(runtime_url, o);
  sqlock::client other(runtime_url, o);
  CHECK(c.schema_version() == c.get_backend()->latest_schema_version());
  CHECK(c.migrate() == c.get_backend()->latest_schema_version());  // a no-op when current
  auto l = c.try_acquire("job");
  REQUIRE(l);
  CHECK(l->renew());
  CHECK(c.inspect("job")->held);
  CHECK(c.list().size() == 1);
  std::thread releaser([&] {
    std::this_thread::sleep_for(200ms);
    l->release();
  });
  auto w = other.try_acquire_for("job", 10s);  // marks the row; the release notifies
  releaser.join();
  REQUIRE(w);
  CHECK(other.force_release("job"));
  sqlock::semaphore_options so;
  so.limit = 2;
  auto s1 = c.try_acquire_semaphore("pool", so);
  REQUIRE(s1);
  CHECK(s1->renew());
  CHECK(c.inspect_semaphore("pool")->used == 1);
  CHECK(c.list_semaphores().size() == 1);
  auto s2 = other.try_acquire_semaphore("pool", so);
  REQUIRE(s2);
  so.fair = true;
  CHECK_FALSE(other.try_acquire_semaphore_for("pool", 50ms, so));  // takes and drops a ticket
  CHECK(c.force_release_semaphore("pool") == 2);
  CHECK(c.purge(0ms) == 2);
  CHECK_FALSE(c.inspect("job"));
  CHECK_FALSE(c.inspect_semaphore("pool"));
  CHECK_FALSE(logs.has(sqlock::log_level::warn, "permission"));
}

TEST_CASE("exactly one of many concurrent acquirers wins a fresh name and an expired name") {
  postgresql_fixture db;
  constexpr int n = 8;
  std::vector<std::shared_ptr<sqlock::backend>> backends;
  for (int i = 0; i < n; ++i) {
    backends.push_back(sqlock::open_backend(db.url(), db.options().backend));
    backends.back()->schema_version(soon());  // connected before the race
  }
  for (int round = 0; round < 4; ++round) {
    const std::string name = "race-" + std::to_string(round);
    std::int64_t previous = 0;
    for (int phase = 0; phase < 2; ++phase) {  // 0: fresh name, 1: expired row
      std::atomic<int> ready{0}, winners{0};
      std::atomic<std::int64_t> token{0};
      std::vector<std::thread> ts;
      for (int i = 0; i < n; ++i)
        ts.emplace_back([&, i] {
          ++ready;
          while (ready < n) std::this_thread::yield();
          // A long ttl: the winner's lease must not expire while slower threads (TSan, 2
          // cores) are still attempting, or a later grant would be legitimate, not a race.
          auto r = backends[static_cast<std::size_t>(i)]->try_acquire(
              request(name, "n" + std::to_string(phase) + "-" + std::to_string(i), 30s),
              soon());
          if (r.granted) {
            ++winners;
            token = r.granted->token;
          }
        });
      for (auto& t : ts) t.join();
      CHECK(winners == 1);
      CHECK(token > previous);
      previous = token;
      // End the lease for the next phase: the row is then no longer live (expires_at <= now()),
      // exactly what the acquire path sees for an expired row, without waiting out a ttl.
      CHECK(backends[0]->force_release(name, soon()));
      CHECK_FALSE(backends[0]->inspect(name, soon())->held);
    }
  }
}

TEST_CASE("an acquirer blocked behind a row lock wins after the release with a larger token") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  pg_session watcher(db.direct_url());
  const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
  const auto seq = raw.ident(db.schema()) + ".sqlock_token_seq";
  auto first = b->try_acquire(request("x", "n0", 100ms), soon());
  REQUIRE(first.granted);
  CHECK(eventually([&] { return !b->inspect("x", soon())->held; }));

  auto blocked_acquirers = [&] {
    return std::stoi(watcher.value(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database() AND pid <> pg_backend_pid()"));
  };

  SUBCASE("a row locked by another transaction is refused at once, drawing no token") {
    // Another session holds the row lock (as a fenced transaction's share lock would): the
    // acquirer sees a free row but never waits for the lock (issue 12): it is refused with no
    // known expiry and draws nothing. Once the lock is gone, a grant draws its token under
    // the row lock, after the grant that session made.
    raw.query("BEGIN");
    raw.query("SELECT 1 FROM " + locks + " WHERE name = 'x' FOR UPDATE");
    auto last = [&] { return watcher.value("SELECT last_value FROM " + seq); };
    const auto before = last();
    auto start = steady::now();
    auto refused = b->try_acquire(request("x", "waiter"), steady::now() + 20s);
    CHECK(steady::now() - start < 3s);
    CHECK_FALSE(refused.granted);
    CHECK(refused.holder_expires_in == 0ms);
    CHECK(last() == before);
    CHECK(blocked_acquirers() == 0);
    // Meanwhile a grant of the same name happens and ends in that session.
    auto ta = std::stoll(raw.value("UPDATE " + locks + " SET token = nextval('" + seq +
                                   "'), nonce = 'A', expires_at = now() WHERE name = 'x' "
                                   "RETURNING token"));
    raw.query("COMMIT");
    auto got = b->try_acquire(request("x", "waiter"), soon());
    REQUIRE(got.granted);
    CHECK(got.granted->token > ta);
    CHECK(ta > first.granted->token);
  }

  SUBCASE("negative: a token taken from VALUES would go backwards") {
    // The same interleaving with the token drawn in VALUES (excluded.token), as a naive upsert
    // does: VALUES are evaluated before the conflict check, so the blocked statement carries a
    // token drawn BEFORE the intervening grant, and lands with a smaller one.
    raw.query("BEGIN");
    raw.query("SELECT 1 FROM " + locks + " WHERE name = 'x' FOR UPDATE");
    std::string naive_token;
    std::thread t([&] {
      pg_session naive(db.direct_url());
      naive_token = naive.value(
          "INSERT INTO " + locks + " AS l (name, owner, nonce, token, acquired_at, expires_at) "
          "VALUES ('x', 'naive', 'naive', nextval('" + seq + "'), now(), now() + interval '1 "
          "minute') ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce, token = "
          "excluded.token, expires_at = excluded.expires_at WHERE l.expires_at <= now() "
          "RETURNING token");
    });
    CHECK(eventually([&] { return blocked_acquirers() == 1; }));
    auto ta = std::stoll(raw.value("UPDATE " + locks + " SET token = nextval('" + seq +
                                   "'), nonce = 'A', expires_at = now() WHERE name = 'x' "
                                   "RETURNING token"));
    raw.query("COMMIT");
    t.join();
    REQUIRE_FALSE(naive_token.empty());
    CHECK(std::stoll(naive_token) < ta);  // the invariant sqlock's statement keeps is broken
  }
}

TEST_CASE("renew classifies every outcome and skips rows locked by an open transaction") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
  auto live = b->try_acquire(request("live", "n1"), soon()).granted;
  auto locked = b->try_acquire(request("locked", "n2"), soon()).granted;
  auto forced = b->try_acquire(request("forced", "n3"), soon()).granted;
  auto taken = b->try_acquire(request("taken", "n4", 100ms), soon()).granted;
  auto expired = b->try_acquire(request("expired", "n5", 100ms), soon()).granted;
  auto purged = b->try_acquire(request("purged", "n6", 100ms), soon()).granted;
  REQUIRE((live && locked && forced && taken && expired && purged));
  CHECK(eventually([&] { return !b->inspect("purged", soon())->held; }));
  REQUIRE(b->try_acquire(request("taken", "someone-else"), soon()).granted);
  CHECK(b->purge(0ms, soon()) == 2);  // "expired" and "purged" are free
  CHECK(b->force_release("forced", soon()));
  auto e2 = b->try_acquire(request("expired", "n5b", 100ms), soon()).granted;  // re-created...
  REQUIRE(e2);
  raw.query("UPDATE " + locks + " SET nonce = 'n5', token = " + std::to_string(expired->token) +
            ", expires_at = now() WHERE name = 'expired'");  // ...as our own, expired row
  raw.query("BEGIN");
  raw.query("SELECT 1 FROM " + locks + " WHERE name = 'locked' FOR SHARE");  // a fenced tx
  auto start = steady::now();
  auto rs = b->renew({{{"live", "n1", live->token}, 30s},
                      {{"locked", "n2", locked->token}, 30s},
                      {{"forced", "n3", forced->token}, 30s},
                      {{"taken", "n4", taken->token}, 30s},
                      {{"expired", "n5", expired->token}, 30s},
                      {{"purged", "n6", purged->token}, 30s}},
                     soon());
  CHECK(steady::now() - start < 2s);  // skipped, not waited for
  REQUIRE(rs.size() == 6);
  CHECK(rs[0].outcome == sqlock::renew_outcome::renewed);
  CHECK(rs[1].outcome == sqlock::renew_outcome::busy);
  CHECK(rs[2].outcome == sqlock::renew_outcome::force_released);
  CHECK(rs[3].outcome == sqlock::renew_outcome::taken_over);
  CHECK(rs[4].outcome == sqlock::renew_outcome::expired);
  CHECK(rs[5].outcome == sqlock::renew_outcome::missing);
  raw.query("COMMIT");
  auto again = b->renew({{{"locked", "n2", locked->token}, 30s}}, soon());
  CHECK(again.at(0).outcome == sqlock::renew_outcome::renewed);
}

TEST_CASE("a release wakes a waiter in another client through NOTIFY within milliseconds") {
  postgresql_fixture db;
  sqlock::client holder(db.url(), db.options());
  sqlock::client waiter(db.url(), db.options());
  pg_session raw(db.direct_url());
  const auto locks = raw.ident(db.schema()) + ".sqlock_locks";
  // The waiter's listener is up and has verified itself.
  (void)waiter.get_backend()->watch("warm-up");
  REQUIRE(eventually([&] { return waiter.get_backend()->wakes_other_processes(); }, 5s));
  std::vector<double> ms;
  for (int i = 0; i < 30; ++i) {
    auto held = holder.try_acquire("handoff");
    REQUIRE(held);
    std::atomic<steady::time_point::rep> got_at{0};
    std::int64_t token = 0;
    std::thread t([&] {
      auto l = waiter.acquire("handoff");
      got_at = steady::now().time_since_epoch().count();
      token = l.token();
      l.release();
    });
    // Release only once the waiter has marked the row (it is then asleep on its watch).
    REQUIRE(eventually([&] {
      return raw.value("SELECT waiters_until > now() FROM " + locks +
                       " WHERE name = 'handoff'") == "t";
    }));
    std::this_thread::sleep_for(5ms);  // let the waiter reach its sleep: not synchronisation
    auto released = steady::now();
    held->release();
    t.join();
    CHECK(token > held->token());
    ms.push_back(std::chrono::duration<double, std::milli>(
                     steady::time_point(steady::duration(got_at.load())) - released)
                     .count());
  }
  double p50 = percentile(ms, 0.5), p99 = percentile(ms, 0.99);
  std::printf("NOTIFY handoff on loopback, 30 rounds: p50 %.2f ms, p99 %.2f ms\n", p50, p99);
  CHECK(p50 < 50);  // generous: without a wake-up the waiter would sleep up to 2 s
}

TEST_CASE("a semaphore release wakes a waiter in another client through NOTIFY within "
          "milliseconds") {
  postgresql_fixture db;
  sqlock::client holder(db.url(), db.options());
  sqlock::client waiter(db.url(), db.options());
  pg_session raw(db.direct_url());
  const auto semaphores = raw.ident(db.schema()) + ".sqlock_semaphores";
  (void)waiter.get_backend()->watch("warm-up");
  REQUIRE(eventually([&] { return waiter.get_backend()->wakes_other_processes(); }, 5s));
  sqlock::semaphore_options o;
  o.limit = 2;
  o.count = 2;
  for (bool fair : {false, true}) {
    o.fair = fair;
    std::vector<double> ms;
    for (int i = 0; i < 15; ++i) {
      auto held = holder.try_acquire_semaphore("handoff", o);
      REQUIRE(held);
      std::atomic<steady::time_point::rep> got_at{0};
      std::int64_t token = 0;
      std::thread t([&] {
        auto l = waiter.acquire_semaphore("handoff", o);
        got_at = steady::now().time_since_epoch().count();
        token = l.token();
        l.release();
      });
      // Release only once the waiter has marked the semaphore (it is then asleep).
      REQUIRE(eventually([&] {
        return raw.value("SELECT waiters_until > now() FROM " + semaphores +
                         " WHERE name = 'handoff'") == "t";
      }));
      std::this_thread::sleep_for(5ms);  // let the waiter reach its sleep: not synchronisation
      auto released = steady::now();
      held->release();
      t.join();
      CHECK(token > held->token());
      ms.push_back(std::chrono::duration<double, std::milli>(
                       steady::time_point(steady::duration(got_at.load())) - released)
                       .count());
    }
    double p50 = percentile(ms, 0.5), p99 = percentile(ms, 0.99);
    std::printf("semaphore NOTIFY handoff (%s) on loopback, 15 rounds: p50 %.2f ms, p99 %.2f ms\n",
                fair ? "fair" : "not fair", p50, p99);
    CHECK(p50 < 50);  // without a wake-up the waiter would sleep up to 1-2 s
  }
}

TEST_CASE("a semaphore waiter's mark and a release in flight never miss each other") {
  postgresql_fixture db;
  auto b = sqlock::open_backend(db.url(), db.options().backend);
  pg_session raw(db.direct_url());
  const auto schema = raw.ident(db.schema());
  auto held = b->try_acquire_semaphore(sem_request("s", "holder", 1), soon());
  REQUIRE(held.granted);

  SUBCASE("the release goes first: the waiter's mark waits for it and then sees the room") {
    // What the release statement does, held open: end the holder, share-lock the semaphore.
    raw.query("BEGIN");
    raw.query("UPDATE " + schema + ".sqlock_semaphore_holders SET expires_at = now() "
              "WHERE name = 's' AND nonce = 'holder'");
    raw.query("SELECT waiters_until FROM " + schema + ".sqlock_semaphores WHERE name = 's' "
              "FOR SHARE");
    std::optional<sqlock::acquire_result> got;
    std::thread t([&] {
      got = b->try_acquire_semaphore(sem_request("s", "waiter", 1, 1, 30s, true), soon());
    });
    std::this_thread::sleep_for(200ms);  // the attempt looks (holder live), then marks: blocked
    CHECK_FALSE(got);
    raw.query("COMMIT");
    t.join();
    REQUIRE(got);
    CHECK_FALSE(got->granted);
    // Not "sleep until the holder's expiry" (30 s): no release will wake it, so at once.
    CHECK(got->holder_expires_in == 1ms);
    CHECK(b->try_acquire_semaphore(sem_request("s", "waiter", 1, 1, 30s, true), soon()).granted);
  }

  SUBCASE("nobody waits: the release does not notify") {
    auto observer = sqlock::open_backend(db.url(), db.options().backend);
    auto watch = observer->watch("s");
    REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
    CHECK(b->release(holder_key("s", "holder", held.granted->token), soon()));
    CHECK(watch->wait_until(steady::now() + 300ms) == sqlock::release_watch::wake::timeout);
  }

  SUBCASE("the mark goes first: the release finds the row locked and notifies at once") {
    auto observer = sqlock::open_backend(db.url(), db.options().backend);
    auto watch = observer->watch("s");
    REQUIRE(eventually([&] { return observer->wakes_other_processes(); }, 5s));
    raw.query("BEGIN");
    raw.query("UPDATE " + schema + ".sqlock_semaphores SET waiters_until = now() + "
              "interval '10 seconds' WHERE name = 's'");
    std::atomic<bool> done{false};
    bool ended = false;
    std::thread t([&] {
      ended = b->release(holder_key("s", "holder", held.granted->token), soon());
      done = true;
    });
    CHECK(eventually([&] { return done.load(); }, 2s));  // it does not wait for the marker
    t.join();
    CHECK(ended);
    raw.query("COMMIT");
    CHECK(watch->wait_until(steady::now() + 2s) == sqlock::release_watch::wake::notified);
  }
}

TEST_CASE("through PgBouncer without listen_url the listener notices it hears nothing") {
  sqlock_test::pgbouncer_fixture db;
  log_capture logs;
  auto o = db.options();
  o.backend.listen_url.clear();
  o.log = logs.hook();
  sqlock::client a(db.url(), o);
  sqlock::client b(db.url(), o);
  (void)b.get_backend()->watch("x");
  CHECK(eventually([&] { return logs.has(sqlock::log_level::warn, "LISTEN"); }, 5s));
  CHECK_FALSE(b.get_backend()->wakes_other_processes());
  // Waiting still works, by backoff.
  auto held = a.try_acquire("job");
  REQUIRE(held);
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);
    held->release();
  });
  auto got = b.try_acquire_for("job", 10s);
  t.join();
  CHECK(got);
}

TEST_CASE("notifications can be turned off by option, with a warning") {
  postgresql_fixture db;
  log_capture logs;
  auto o = db.options();
  o.backend.notifications = false;
  o.log = logs.hook();
  sqlock::client c(db.url(), o);
  (void)c.get_backend()->watch("x");
  CHECK_FALSE(c.get_backend()->wakes_other_processes());
  CHECK(logs.has(sqlock::log_level::warn, "notifications"));
}

TEST_CASE("with the connection stalled, on_lost fires within 100 ms of the safety deadline and "
          "the client's destructor does not hang") {
  postgresql_fixture db;
  auto parts = parse_test_url(db.direct_url());
  stall_proxy proxy(parts.host, parts.port);
  std::string url = "postgresql://" + parts.user + "@127.0.0.1:" + std::to_string(proxy.port()) +
                    "/" + parts.db;
  auto o = db.options();
  o.operation_timeout = 1s;
  auto c = std::make_unique<sqlock::client>(url, o);
  std::atomic<steady::time_point::rep> lost_at{0};
  sqlock::lock_options lo;
  lo.ttl = 1s;
  lo.on_lost = [&](const sqlock::lost_event&) {
    lost_at = steady::now().time_since_epoch().count();
  };
  auto l = c->try_acquire("job", lo);
  REQUIRE(l);
  std::this_thread::sleep_for(500ms);  // a renewal or two go through
  CHECK(l->state() == sqlock::lease_state::held);
  proxy.stall();
  // The local safety deadline, tracked from the lease's own remaining() (renewals in flight
  // at the stall may still have moved it).
  steady::time_point safe_until{};
  while (lost_at.load() == 0 && steady::now() < steady::now() + 10s) {
    auto rem = l->remaining();
    if (rem > 0ms) safe_until = steady::now() + rem;
    if (rem == 0ms && lost_at.load() == 0) {
      std::this_thread::sleep_for(1ms);
      if (steady::now() > safe_until + 2s) break;
      continue;
    }
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(lost_at.load() != 0);
  auto lag = std::chrono::duration<double, std::milli>(
                 steady::time_point(steady::duration(lost_at.load())) - safe_until)
                 .count();
  std::printf("stalled connection: on_lost %.1f ms after the safety deadline\n", lag);
  CHECK(lag < 100);
  CHECK(lag > -5);  // not before it either (1 ms sampling)
  CHECK(l->lost());
  auto start = steady::now();
  c.reset();  // releases what it holds within its operation timeout, then gives up
  auto took = steady::now() - start;
  std::printf("client destructor with a stalled connection: %.0f ms\n",
              std::chrono::duration<double, std::milli>(took).count());
  CHECK(took < 3s);
}

TEST_CASE("a server with synchronous_commit=off is reported through the log hook") {
  postgresql_fixture db;
  log_capture logs;
  auto o = db.options();
  o.log = logs.hook();
  sqlock::client c(with_params(db.url(), "options=-csynchronous_commit%3Doff"), o);
  CHECK(c.try_acquire("job"));
  CHECK(logs.has(sqlock::log_level::warn, "synchronous_commit"));
  log_capture quiet;
  auto q = db.options();
  q.log = quiet.hook();
  sqlock::client normal(db.url(), q);
  CHECK(normal.try_acquire("other"));
  CHECK_FALSE(quiet.contains("synchronous_commit"));
}

TEST_CASE("a search_path that does not name the schema changes nothing") {
  postgresql_fixture db;
  pg_session raw(db.direct_url());
  // Another sqlock schema, first on the session's search_path.
  const std::string decoy = "sqlock_decoy_" + std::to_string(::getpid());
  raw.query("DROP SCHEMA IF EXISTS " + decoy + " CASCADE");
  auto decoy_options = db.options();
  decoy_options.backend.schema = decoy;
  sqlock::client(db.url(), decoy_options).migrate();
  std::string url = with_params(db.url(), "options=-csearch_path%3D" + decoy);
  {
    sqlock::client c(url, db.options());
    auto l = c.try_acquire("job");
    REQUIRE(l);
    CHECK(raw.value("SELECT count(*) FROM " + raw.ident(db.schema()) + ".sqlock_locks") == "1");
    CHECK(raw.value("SELECT count(*) FROM " + decoy + ".sqlock_locks") == "0");
    CHECK(c.inspect("job")->token == l->token());
    CHECK(c.list().size() == 1);
    CHECK(c.purge(0ms) == 0);
  }
  raw.query("DROP SCHEMA " + decoy + " CASCADE");
}

TEST_CASE("a sequence that could cycle or cache is refused with schema_mismatch") {
  postgresql_fixture db;
  pg_session raw(db.direct_url());
  raw.query("ALTER SEQUENCE " + raw.ident(db.schema()) + ".sqlock_token_seq CYCLE");
  sqlock::client c(db.url(), db.options());
  try {
    (void)c.try_acquire("job");
    FAIL("expected schema_mismatch");
  } catch (const sqlock::error& e) {
    CHECK(e.code() == errc::schema_mismatch);
    CHECK(e.backend() == "postgresql");
  }
}

TEST_CASE("passwords never appear in messages") {
  const std::string secret = "s3cr3t-Pa55";
  for (const std::string& url :
       {"postgresql://someone:" + secret + "@127.0.0.1:1/db?connect_timeout=2",
        "host=127.0.0.1 port=1 user=someone password=" + secret + " dbname=db"}) {
    sqlock::client_options o;
    o.operation_timeout = 2s;
    sqlock::client c(url, o);
    CHECK(c.get_backend()->describe().find(secret) == std::string::npos);
    try {
      (void)c.try_acquire("job");
      FAIL("expected an error");
    } catch (const sqlock::error& e) {
      CHECK(e.code() == errc::unavailable);
      CHECK(std::string(e.what()).find(secret) == std::string::npos);
    }
  }
  try {
    (void)sqlock::open_backend("host=127.0.0.1 password=" + secret + " port='unterminated");
    FAIL("expected invalid_argument");
  } catch (const sqlock::error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK(std::string(e.what()).find(secret) == std::string::npos);
  }
}

TEST_CASE("serialization failures are retried inside the backend") {
  postgresql_fixture db;
  auto o = db.options();
  sqlock::client c(with_params(db.url(), "options=-cdefault_transaction_isolation%3Dserializable"),
                   o);
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        try {
          auto l = c.try_acquire_for("hot", 10s);
          if (l) l->release();
        } catch (const sqlock::error&) {
          ++errors;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
}

TEST_CASE("the renew-many JSON encoder quotes and escapes every string") {
  using sqlock::detail::pg::json_string;
  CHECK(json_string("plain") == "\"plain\"");
  CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_string("\n\t\x01\x1f\x7f") == "\"\\n\\t\\u0001\\u001f\\u007f\"");
  CHECK(json_string("") == "\"\"");
  // Round trip through the server's JSON parser.
  pg_session raw(required_env("SQLOCK_TEST_POSTGRESQL_URL"));
  for (std::string s : {std::string("caf\xc3\xa9 \xe2\x9c\x93"), std::string("\"},{\"n\":\"x"),
                        std::string("back\\slash\\"), std::string("ctl\x01\x02\x1b\x7f"),
                        std::string("\\u0041"), std::string(255, '"')}) {
    CHECK(raw.value("SELECT $1::json #>> '{}'", {json_string(s)}) == s);
  }
}

}  // TEST_SUITE
