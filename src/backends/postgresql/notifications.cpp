// SPDX-License-Identifier: Apache-2.0
// How releases wake waiters with PostgreSQL: the LISTEN thread (`listener`, one per backend)
// that hands notified lock names to the watch registry, and the self-test it sends.

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "backends/postgresql/backend.hpp"
#include "backends/postgresql/rows.hpp"

namespace sqlock::detail::pg {

namespace {

constexpr const char* selftest_prefix = "\x01sqlock-selftest:";

// "<nonce> <token> <attempt> <acquired_us> <expires_us> <name>" (statements::release); the
// name comes last and may contain spaces. Empty when malformed (then nobody is woken: the
// waiter's next attempt finds the lock its own).
std::optional<std::pair<std::string, handoff>> parse_handoff(const std::string& payload) {
  std::size_t pos = 0;
  std::string field[5];
  for (auto& f : field) {
    auto sp = payload.find(' ', pos);
    if (sp == std::string::npos) return std::nullopt;
    f = payload.substr(pos, sp - pos);
    pos = sp + 1;
  }
  try {
    handoff h{field[0],
              grant{std::stoll(field[1]), from_epoch_us(std::stoll(field[3])),
                    from_epoch_us(std::stoll(field[4]))},
              std::stoll(field[2])};
    return std::make_pair(payload.substr(pos), std::move(h));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

void listener::deliver(const connection::notification& n, std::uint64_t epoch) {
  if (n.channel == owner_.handoff_channel()) {
    if (auto h = parse_handoff(n.payload)) {
      h->second.granted.server_epoch = epoch;
      owner_.registry().hand_off(h->first, h->second);
    }
    return;
  }
  if (n.payload.rfind(selftest_prefix, 0) == 0) return;
  owner_.registry().notify(n.payload);
}

listener::listener(postgresql_backend& owner) : owner_(owner) {
  if (::pipe(wake_) != 0) throw error(errc::internal, "postgresql: pipe() failed", kind_name);
  thread_ = std::thread([this] { run(); });
}

void listener::ensure_started(milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!wanted_) {
    wanted_ = true;
    cv_.notify_all();
  }
  if (wait <= milliseconds::zero()) return;
  cv_.wait_for(lock, wait, [&] { return verdict_; });
}

void listener::stop() noexcept {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  if (wake_[1] >= 0) {
    char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }
  if (thread_.joinable()) thread_.join();
  if (wake_[0] >= 0) ::close(wake_[0]);
  if (wake_[1] >= 0) ::close(wake_[1]);
  wake_[0] = wake_[1] = -1;
}

bool listener::sleep_interruptibly(milliseconds d) {
  pollfd p{wake_[0], POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(d.count())) == 0;
}

void listener::run() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return wanted_ || stopping_.load(); });
  }
  milliseconds backoff{0};
  bool first = true;
  while (!stopping_) {
    try {
      session(first);
      backoff = milliseconds{0};
    } catch (const std::exception& e) {
      works_ = false;
      if (stopping_) break;
      owner_.log(log_level::warn, std::string("postgresql: notification listener: ") + e.what() +
                                      "; waiters fall back to backoff until it reconnects");
      if (first) {
        std::lock_guard<std::mutex> lock(mu_);
        verdict_ = true;  // no need to hold up waiters: they poll with backoff meanwhile
        cv_.notify_all();
      }
    }
    first = false;
    backoff = std::min(milliseconds{2000}, std::max(milliseconds{50}, backoff * 2));
    if (!stopping_ && !sleep_interruptibly(jitter(backoff / 2, backoff))) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  verdict_ = true;
  cv_.notify_all();
}

void listener::session(bool first) {
  const std::string what = "listen";
  auto c =
      owner_.connect(steady::now() + milliseconds{5000}, what, &owner_.listen_info(), wake_[0]);
  c->exec_simple(what,
                 "LISTEN " + c->escape_identifier(owner_.channel()) + "; LISTEN " +
                     c->escape_identifier(owner_.handoff_channel()),
                 steady::now() + milliseconds{5000});
  static const milliseconds selftest_wait{300};
  bool verified = !first && works_.load();
  std::string expect;
  steady::time_point selftest_until{};
  if (!verified) {
    expect = selftest_prefix + random_hex(8);
    // Sent through the main URL, like a release: through PgBouncer in transaction mode the
    // listener then hears nothing and waiting falls back to backoff.
    owner_.notify_self(expect, steady::now() + milliseconds{2000});
    selftest_until = steady::now() + selftest_wait;
  } else {
    works_ = true;
  }
  auto last_traffic = steady::now();
  constexpr milliseconds idle_ping{10000};
  // After a failover another connection reaches the new primary first (a new server epoch):
  // this one, to the old server, would hear nothing more. Checked every second.
  constexpr milliseconds epoch_check{1000};
  while (!stopping_) {
    if (c->server_epoch != 0 && owner_.server_epoch() != c->server_epoch) {
      owner_.log(log_level::info,
                 "postgresql: notification listener: the server changed; reconnecting");
      return;
    }
    auto wake_at =
        std::min(verified ? last_traffic + idle_ping : selftest_until, steady::now() + epoch_check);
    bool got = c->wait_readable(wake_at, what);
    if (stopping_) return;
    if (got) last_traffic = steady::now();
    while (auto n = c->next_notification()) {
      if (n->channel == owner_.channel() && n->payload.rfind(selftest_prefix, 0) == 0) {
        if (!verified && n->payload == expect) {
          verified = true;
          works_ = true;
          deaf_ = false;
          std::lock_guard<std::mutex> lock(mu_);
          verdict_ = true;
          cv_.notify_all();
        }
        continue;
      }
      deliver(*n, c->server_epoch);
    }
    auto now = steady::now();
    if (!verified && now >= selftest_until) {
      works_ = false;
      deaf_ = true;
      owner_.log(log_level::warn,
                 "postgresql: LISTEN/NOTIFY does not reach this client (a pooler in transaction "
                 "mode?): waiters poll with backoff; point backend_options::listen_url at a "
                 "direct server connection to be woken by releases");
      {
        std::lock_guard<std::mutex> lock(mu_);
        verdict_ = true;
        cv_.notify_all();
      }
      // Nothing will arrive: idle until stopped, without holding a server connection.
      while (!stopping_ && sleep_interruptibly(milliseconds{60000})) {
      }
      return;
    }
    if (verified && !got && now >= last_traffic + idle_ping) {
      // A dead or stalled connection is only noticed by talking to it.
      c->exec_simple(what, "SELECT 1", now + milliseconds{5000});
      last_traffic = steady::now();
      while (auto n = c->next_notification()) deliver(*n, c->server_epoch);
    }
  }
}

// Used by the listener's self-test: notifies through the main URL, as a release would.
void postgresql_backend::notify_self(const std::string& payload, deadline until) {
  const std::string what = "notification self-test";
  auto c = checkout(until, what);
  run(*c, what, nullptr, sql().notify, {channel_, payload}, until);
}

}  // namespace sqlock::detail::pg
