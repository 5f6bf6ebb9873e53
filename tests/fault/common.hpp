// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared helpers of the fault suite's programs: one monotonic timeline, crash-safe history
// lines, loopback TCP plumbing and a tiny argument parser.
//
// Timeline: every timestamp is CLOCK_MONOTONIC in nanoseconds. All processes of a run are on
// one host, so the driver (Python's time.monotonic_ns) and every worker share it; faketime is
// run with FAKETIME_DONT_FAKE_MONOTONIC=1 so it never bends it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace fault {

inline std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

/// An append-only history file. Each line is written with one write(2) on an O_APPEND
/// descriptor, so a kill -9 loses at most the line being formatted, and lines of threads (and
/// processes sharing a file) never interleave. Thread safety: thread-safe.
class history {
 public:
  explicit history(const std::string& path) {
    if (path.empty()) return;
    fd_ = ::open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open history " + path);
  }
  ~history() {
    if (fd_ >= 0) ::close(fd_);
  }
  history(const history&) = delete;
  history& operator=(const history&) = delete;

  /// Writes "<mono_ns> <fields...>\n"; returns the timestamp used.
  std::int64_t line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    std::int64_t t = mono_ns();
    char buf[1024];
    int n = std::snprintf(buf, sizeof buf, "%lld ", static_cast<long long>(t));
    va_list ap;
    va_start(ap, fmt);
    int m = std::vsnprintf(buf + n, sizeof buf - static_cast<std::size_t>(n) - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    std::size_t len = std::min(sizeof buf - 2, static_cast<std::size_t>(n + m));
    buf[len++] = '\n';
    if (fd_ >= 0) {
      ssize_t w = ::write(fd_, buf, len);
      (void)w;
    }
    return t;
  }
  /// Like line() but with a timestamp taken by the caller.
  void at(std::int64_t t, const std::string& rest) {
    std::string s = std::to_string(t) + " " + rest + "\n";
    if (fd_ >= 0) {
      ssize_t w = ::write(fd_, s.data(), s.size());
      (void)w;
    }
  }

 private:
  int fd_ = -1;
};

/// A TCP socket (TCP_NODELAY) connected to `host` (an IPv4 address), or -1.
inline int connect_tcp(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
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

/// A connected loopback TCP socket (TCP_NODELAY), or -1.
inline int connect_loopback(int port) { return connect_tcp("127.0.0.1", port); }

/// Set by SIGTERM and SIGINT: the servers' loops end on it.
inline volatile std::sig_atomic_t stop_requested = 0;

/// SIGTERM and SIGINT end a server's loop (stop_requested); SIGPIPE is ignored, so that a peer
/// gone shows as a failed write.
inline void stop_on_signals() {
  std::signal(SIGTERM, [](int) { stop_requested = 1; });
  std::signal(SIGINT, [](int) { stop_requested = 1; });
  std::signal(SIGPIPE, SIG_IGN);
}

/// A listening loopback socket on a kernel-chosen port; returns the fd and sets `port`.
inline int listen_loopback(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 512) != 0)
    throw std::runtime_error("bind/listen on loopback failed");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

/// Writes `text` to `path` atomically (write a temp file, rename), for ports and ready marks.
inline void write_file_atomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
  }
}

/// "--key value" pairs and bare "--flag"s.
class args {
 public:
  args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string k = argv[i];
      if (k.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument " + k);
      if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0)
        values_[k.substr(2)] = argv[++i];
      else
        values_[k.substr(2)] = "1";
    }
  }
  std::string str(const std::string& k, const std::string& dflt = "") const {
    auto it = values_.find(k);
    return it == values_.end() ? dflt : it->second;
  }
  long num(const std::string& k, long dflt) const {
    auto it = values_.find(k);
    return it == values_.end() ? dflt : std::stol(it->second);
  }
  bool flag(const std::string& k) const { return values_.count(k) != 0; }

 private:
  std::map<std::string, std::string> values_;
};

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace fault
