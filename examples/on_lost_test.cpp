// SPDX-License-Identifier: Apache-2.0
// Testing your own code's loss handling, as an application would: a small exporter that writes
// batches while it holds the lock "export" and must stop the moment its lease is lost, tested
// with the in-memory backend and the fault injector of <sqlock/testing.hpp> (no database, each
// case in milliseconds). The exporter is the code under test; the TEST_CASEs are the user's.
//
// usage: on_lost_test [doctest options]

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <sqlock/sqlock.hpp>
#include <sqlock/testing.hpp>

using namespace std::chrono_literals;

// ---- the application's code ----------------------------------------------------------------

/// Writes batches to `out` while it holds the lock "export"; stops for good once the lease is
/// lost, remembering why. Each batch carries the fencing token it was written under.
class exporter {
 public:
  exporter(sqlock::client& c, std::vector<std::string>& out) : client_(c), out_(out) {}

  bool start(std::chrono::milliseconds ttl = 30s) {
    sqlock::lock_options o;
    o.ttl = ttl;
    o.on_lost = [this](const sqlock::lost_event& e) {
      std::lock_guard<std::mutex> lock(mu_);
      why_ = e.reason;
      lost_ = true;
    };
    lease_ = client_.try_acquire("export", o);
    return lease_.has_value();
  }
  /// Writes one batch if it still holds the lock; false once it has stopped.
  bool write_batch() {
    if (!lease_ || lost_ || lease_->lost()) return false;
    out_.push_back("batch under token " + std::to_string(lease_->token()));
    return true;
  }
  bool stopped() const { return lost_; }
  std::string why() const {
    std::lock_guard<std::mutex> lock(mu_);
    return why_;
  }
  std::int64_t token() const { return lease_ ? lease_->token() : 0; }

 private:
  sqlock::client& client_;
  std::vector<std::string>& out_;
  std::optional<sqlock::lease> lease_;
  mutable std::mutex mu_;
  std::string why_;
  std::atomic<bool> lost_{false};
};

// ---- the application's tests ---------------------------------------------------------------

namespace {

// Polls `cond` until it holds or `limit` passes.
bool within(std::chrono::milliseconds limit, const std::function<bool()>& cond) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// One in-memory database per test, behind a fault injector.
struct setup {
  std::shared_ptr<sqlock::testing::memory_backend> db =
      std::make_shared<sqlock::testing::memory_backend>();
  std::shared_ptr<sqlock::testing::fault_injector> faults =
      std::make_shared<sqlock::testing::fault_injector>(db);
  sqlock::client client{faults};
  std::vector<std::string> written;
};

}  // namespace

TEST_CASE("the exporter stops writing once its lock is taken over") {
  setup s;
  exporter e(s.client, s.written);
  REQUIRE(e.start(300ms));  // short lease: the keepalive renews (and learns) every 100 ms
  CHECK(e.write_batch());
  s.faults->lose_lease(sqlock::renew_outcome::taken_over);
  REQUIRE(within(2s, [&] { return e.stopped(); }));
  CHECK(e.why() == "taken over");
  CHECK_FALSE(e.write_batch());
  CHECK(s.written.size() == 1);
}

TEST_CASE("the exporter stops when its lease expires (the database clock jumps)") {
  setup s;
  exporter e(s.client, s.written);
  REQUIRE(e.start(300ms));
  s.db->advance(1min);  // as if the process had been paused for a minute
  REQUIRE(within(2s, [&] { return e.stopped(); }));
  CHECK(e.why() == "expired");
  CHECK_FALSE(e.write_batch());
}

TEST_CASE("the exporter stops when the database cannot be reached for longer than its lease") {
  setup s;
  exporter e(s.client, s.written);
  REQUIRE(e.start(300ms));
  s.faults->fail_renewals(1000);
  REQUIRE(within(2s, [&] { return e.stopped(); }));
  CHECK_FALSE(e.write_batch());
}

TEST_CASE("the exporter rides out a short outage") {
  setup s;
  exporter e(s.client, s.written);
  REQUIRE(e.start(900ms));
  s.faults->fail_renewals(2);  // two renewals fail, the third (at ttl/10 retries) succeeds
  const int before = s.faults->renew_calls();
  REQUIRE(within(2s, [&] { return s.faults->renew_calls() >= before + 4; }));
  CHECK_FALSE(e.stopped());
  CHECK(e.write_batch());
}

TEST_CASE("after a loss, the next exporter writes under a larger token") {
  setup s;
  exporter first(s.client, s.written);
  REQUIRE(first.start(300ms));
  s.faults->lose_lease(sqlock::renew_outcome::force_released);  // an operator broke the lock
  REQUIRE(within(2s, [&] { return first.stopped(); }));
  CHECK(first.why() == "force released");
  exporter second(s.client, s.written);
  REQUIRE(second.start());
  CHECK(second.token() > first.token());
  CHECK(second.write_batch());
}
