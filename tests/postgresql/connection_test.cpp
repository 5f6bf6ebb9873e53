// SPDX-License-Identifier: Apache-2.0
// PostgreSQL only: the connection and the server around it. A stalled connection loses the
// lease on time and never hangs the client's destructor; server settings (synchronous_commit,
// search_path, default isolation, a sequence that could cycle) are reported, ignored or
// survived; passwords never appear in messages.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "support/fixtures.hpp"
#include "support/log_capture.hpp"

using namespace std::chrono_literals;
using sqlock::errc;
using namespace sqlock_test;
using steady = std::chrono::steady_clock;

namespace {

// URL with extra libpq parameters appended (the test URLs have no query string).
std::string with_params(const std::string& url, const std::string& params) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + params;
}

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

}  // namespace

TEST_SUITE("postgresql") {
  TEST_CASE(
      "with the connection stalled, on_lost fires within 100 ms of the safety deadline and "
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

  TEST_CASE(
      "a multi-host URL whose first server is frozen reaches the next one within "
      "connect_timeout, and says why when every one is frozen") {
    postgresql_fixture db;
    auto u = parse_test_url(db.url());
    stall_proxy frozen(u.host, u.port);  // accepts, then answers nothing: a SIGSTOPped primary
    frozen.stall();
    stall_proxy frozen2(u.host, u.port);
    frozen2.stall();
    auto url = [&](int first, int second) {
      return "postgresql://" + u.user + "@" + u.host + ":" + std::to_string(first) + "," + u.host +
             ":" + std::to_string(second) + "/" + u.db + "?connect_timeout=2";
    };
    auto o = db.options();
    o.operation_timeout = 10s;
    auto t0 = steady::now();
    {
      sqlock::client c(url(frozen.port(), u.port), o);
      CHECK(c.try_acquire("multi"));
    }
    auto took = steady::now() - t0;
    CHECK(took >= 1900ms);  // the frozen host had its 2 s
    CHECK(took < 6s);       // and only those: not the whole operation timeout
    t0 = steady::now();
    try {
      sqlock::client c(url(frozen.port(), frozen2.port()), o);
      (void)c.try_acquire("multi");
      FAIL("connected to a frozen server");
    } catch (const sqlock::error& e) {
      CHECK(e.code() == errc::unavailable);
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(std::string(e.what()).find("host 1: timed out") != std::string::npos);
      CHECK(std::string(e.what()).find("host 2: timed out") != std::string::npos);
    }
    CHECK(steady::now() - t0 < 12s);
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
    sqlock::client c(
        with_params(db.url(), "options=-cdefault_transaction_isolation%3Dserializable"), o);
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

}  // TEST_SUITE
