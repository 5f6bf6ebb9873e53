// SPDX-License-Identifier: Apache-2.0
// A counting semaphore: six workers (each its own client, as six app instances would be) share
// an upstream API that allows three concurrent exports. Each export holds one unit of the
// semaphore "upstream-api" (limit 3) as a lease with its own fencing token; one big export
// takes two units. Waiting is fair: workers are served in arrival order. The example checks
// that the limit is never exceeded and prints how the units were shared.
//
// usage: export_slots DATABASE_URL

#include <algorithm>
#include <atomic>
#include <cstdio>
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

    std::atomic<std::int64_t> in_use{0}, most{0};
    std::atomic<bool> exceeded{false};
    std::vector<std::thread> workers;
    for (int w = 1; w <= 6; ++w) {
      workers.emplace_back([&, w] {
        sqlock::client c(argv[1]);
        sqlock::semaphore_options slot;
        slot.limit = 3;               // the upstream's concurrency limit
        slot.count = w == 6 ? 2 : 1;  // worker 6 runs a big export: two slots
        slot.fair = true;             // first come, first served
        slot.ttl = 2s;
        slot.metadata = "export by worker " + std::to_string(w);
        for (int round = 0; round < 3; ++round) {
          sqlock::lease units = c.acquire_semaphore("upstream-api", slot);
          auto now = in_use += units.count();
          most = std::max(most.load(), now);
          if (now > slot.limit) exceeded = true;
          std::printf("worker %d: export %d with %lld unit(s), token %lld, %lld/3 in use\n", w,
                      round + 1, static_cast<long long>(units.count()),
                      static_cast<long long>(units.token()), static_cast<long long>(now));
          std::this_thread::sleep_for(40ms);  // the export
          in_use -= units.count();
        }  // the lease's destructor releases the units
      });
    }
    // An operator's view, as `sqlock show upstream-api` prints it.
    std::this_thread::sleep_for(60ms);
    sqlock::client admin(argv[1]);
    if (auto s = admin.inspect_semaphore("upstream-api"))
      std::printf("upstream-api: %lld of %lld units held by %zu holders, %zu waiting\n",
                  static_cast<long long>(s->used), static_cast<long long>(s->limit),
                  s->holders.size(), s->waiters.size());
    for (auto& t : workers) t.join();
    std::printf("most units in use at once: %lld (limit 3)\n", static_cast<long long>(most.load()));
    return exceeded ? 1 : 0;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "export_slots: %s\n", e.what());
    return 1;
  }
}
