// SPDX-License-Identifier: Apache-2.0
// sqlock_fault_proxy: a loopback TCP proxy between clients and PostgreSQL that can pass,
// delay, stall (keep every socket open, forward nothing: like a hung middlebox, the kernel
// still acknowledges bytes so TCP keepalives never fire) and drop connections, hold a
// statement back and deliver it late, and play the nemesis, switched at run time
// through a control port.
//
// usage: sqlock_fault_proxy --target-port P [--target-host 127.0.0.1] --port-file FILE
//          [--stats-file FILE (the `stats` line, written at exit)]
//          (FILE gets "<proxy port> <control port>")
// control (one line per command on the control port, answered "ok ...\n"):
//   pass | delay <ms> | stall | drop (close every open connection; new ones pass) |
//   refuse (close every open connection and every new one) | count (open connections) |
//   hold [TEXT] (the next client->server chunk containing TEXT (any chunk without it), on
//     whichever connection, and everything after it on that connection, is held until
//     `flush`, or 60 s at most) |
//   flush (deliver what `hold` held; answers "ok <bytes>") |
//   nemesis <seed> <hold> <delay> <cut> <hold_max_ms> <delay_max_ms> (per mille, per chunk,
//     from a RNG seeded with <seed>: a client->server chunk is held back hold_max/2..hold_max
//     ms, with everything after it on its connection (a late packet), or cut; a
//     server->client chunk is delayed delay_max/2..delay_max ms, or cut; a cut forwards a
//     prefix of the chunk and then closes both sides; the rest pass) | nemesis off |
//   stats ("ok connections=.. chunks=.. pass=.. hold=.. delay=.. cut=.. late_after_close=..
//     late_reply_bytes=.. listen_connections=.. listen_actions=..": what fired;
//     late_after_close counts held chunks delivered after their client had closed,
//     late_reply_bytes what the server answered to those; listen_* the connections on which
//     the client sent LISTEN (the backend's listener) and the actions that fired on them)
// Held bytes are delivered even when the client closed its end meanwhile, as a late packet
// would be: then the proxy shuts down its write side toward the server and reads the server's
// answer (at most 5 s) before closing. Every delay is bounded; stops on SIGTERM/SIGINT.

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <deque>
#include <iostream>
#include <limits>
#include <list>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"

namespace {
constexpr std::int64_t ms_ns = 1000000;
constexpr std::int64_t held_until_flush = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t hold_bound_ns = 60000 * ms_ns;  // `hold` without `flush`
constexpr std::int64_t drain_bound_ns = 5000 * ms_ns;  // the server's answer to a late packet

struct chunk {
  std::int64_t due_ns;
  std::string bytes;
  bool cut_after = false;  // close both sides once this chunk is sent
  bool late = false;       // held by `hold` or the nemesis
};
struct pair {
  int fd[2];                   // 0 client, 1 server
  std::deque<chunk> queue[2];  // bytes read from fd[i], waiting to go to fd[1 - i]
  bool eof[2] = {false, false};
  bool cutting = false;           // a cut is queued: read nothing more
  bool listener = false;          // the client sent LISTEN on it (the backend's listener)
  bool late_after_close = false;  // held bytes reached the server after the client had gone
  std::int64_t drain_until = 0;   // write side to the server shut down; reading its answer
  std::int64_t held_since = 0;    // a `hold` chunk is queued (bounded by hold_bound_ns)
};

enum class mode { pass, delay, stall, refuse };

struct nemesis {
  bool on = false;
  std::mt19937_64 rng;
  long hold = 0, delay = 0, cut = 0;  // per mille
  std::int64_t hold_max_ns = 0, delay_max_ns = 0;
};

struct counters {
  long long connections = 0, chunks = 0, pass = 0, hold = 0, delay = 0, cut = 0,
            late_after_close = 0, late_reply_bytes = 0, listen_connections = 0, listen_actions = 0;
  std::string line() const {
    return "connections=" + std::to_string(connections) + " chunks=" + std::to_string(chunks) +
           " pass=" + std::to_string(pass) + " hold=" + std::to_string(hold) +
           " delay=" + std::to_string(delay) + " cut=" + std::to_string(cut) +
           " late_after_close=" + std::to_string(late_after_close) +
           " late_reply_bytes=" + std::to_string(late_reply_bytes) +
           " listen_connections=" + std::to_string(listen_connections) +
           " listen_actions=" + std::to_string(listen_actions);
  }
};

std::int64_t uniform_ns(std::mt19937_64& rng, std::int64_t max_ns) {
  const std::int64_t lo = max_ns / 2;
  return lo + static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(max_ns - lo + 1));
}
}  // namespace

int main(int argc, char** argv) {
  try {
    fault::args a(argc, argv);
    fault::stop_on_signals();
    const std::string host = a.str("target-host", "127.0.0.1");
    const int target = static_cast<int>(a.num("target-port", 0));
    const std::string stats_file = a.str("stats-file");
    int port = 0, cport = 0;
    int lfd = fault::listen_loopback(port);
    int cfd = fault::listen_loopback(cport);
    fault::write_file_atomically(a.str("port-file"),
                                 std::to_string(port) + " " + std::to_string(cport) + "\n");
    std::list<pair> pairs;
    std::vector<int> controls;
    std::string control_in;
    mode m = mode::pass;
    std::int64_t delay_ns = 0;
    bool hold_armed = false;
    std::string hold_text;  // what the chunk to hold contains (a statement's name)
    nemesis nem;
    counters count;
    auto close_pair = [](pair& p) {
      ::close(p.fd[0]);
      ::close(p.fd[1]);
    };
    auto close_all = [&] {
      for (auto& p : pairs) close_pair(p);
      pairs.clear();
    };
    // What happens to a chunk just read from fd[side].
    auto admit = [&](pair& p, int side, std::string bytes, std::int64_t now) {
      ++count.chunks;
      if (side == 0 && !p.listener && bytes.find("LISTEN ") != std::string::npos) {
        p.listener = true;
        ++count.listen_connections;
      }
      const long long before = count.hold + count.delay + count.cut;
      const bool to_hold = side == 0 && hold_armed &&
                           (hold_text.empty() || bytes.find(hold_text) != std::string::npos);
      chunk c{now + (m == mode::delay ? delay_ns : 0), std::move(bytes)};
      if (to_hold) {
        hold_armed = false;
        c.due_ns = held_until_flush;
        c.late = true;
        p.held_since = now;
        ++count.hold;
      } else if (nem.on) {
        const long r = static_cast<long>(nem.rng() % 1000);
        const long slow = side == 0 ? nem.hold : nem.delay;
        if (r < slow) {
          c.due_ns = now + uniform_ns(nem.rng, side == 0 ? nem.hold_max_ns : nem.delay_max_ns);
          c.late = side == 0;
          ++(side == 0 ? count.hold : count.delay);
        } else if (r < slow + nem.cut) {
          // Part of a message, then nothing: the other end sees a torn statement or reply.
          c.bytes.resize(c.bytes.size() > 1 ? 1 + nem.rng() % (c.bytes.size() - 1) : 0);
          c.cut_after = true;
          p.cutting = true;
          ++count.cut;
        } else {
          ++count.pass;
        }
      } else {
        ++count.pass;
      }
      if (p.listener && count.hold + count.delay + count.cut != before) ++count.listen_actions;
      p.queue[side].push_back(std::move(c));
    };
    while (!fault::stop_requested) {
      std::vector<pollfd> fds{{lfd, POLLIN, 0}, {cfd, POLLIN, 0}};
      for (int c : controls) fds.push_back({c, POLLIN, 0});
      const std::size_t first_pair = fds.size();
      std::int64_t now = fault::mono_ns();
      int timeout_ms = 50;
      for (auto& p : pairs) {
        for (int i = 0; i < 2; ++i) {
          short ev = 0;
          if (m != mode::stall && !p.eof[i] && !p.cutting) ev |= POLLIN;
          const auto& q = p.queue[1 - i];
          if (m != mode::stall && !q.empty() && !p.eof[i]) {
            if (q.front().due_ns <= now)
              ev |= POLLOUT;
            else if (q.front().due_ns != held_until_flush)
              timeout_ms =
                  std::min<int>(timeout_ms, static_cast<int>((q.front().due_ns - now) / ms_ns) + 1);
          }
          // A side nobody listens to any more is left out (a closed peer would wake poll).
          fds.push_back({ev ? p.fd[i] : -1, ev, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0) continue;
      now = fault::mono_ns();
      // Pairs first (their pollfd indices refer to the list as it was).
      std::size_t k = first_pair;
      for (auto it = pairs.begin(); it != pairs.end(); k += 2) {
        pair& p = *it;
        bool dead = false, cut = false;
        if (p.held_since && now - p.held_since > hold_bound_ns) {
          for (auto& c : p.queue[0])
            if (c.due_ns == held_until_flush) c.due_ns = now;
          p.held_since = 0;
        }
        for (int i = 0; i < 2 && !dead && !cut; ++i) {
          const pollfd& pf = fds[k + static_cast<std::size_t>(i)];
          if ((pf.events & POLLIN) && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[16384];
            ssize_t n = ::recv(p.fd[i], buf, sizeof buf, 0);
            if (n <= 0) {
              p.eof[i] = true;
              // Nobody reads replies to a client that has gone.
              if (i == 0) p.queue[1].clear();
            } else if (i == 1 && p.eof[0]) {
              count.late_reply_bytes += n;  // the server answering a late statement
            } else {
              admit(p, i, std::string(buf, static_cast<std::size_t>(n)), now);
            }
          }
          // Send what is due toward fd[i] (from the other side's queue).
          auto& q = p.queue[1 - i];
          while (m != mode::stall && !p.eof[i] && !q.empty() && q.front().due_ns <= now) {
            ssize_t w = q.front().bytes.empty()
                            ? 0
                            : ::send(p.fd[i], q.front().bytes.data(), q.front().bytes.size(),
                                     MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) {
              if (errno == EAGAIN) break;
              dead = true;
              break;
            }
            q.front().bytes.erase(0, static_cast<std::size_t>(w));
            if (!q.front().bytes.empty()) continue;
            if (i == 1 && q.front().late && p.eof[0] && !p.late_after_close) {
              p.late_after_close = true;
              ++count.late_after_close;
            }
            if (q.front().cut_after) cut = true;
            q.pop_front();
            if (cut) break;
          }
        }
        bool done = dead || cut;
        if (!done && p.eof[1] && p.queue[1].empty()) done = true;  // the server has gone
        if (!done && p.eof[0] && p.queue[0].empty()) {
          if (!p.late_after_close) {
            done = true;
          } else if (p.drain_until == 0) {
            // A late statement reached the server after its client had gone: let the server
            // see the end of the stream, execute, and answer, as after a real late packet.
            ::shutdown(p.fd[1], SHUT_WR);
            p.drain_until = now + drain_bound_ns;
          } else if (now > p.drain_until) {
            done = true;
          }
        }
        if (done) {
          close_pair(p);
          it = pairs.erase(it);
        } else {
          ++it;
        }
      }
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          int s = m == mode::refuse ? -1 : fault::connect_tcp(host, target);
          if (s < 0) {
            ::close(c);
          } else {
            pair p;
            p.fd[0] = c;
            p.fd[1] = s;
            pairs.push_back(std::move(p));
            ++count.connections;
          }
        }
      }
      if (fds[1].revents & POLLIN) {
        int c = ::accept4(cfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) controls.push_back(c);
      }
      for (std::size_t i = 2; i < first_pair; ++i) {
        if (!fds[i].revents) continue;
        int c = fds[i].fd;
        char buf[256];
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(c);
          controls.erase(std::find(controls.begin(), controls.end(), c));
          break;  // indices shifted: poll again
        }
        control_in.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = control_in.find('\n')) != std::string::npos) {
          auto f = fault::split(control_in.substr(0, nl), ' ');
          control_in.erase(0, nl + 1);
          std::string reply = "ok";
          if (f.empty()) continue;
          if (f[0] == "pass") {
            m = mode::pass;
          } else if (f[0] == "delay" && f.size() == 2) {
            m = mode::delay;
            delay_ns = std::stoll(f[1]) * ms_ns;
          } else if (f[0] == "stall") {
            m = mode::stall;
          } else if (f[0] == "drop") {
            close_all();
            m = mode::pass;
          } else if (f[0] == "refuse") {
            close_all();
            m = mode::refuse;
          } else if (f[0] == "count") {
            reply = "ok " + std::to_string(pairs.size());
          } else if (f[0] == "hold" && f.size() <= 2) {
            hold_armed = true;
            hold_text = f.size() == 2 ? f[1] : "";
          } else if (f[0] == "flush") {
            std::size_t bytes = 0;
            const std::int64_t t = fault::mono_ns();
            for (auto& p : pairs) {
              for (auto& ch : p.queue[0]) {
                if (ch.due_ns != held_until_flush) continue;
                ch.due_ns = t;
                bytes += ch.bytes.size();
              }
              p.held_since = 0;
            }
            hold_armed = false;
            reply = "ok " + std::to_string(bytes);
          } else if (f[0] == "nemesis" && f.size() == 2 && f[1] == "off") {
            nem.on = false;
          } else if (f[0] == "nemesis" && f.size() == 7) {
            nem.on = true;
            nem.rng.seed(static_cast<std::uint64_t>(std::stoll(f[1])));
            nem.hold = std::clamp(std::stol(f[2]), 0L, 1000L);
            nem.delay = std::clamp(std::stol(f[3]), 0L, 1000L - nem.hold);
            nem.cut = std::clamp(std::stol(f[4]), 0L, 1000L - std::max(nem.hold, nem.delay));
            // Bounded, and never zero (uniform_ns draws from max/2..max).
            nem.hold_max_ns = std::clamp(std::stoll(f[5]), 2LL, 30000LL) * ms_ns;
            nem.delay_max_ns = std::clamp(std::stoll(f[6]), 2LL, 30000LL) * ms_ns;
          } else if (f[0] == "stats") {
            reply = "ok " + count.line();
          } else {
            reply = "error unknown command";
          }
          reply += "\n";
          ssize_t w = ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
          (void)w;
        }
      }
    }
    close_all();
    if (!stats_file.empty()) fault::write_file_atomically(stats_file, count.line() + "\n");
  } catch (const std::exception& e) {
    std::cerr << "sqlock_fault_proxy: " << e.what() << "\n";
    return 5;
  }
  return 0;
}
