// SPDX-License-Identifier: Apache-2.0
// Leader election (etcd's concurrency.Election, on a lease): three candidates campaign for
// "scheduler", publishing their address. The leader's term is its lease's fencing token, so the
// work it does can be fenced with it. An observer prints every change of leader; each leader
// resigns after a while and the next candidate takes over with a larger term.
//
// usage: leader DATABASE_URL

#include <cstdio>
#include <mutex>
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

    sqlock::client watcher(argv[1]);
    sqlock::election view(watcher, "scheduler");
    std::mutex mu;
    std::vector<std::int64_t> terms;
    auto observing = view.observe([&](const std::optional<sqlock::leader_info>& leader) {
      std::lock_guard<std::mutex> lock(mu);
      if (!leader) {
        std::puts("observer: no leader");
        return;
      }
      std::printf("observer: leader %s, term %lld\n", leader->value.c_str(),
                  static_cast<long long>(leader->term));
      terms.push_back(leader->term);
    });

    std::vector<std::thread> candidates;
    for (int i = 1; i <= 3; ++i) {
      candidates.emplace_back([&, i] {
        sqlock::client c(argv[1]);
        sqlock::lock_options lease;
        lease.ttl = 1s;  // a crashed leader is replaced within a second
        sqlock::election e(c, "scheduler", lease);
        std::int64_t term = e.campaign("10.0.0." + std::to_string(i) + ":8080");
        std::printf("candidate %d: elected, term %lld\n", i, static_cast<long long>(term));
        for (int tick = 0; tick < 3 && e.is_leader(); ++tick)
          std::this_thread::sleep_for(50ms);  // schedule work, fenced with `term`
        e.resign();
      });
    }
    for (auto& t : candidates) t.join();
    std::this_thread::sleep_for(100ms);  // let the observer see the last resignation
    observing.stop();
    std::lock_guard<std::mutex> lock(mu);
    bool increasing = terms.size() == 3;
    for (std::size_t i = 1; i < terms.size(); ++i)
      increasing = increasing && terms[i] > terms[i - 1];
    std::printf("%zu leaders observed, terms %s\n", terms.size(),
                increasing ? "strictly increasing" : "NOT increasing (BUG)");
    return increasing ? 0 : 1;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "leader: %s\n", e.what());
    return 1;
  }
}
