// SPDX-License-Identifier: Apache-2.0
// A readers/writer lock: many readers of a shared configuration may work at once, a writer
// excludes them all. sqlock::shared_mutex is SharedTimedLockable, so std::shared_lock and
// std::unique_lock work with it; underneath it is the semaphore "config" with limit
// sqlock::max_semaphore_limit (a reader takes 1 unit, a writer all of them), which is also
// what `sqlock run config --shared` / `--exclusive` take.
//
// usage: config_rw DATABASE_URL

#include <atomic>
#include <cstdio>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client(argv[1]).migrate();
    std::atomic<int> readers{0}, max_readers{0}, writers{0};
    std::atomic<bool> broken{false};

    auto reader = [&](int id) {
      sqlock::client c(argv[1]);
      sqlock::shared_mutex config(c, "config", {}, /*fair=*/true);
      for (int i = 0; i < 4; ++i) {
        std::shared_lock<sqlock::shared_mutex> read(config);
        int now = ++readers;
        if (writers.load() != 0) broken = true;  // a writer must exclude every reader
        if (now > max_readers) max_readers = now;
        std::this_thread::sleep_for(30ms);
        --readers;
        (void)id;
      }
    };
    auto writer = [&] {
      sqlock::client c(argv[1]);
      sqlock::shared_mutex config(c, "config", {}, /*fair=*/true);
      for (int i = 0; i < 2; ++i) {
        std::this_thread::sleep_for(50ms);
        std::unique_lock<sqlock::shared_mutex> write(config);
        ++writers;
        if (readers.load() != 0) broken = true;
        std::printf("writer: updating the configuration under token %lld\n",
                    static_cast<long long>(config.token()));
        std::this_thread::sleep_for(30ms);
        --writers;
      }
    };
    std::vector<std::thread> threads;
    for (int r = 0; r < 4; ++r) threads.emplace_back(reader, r);
    threads.emplace_back(writer);
    for (auto& t : threads) t.join();
    std::printf("readers at once: up to %d; a writer overlapped a reader: %s\n", max_readers.load(),
                broken ? "yes (BUG)" : "never");
    return broken || max_readers < 2 ? 1 : 0;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "config_rw: %s\n", e.what());
    return 1;
  }
}
