// SPDX-License-Identifier: Apache-2.0
// The BeeORM A/B scenario (BeeORM's Redis lock documentation, the A/B example): two workers want
// the same lock.
//  1. without a wait: A gets it, B is refused at once;
//  2. with a wait: B gets it right after A releases;
//  3. the lease's remaining time, and a refresh that sets it to a new ttl.
//
// usage: beeorm_ab DATABASE_URL      (e.g. sqlite:/tmp/ab.db; migrated here for the demo)

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <utility>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {

std::mutex out_mu;
void say(const char* fmt, const std::string& who, long long n = 0) {
  std::lock_guard<std::mutex> lock(out_mu);
  std::printf(fmt, who.c_str(), n);
  std::fflush(stdout);
}

// A one-shot gate so that B asks only after A holds the lock: the output is then the seed's.
struct gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
  }
};

bool test_lock(sqlock::client& locker, const std::string& name, std::chrono::milliseconds wait,
               gate* signal_when_held) {
  say("GETTING LOCK %s\n", name);
  sqlock::lock_options opts;
  opts.ttl = 1min;
  opts.metadata = "worker " + name;
  auto lock = locker.try_acquire_for("test_lock", wait, opts);
  if (!lock) {
    say("UNABLE TO GET LOCK %s\n", name);
    return false;
  }
  say("GOT LOCK %s (fencing token %lld)\n", name, lock->token());
  if (signal_when_held) signal_when_held->release();
  std::this_thread::sleep_for(500ms);  // the work
  say("RELEASING LOCK %s\n", name);
  lock->release();
  return true;
}

// Returns which of A and B got the lock.
std::pair<bool, bool> race(sqlock::client& a, sqlock::client& b, std::chrono::milliseconds wait) {
  gate a_holds;
  bool got_a = false, got_b = false;
  std::thread ta([&] { got_a = test_lock(a, "A", wait, &a_holds); });
  a_holds.wait();
  std::thread tb([&] { got_b = test_lock(b, "B", wait, nullptr); });
  ta.join();
  tb.join();
  return {got_a, got_b};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client a(argv[1]);  // two clients: think two instances of the app
    sqlock::client b(argv[1]);
    a.migrate();

    std::puts("-- without a wait: B is refused at once");
    if (race(a, b, 0ms) != std::pair{true, false}) return 1;
    std::puts("-- with a wait of up to 5s: B gets the lock when A releases it");
    if (race(a, b, 5s) != std::pair{true, true}) return 1;

    std::puts("-- the lease's remaining time, and a refresh");
    sqlock::lock_options opts;
    opts.ttl = 5s;
    opts.keepalive = false;  // like the seed: the lease runs down unless refreshed
    auto lock = a.try_acquire("test", opts);
    if (!lock) return 1;
    auto secs = [&] { return static_cast<long long>((lock->remaining() + 999ms) / 1s); };
    say("%sGOT LOCK FOR %lld SECONDS\n", "", secs());
    std::this_thread::sleep_for(1s);
    say("%sWILL EXPIRE IN %lld SECONDS\n", "", secs());
    std::this_thread::sleep_for(1s);
    say("%sWILL EXPIRE IN %lld SECONDS\n", "", secs());
    if (!lock->renew(2s)) {
      std::puts("LOST LOCK");
      return 1;
    }
    say("%sWILL EXPIRE IN %lld SECONDS\n", "", secs());
    if (secs() != 2) return 1;  // renew(ttl) sets the remaining time to ttl
    auto rec = b.inspect("test");
    say("%sthe database says it expires in %lld ms\n", "", rec ? rec->expires_in.count() : -1);
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "beeorm_ab: %s\n", e.what());
    return 1;
  }
  return 0;
}
