// SPDX-License-Identifier: Apache-2.0
// sqlock_fault_fence: the fenced resource, a separate process so that crashed or paused
// clients cannot affect it. It accepts a write only with a token at least the highest it has
// seen for that resource (sqlock::fence) and logs every request with its verdict.
//
// usage: sqlock_fault_fence --port-file FILE --log FILE
// protocol (one line each way, loopback TCP): "W <resource> <token> <lease>\n" ->
//   "OK\n" | "STALE <highest>\n"
// log lines: "<mono_ns> <resource> <token> <lease> OK|STALE"
// Stops on SIGTERM/SIGINT.

#include <poll.h>
#include <signal.h>

#include <csignal>
#include <iostream>
#include <string>
#include <unordered_map>
#include <vector>

#include <sqlock/fence.hpp>

#include "common.hpp"

int main(int argc, char** argv) {
  try {
    fault::args a(argc, argv);
    fault::stop_on_signals();
    int port = 0;
    int lfd = fault::listen_loopback(port);
    fault::history log(a.str("log"));
    sqlock::fence fence;
    std::unordered_map<int, std::string> inbuf;
    fault::write_file_atomically(a.str("port-file"), std::to_string(port) + "\n");
    while (!fault::stop_requested) {
      std::vector<pollfd> fds{{lfd, POLLIN, 0}};
      for (auto& [fd, buf] : inbuf) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) inbuf[c];
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        int fd = fds[i].fd;
        char buf[4096];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(fd);
          inbuf.erase(fd);
          continue;
        }
        std::string& in = inbuf[fd];
        in.append(buf, static_cast<std::size_t>(n));
        std::size_t nl;
        while ((nl = in.find('\n')) != std::string::npos) {
          auto f = fault::split(in.substr(0, nl), ' ');
          in.erase(0, nl + 1);
          std::string reply = "ERR\n";
          if (f.size() == 4 && f[0] == "W") {
            long long token = std::stoll(f[2]);
            bool ok = fence.accept(f[1], token);
            log.line("%s %lld %s %s", f[1].c_str(), token, f[3].c_str(), ok ? "OK" : "STALE");
            reply = ok ? "OK\n" : "STALE " + std::to_string(fence.highest(f[1])) + "\n";
          }
          ssize_t w = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
          (void)w;
        }
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "sqlock_fault_fence: " << e.what() << "\n";
    return 5;
  }
  return 0;
}
