// SPDX-License-Identifier: Apache-2.0
// One of several processes contending for one lock, for scripts/demo: each round it waits for
// the lock, "works" while holding it, and releases it. Run two side by side and watch them take
// turns, each grant with a larger fencing token.
//
// usage: contend DATABASE_URL TAG [ROUNDS]

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DATABASE_URL TAG [ROUNDS]\n", argv[0]);
    return 64;
  }
  const std::string tag = argv[2];
  const int rounds = argc > 3 ? std::stoi(argv[3]) : 3;
  try {
    sqlock::client_options co;
    co.owner = "demo-" + tag;
    sqlock::client c(argv[1], co);
    sqlock::lock_options opts;
    opts.ttl = 2s;
    opts.metadata = "demo process " + tag;
    for (int i = 1; i <= rounds; ++i) {
      if (auto busy = c.try_acquire("nightly-report", opts)) {
        std::printf("[%s] got the lock at once      token %lld\n", tag.c_str(),
                    static_cast<long long>(busy->token()));
        std::fflush(stdout);
        std::this_thread::sleep_for(300ms);
        busy->release();
        std::this_thread::sleep_for(400ms);  // the rest of the job, outside the lock
        continue;
      }
      auto holder = c.inspect("nightly-report");
      // expires_in is the holder's lease (renewed while it works), not how long it will work:
      // its release hands the lock over sooner.
      std::printf("[%s] busy: held by %s (lease good for %lld ms unless released); waiting\n",
                  tag.c_str(), holder ? holder->owner.c_str() : "?",
                  holder ? static_cast<long long>(holder->expires_in.count()) : 0LL);
      std::fflush(stdout);
      const auto asked = std::chrono::steady_clock::now();
      sqlock::lease l = c.acquire("nightly-report", opts);
      std::printf("[%s] got the lock after waiting %lld ms, token %lld\n", tag.c_str(),
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - asked)
                                             .count()),
                  static_cast<long long>(l.token()));
      std::fflush(stdout);
      std::this_thread::sleep_for(300ms);  // the work, protected by token l.token()
      l.release();
      std::this_thread::sleep_for(400ms);  // the rest of the job, outside the lock
    }
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "[%s] %s\n", tag.c_str(), e.what());
    return 1;
  }
  return 0;
}
