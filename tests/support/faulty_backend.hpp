#pragma once
// Fault injection by wrapping the backend interface (leveldb's EnvWrapper): forwards every call
// to a real backend unless a fault is armed.

#include <sqlock/backend.hpp>

#include <atomic>
#include <thread>

namespace sqlock_test {

class faulty_backend : public sqlock::backend {
 public:
  explicit faulty_backend(std::shared_ptr<sqlock::backend> real) : real_(std::move(real)) {}

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

  std::string_view kind() const noexcept override { return real_->kind(); }
  std::string describe() const override { return real_->describe(); }
  int schema_version(sqlock::deadline d) override {
    fail_if_starting_up("schema_version");
    return real_->schema_version(d);
  }
  int latest_schema_version() const noexcept override { return real_->latest_schema_version(); }
  int migrate(int target, sqlock::deadline d) override { return real_->migrate(target, d); }
  int migrate_with(int target, const sqlock::migrate_options& o, sqlock::deadline d) override {
    return real_->migrate_with(target, o, d);
  }
  sqlock::acquire_result try_acquire(const sqlock::acquire_request& r, sqlock::deadline d) override {
    fail_if_starting_up("acquire");
    auto result = real_->try_acquire(r, d);
    if (acquire_in_doubt)
      throw sqlock::error(sqlock::errc::in_doubt, "acquire: connection lost after sending (injected)",
                          std::string(kind()));
    return result;
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
    return real_->renew(r, d);
  }
  bool release(const sqlock::lease_key& k, sqlock::deadline d) override { return real_->release(k, d); }
  bool abandon(const sqlock::lease_key& k, sqlock::deadline d) override {
    if (abandon_fails)
      throw sqlock::error(sqlock::errc::unavailable, "abandon: connection refused (injected)",
                          std::string(kind()));
    return real_->abandon(k, d);
  }
  sqlock::acquire_result try_acquire_semaphore(const sqlock::semaphore_request& r,
                                               sqlock::deadline d) override {
    auto result = real_->try_acquire_semaphore(r, d);
    if (acquire_in_doubt)
      throw sqlock::error(sqlock::errc::in_doubt, "acquire: connection lost after sending (injected)",
                          std::string(kind()));
    return result;
  }
  std::optional<sqlock::semaphore_record> inspect_semaphore(std::string_view n,
                                                            sqlock::deadline d) override {
    return real_->inspect_semaphore(n, d);
  }
  std::vector<sqlock::semaphore_record> list_semaphores(const sqlock::list_filter& f,
                                                        sqlock::deadline d) override {
    return real_->list_semaphores(f, d);
  }
  std::size_t force_release_semaphore(std::string_view n, std::int64_t t, sqlock::deadline d) override {
    return real_->force_release_semaphore(n, t, d);
  }
  std::optional<sqlock::lock_record> inspect_watched(std::string_view n, std::chrono::milliseconds m,
                                                     sqlock::deadline d) override {
    return real_->inspect_watched(n, m, d);
  }
  std::optional<sqlock::lock_record> inspect(std::string_view n, sqlock::deadline d) override {
    return real_->inspect(n, d);
  }
  std::vector<sqlock::lock_record> list(const sqlock::list_filter& f, sqlock::deadline d) override {
    return real_->list(f, d);
  }
  bool force_release(std::string_view n, sqlock::deadline d) override {
    return real_->force_release(n, d);
  }
  std::size_t purge(std::chrono::milliseconds f, sqlock::deadline d) override {
    return real_->purge(f, d);
  }
  std::shared_ptr<sqlock::release_watch> watch(std::string_view n) override { return real_->watch(n); }
  bool wakes_other_processes() const noexcept override { return real_->wakes_other_processes(); }

 private:
  void fail_if_starting_up(const char* what) {
    for (int left = starting_up.load(); left > 0;)
      if (starting_up.compare_exchange_weak(left, left - 1))
        throw sqlock::error(sqlock::errc::unavailable,
                            std::string(what) + ": the database system is starting up (injected)",
                            std::string(kind()));
  }
  std::shared_ptr<sqlock::backend> real_;
};

}  // namespace sqlock_test
