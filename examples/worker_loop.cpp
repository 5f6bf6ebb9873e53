// SPDX-License-Identifier: Apache-2.0
// The YDB worker loop (the worker loop of YDB's coordination-service documentation): acquire the
// lock, process while the lease holds, stop processing the moment it is lost, acquire it again.
// Here an operator breaks the lock once
// (`force_release`, what `sqlock release NAME --force` does) to show the loop recovering with
// a new, larger fencing token.
//
// usage: worker_loop DATABASE_URL

#include <atomic>
#include <cstdio>
#include <thread>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client worker(argv[1]);
    worker.migrate();

    std::atomic<bool> broken{false};
    std::thread operator_([&] {
      sqlock::client admin(argv[1]);
      std::this_thread::sleep_for(700ms);
      if (admin.force_release("queue-consumer")) {
        std::puts("operator: force released queue-consumer");
        broken = true;
      }
    });

    int sessions = 0, items = 0;
    std::int64_t last_token = 0;
    while (sessions < 2) {
      sqlock::lock_options opts;
      opts.ttl = 600ms;  // short, so a loss is noticed quickly (keepalive renews every 200 ms)
      opts.on_lost = [](const sqlock::lost_event& e) {
        std::printf("lease on %s (token %lld) lost: %s\n", e.name.c_str(),
                    static_cast<long long>(e.token), e.reason.c_str());
      };
      sqlock::lease lease = worker.acquire("queue-consumer", opts);
      ++sessions;
      std::printf("session %d: lock acquired, token %lld\n", sessions,
                  static_cast<long long>(lease.token()));
      if (lease.token() <= last_token) return 1;  // fencing tokens only go up
      last_token = lease.token();
      int processed = 0;
      // Process while the lease holds; lease.lost() is a local check, no round trip.
      while (!lease.lost() && processed < 10) {
        std::this_thread::sleep_for(100ms);  // one item of work
        ++processed;
        ++items;
      }
      std::printf("session %d: %s after %d items\n", sessions,
                  lease.lost() ? "lost the lease, stopped processing" : "done", processed);
    }
    operator_.join();
    std::printf("processed %d items in %d sessions\n", items, sessions);
    return broken ? 0 : 1;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "worker_loop: %s\n", e.what());
    return 1;
  }
}
