// A separate process contending for one lock, for the multi-process tests (started with
// posix_spawn, never by forking a threaded test process). Inside each critical section it
// proves exclusion with an O_EXCL marker file, increments a counter kept in a plain file (a
// lost update shows as a short count) and appends its fencing token to a log.
//
// usage: sqlock_test_worker --url URL [--schema S] --name NAME --iterations N --dir DIR
//                           [--ttl-ms T] [--hold-us U]
// exit: 0 ok, 2 usage, 3 overlap seen, 4 lease lost inside the critical section, 5 error

#include <fcntl.h>
#include <sqlock/sqlock.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  std::string url, schema, name, dir;
  long iterations = 0, ttl_ms = 5000, hold_us = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--url") url = v;
    else if (k == "--schema") schema = v;
    else if (k == "--name") name = v;
    else if (k == "--dir") dir = v;
    else if (k == "--iterations") iterations = std::stol(v);
    else if (k == "--ttl-ms") ttl_ms = std::stol(v);
    else if (k == "--hold-us") hold_us = std::stol(v);
    else return 2;
  }
  if (url.empty() || name.empty() || dir.empty() || iterations <= 0) return 2;
  try {
    sqlock::client_options o;
    if (!schema.empty()) o.backend.schema = schema;
    sqlock::client c(url, o);
    sqlock::lock_options lo;
    lo.ttl = std::chrono::milliseconds{ttl_ms};
    const std::string marker = dir + "/inside", counter = dir + "/counter", log = dir + "/tokens";
    for (long i = 0; i < iterations; ++i) {
      auto l = c.acquire(name, lo);
      int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
      if (fd < 0) {
        std::cerr << "overlap: marker exists at iteration " << i << "\n";
        return 3;
      }
      ::close(fd);
      long value = 0;
      if (FILE* f = std::fopen(counter.c_str(), "r")) {
        if (std::fscanf(f, "%ld", &value) != 1) value = 0;
        std::fclose(f);
      }
      std::this_thread::sleep_for(std::chrono::microseconds{hold_us});
      if (FILE* f = std::fopen(counter.c_str(), "w")) {
        std::fprintf(f, "%ld\n", value + 1);
        std::fclose(f);
      }
      std::string line = std::to_string(l.token()) + "\n";
      int lf = ::open(log.c_str(), O_CREAT | O_APPEND | O_WRONLY, 0600);
      if (lf < 0 || ::write(lf, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        return 5;
      ::close(lf);
      if (!l) {
        std::cerr << "lease lost inside the critical section\n";
        return 4;
      }
      ::unlink(marker.c_str());
      l.release();
    }
  } catch (const std::exception& e) {
    std::cerr << "worker: " << e.what() << "\n";
    return 5;
  }
  return 0;
}
