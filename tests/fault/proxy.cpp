// sqlock_fault_proxy: a loopback TCP proxy between clients and PostgreSQL that can pass,
// delay, stall (keep every socket open, forward nothing: like a hung middlebox, the kernel
// still acknowledges bytes so TCP keepalives never fire) and drop connections, switched at run
// time through a control port.
//
// usage: sqlock_fault_proxy --target-port P [--target-host 127.0.0.1] --port-file FILE
//          (FILE gets "<proxy port> <control port>")
// control (one line per command on the control port, answered "ok <mode>\n"):
//   pass | delay <ms> | stall | drop (close every open connection; new ones pass) |
//   refuse (close every open connection and every new one) | count (open connections)
// Stops on SIGTERM/SIGINT.

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <deque>
#include <iostream>
#include <list>
#include <string>
#include <vector>

#include "common.hpp"

namespace {
volatile std::sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }

struct chunk {
  std::int64_t due_ns;
  std::string bytes;
};
struct pair {
  int fd[2];                  // 0 client, 1 server
  std::deque<chunk> queue[2];  // bytes read from fd[i], waiting to go to fd[1 - i]
  bool closing = false;
};

enum class mode { pass, delay, stall, refuse };

int connect_target(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    fault::args a(argc, argv);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    const std::string host = a.str("target-host", "127.0.0.1");
    const int target = static_cast<int>(a.num("target-port", 0));
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
    auto close_all = [&] {
      for (auto& p : pairs) {
        ::close(p.fd[0]);
        ::close(p.fd[1]);
      }
      pairs.clear();
    };
    while (!stop) {
      std::vector<pollfd> fds{{lfd, POLLIN, 0}, {cfd, POLLIN, 0}};
      for (int c : controls) fds.push_back({c, POLLIN, 0});
      const std::size_t first_pair = fds.size();
      std::int64_t now = fault::mono_ns();
      int timeout_ms = 50;
      for (auto& p : pairs) {
        for (int i = 0; i < 2; ++i) {
          short ev = 0;
          if (m != mode::stall) ev |= POLLIN;
          if (m != mode::stall && !p.queue[1 - i].empty()) {
            if (p.queue[1 - i].front().due_ns <= now)
              ev |= POLLOUT;
            else
              timeout_ms = std::min<int>(
                  timeout_ms, static_cast<int>((p.queue[1 - i].front().due_ns - now) / 1000000) + 1);
          }
          fds.push_back({p.fd[i], ev, 0});
        }
      }
      if (::poll(fds.data(), fds.size(), timeout_ms) < 0) continue;
      now = fault::mono_ns();
      // Pairs first (their pollfd indices refer to the list as it was).
      std::size_t k = first_pair;
      for (auto it = pairs.begin(); it != pairs.end(); k += 2) {
        pair& p = *it;
        bool dead = false;
        for (int i = 0; i < 2 && !dead; ++i) {
          const pollfd& pf = fds[k + static_cast<std::size_t>(i)];
          if (m != mode::stall && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[16384];
            ssize_t n = ::recv(p.fd[i], buf, sizeof buf, 0);
            if (n <= 0) {
              p.closing = true;
            } else {
              p.queue[i].push_back({now + (m == mode::delay ? delay_ns : 0),
                                    std::string(buf, static_cast<std::size_t>(n))});
            }
          }
          // Send what is due toward fd[i] (from the other side's queue).
          auto& q = p.queue[1 - i];
          while (m != mode::stall && !q.empty() && q.front().due_ns <= now) {
            ssize_t w = ::send(p.fd[i], q.front().bytes.data(), q.front().bytes.size(),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) {
              if (errno == EAGAIN) break;
              dead = true;
              break;
            }
            q.front().bytes.erase(0, static_cast<std::size_t>(w));
            if (q.front().bytes.empty()) q.pop_front();
          }
        }
        if (dead || (p.closing && p.queue[0].empty() && p.queue[1].empty())) {
          ::close(p.fd[0]);
          ::close(p.fd[1]);
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
          int s = m == mode::refuse ? -1 : connect_target(host, target);
          if (s < 0) {
            ::close(c);
          } else {
            pair p;
            p.fd[0] = c;
            p.fd[1] = s;
            pairs.push_back(std::move(p));
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
            delay_ns = std::stoll(f[1]) * 1000000;
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
          } else {
            reply = "error unknown command";
          }
          reply += "\n";
          ssize_t w = ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
          (void)w;
        }
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "sqlock_fault_proxy: " << e.what() << "\n";
    return 5;
  }
  return 0;
}
