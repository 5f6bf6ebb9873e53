// SPDX-License-Identifier: Apache-2.0
#pragma once
// Fault injection at the backend seam: a sqlock::backend_wrapper (leveldb's EnvWrapper) that
// forwards every call to a real backend and overrides only the calls it can fail.

#include <atomic>
#include <thread>

#include <sqlock/backend.hpp>

namespace sqlock_test {

class faulty_backend : public sqlock::backend_wrapper {
 public:
  explicit faulty_backend(std::shared_ptr<sqlock::backend> real)
      : sqlock::backend_wrapper(std::move(real)) {}

  /// try_acquire runs for real, then reports the connection lost: the outcome is "unknown".
  std::atomic<bool> acquire_in_doubt{false};
  /// abandon fails (the cleanup of an in-doubt acquire cannot run).
  std::atomic<bool> abandon_fails{false};
  /// renew hangs until its deadline, then throws unavailable (a stalled connection).
  std::atomic<bool> renew_stalls{false};
  /// renew fails at once with unavailable (a refused connection).
  std::atomic<bool> renew_fails{false};
  std::atomic<int> renew_calls{0};
  /// The next N schema_version and try_acquire calls fail at once with unavailable (a server
  /// that is restarting: "the database system is starting up").
  std::atomic<int> starting_up{0};
  /// A simulated server epoch (backend::server_epoch; 0: the real backend's): grants carry
  /// `epoch`, renewals `renew_epoch` (0: `epoch`), so a test can make a failover happen (raise
  /// `epoch`) and renewals run on a connection to the old server (keep `renew_epoch`).
  std::atomic<std::uint64_t> epoch{0};
  std::atomic<std::uint64_t> renew_epoch{0};

  std::uint64_t server_epoch() const noexcept override {
    return epoch ? epoch.load() : wrapped().server_epoch();
  }

  int schema_version(sqlock::deadline d) override {
    fail_if_starting_up("schema_version");
    return wrapped().schema_version(d);
  }
  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r,
                                     sqlock::deadline d) override {
    fail_if_starting_up("acquire");
    return in_doubt_after(wrapped().try_acquire(r, d));
  }
  /// Several locks at once: the backend's own all-or-nothing step, with the same faults.
  std::vector<sqlock::acquire_result> try_acquire_all(const std::vector<sqlock::acquire_request>& r,
                                                      sqlock::deadline d) override {
    fail_if_starting_up("acquire");
    auto out = wrapped().try_acquire_all(r, d);
    for (auto& o : out) o = in_doubt_after(std::move(o));
    return out;
  }
  sqlock::acquire_result try_acquire_semaphore(const sqlock::semaphore_request& r,
                                               sqlock::deadline d) override {
    return in_doubt_after(wrapped().try_acquire_semaphore(r, d));
  }
  std::vector<sqlock::renew_result> renew(const std::vector<sqlock::renew_request>& r,
                                          sqlock::deadline d) override {
    ++renew_calls;
    if (renew_stalls) {
      std::this_thread::sleep_until(d);
      throw sqlock::error(sqlock::errc::unavailable, "renew: timed out (injected stall)",
                          std::string(kind()));
    }
    if (renew_fails)
      throw sqlock::error(sqlock::errc::unavailable, "renew: connection refused (injected)",
                          std::string(kind()));
    auto out = wrapped().renew(r, d);
    if (epoch)
      for (auto& o : out)
        if (o.outcome == sqlock::renew_outcome::renewed)
          o.server_epoch = renew_epoch ? renew_epoch.load() : epoch.load();
    return out;
  }
  bool abandon(const sqlock::lease_key& k, sqlock::deadline d) override {
    if (abandon_fails)
      throw sqlock::error(sqlock::errc::unavailable, "abandon: connection refused (injected)",
                          std::string(kind()));
    return wrapped().abandon(k, d);
  }

 private:
  sqlock::acquire_result in_doubt_after(sqlock::acquire_result result) {
    if (acquire_in_doubt)
      throw sqlock::error(sqlock::errc::in_doubt,
                          "acquire: connection lost after sending (injected)", std::string(kind()));
    if (epoch && result.granted) result.granted->server_epoch = epoch;
    return result;
  }
  void fail_if_starting_up(const char* what) {
    for (int left = starting_up.load(); left > 0;)
      if (starting_up.compare_exchange_weak(left, left - 1))
        throw sqlock::error(sqlock::errc::unavailable,
                            std::string(what) + ": the database system is starting up (injected)",
                            std::string(kind()));
  }
};

}  // namespace sqlock_test
