// SPDX-License-Identifier: Apache-2.0
#include "util.hpp"

#include <malloc.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

namespace bench {

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  if (rank > 0) --rank;
  return v[std::min(rank, v.size() - 1)];
}

double median_of(std::vector<double> v) { return percentile(v, 50); }

run_result run_workers(int threads, milliseconds duration, const setup_fn& setup, bool self_timed) {
  std::atomic<bool> stop{false};
  std::vector<worker_ctx> ctx(static_cast<std::size_t>(threads));
  std::vector<op_fn> ops(ctx.size());
  for (std::size_t i = 0; i < ctx.size(); ++i) {
    ctx[i].index = static_cast<int>(i);
    ctx[i].stop = &stop;
    ctx[i].lat_us.reserve(1 << 16);
    ops[i] = setup(ctx[i]);  // connects before the clock starts
  }
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  std::mutex err_mu;
  std::string err;
  for (std::size_t i = 0; i < ctx.size(); ++i) {
    pool.emplace_back([&, i] {
      auto& c = ctx[i];
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      try {
        if (self_timed) {
          ops[i](c);
          return;
        }
        while (!c.stopped()) {
          auto t0 = clk::now();
          ops[i](c);
          c.lat_us.push_back(us_between(t0, clk::now()));
          ++c.ops;
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (err.empty()) err = e.what();
        stop = true;
      }
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  auto start = clk::now();
  go = true;
  std::this_thread::sleep_for(duration);
  stop = true;
  for (auto& t : pool) t.join();
  auto end = clk::now();
  if (!err.empty()) throw failure(err);
  run_result r;
  r.seconds = std::chrono::duration<double>(end - start).count();
  for (auto& c : ctx) {
    r.ops += c.ops;
    r.events += c.events;
    r.lat_us.insert(r.lat_us.end(), c.lat_us.begin(), c.lat_us.end());
    r.extra_us.insert(r.extra_us.end(), c.extra_us.begin(), c.extra_us.end());
    r.third_us.insert(r.third_us.end(), c.third_us.begin(), c.third_us.end());
  }
  return r;
}

std::mt19937_64& rng() {
  thread_local std::mt19937_64 g{std::random_device{}()};
  return g;
}

std::string random_hex(std::size_t bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes * 2);
  auto& g = rng();
  for (std::size_t i = 0; i < bytes; i += 8) {
    auto x = g();
    for (std::size_t j = 0; j < 8 && i + j < bytes; ++j) {
      s.push_back(hex[(x >> 4) & 0xf]);
      s.push_back(hex[x & 0xf]);
      x >>= 8;
    }
  }
  return s;
}

std::int64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  long size = 0, resident = 0;
  f >> size >> resident;
  return static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

std::int64_t heap_bytes() {
  auto m = mallinfo2();
  return static_cast<std::int64_t>(m.uordblks + m.hblkhd);
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return tv(u.ru_utime) + tv(u.ru_stime);
}

double process_context_switches() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
}

double pid_cpu_seconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string all;
  if (!std::getline(f, all)) return -1;
  // Fields after the parenthesised command name (which may contain spaces).
  auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

child spawn(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) throw failure("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    throw failure("cannot start " + argv[0]);
  }
  return {pid, fds[0]};
}

std::string child::finish() {
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = read(out_fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(out_fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw failure("child process failed (status " + std::to_string(status) + "): " + out);
  return out;
}

std::string run_capture(const std::vector<std::string>& argv, int* status) {
  auto c = spawn(argv);
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = read(c.out_fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(c.out_fd);
  int st = 0;
  waitpid(c.pid, &st, 0);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  if (status) {
    *status = code;
  } else if (code != 0) {
    throw failure(argv[0] + " exited with " + std::to_string(code) + ": " + out);
  }
  return out;
}

std::map<std::string, std::string> parse_kv(const std::string& line) {
  std::map<std::string, std::string> m;
  std::istringstream in(line);
  std::string tok;
  while (in >> tok) {
    auto eq = tok.find('=');
    if (eq != std::string::npos) m[tok.substr(0, eq)] = tok.substr(eq + 1);
  }
  return m;
}

}  // namespace bench
