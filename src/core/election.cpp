// SPDX-License-Identifier: Apache-2.0
// Leader election on a lease: the leader holds the lock `name`, its value is the row's metadata
// and its term the lease's fencing token. Observers read the row and sleep on an observer watch
// (woken by every release of the name: NOTIFY on PostgreSQL, the in-process registry on
// SQLite), until the leader's lease runs out, or for at most `poll`.

#include <atomic>
#include <thread>

#include <sqlock/election.hpp>
#include <sqlock/error.hpp>

#include "core/core.hpp"
#include "core/wait.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock {

namespace detail {

struct observer_state {
  std::shared_ptr<client_core> core;
  std::string name;
  std::function<void(const std::optional<leader_info>&)> on_change;
  std::chrono::milliseconds poll{1000};
  std::shared_ptr<release_watch> watch;
  std::thread thread;
  std::mutex join_mu;

  void run() noexcept;
  // Ends the thread: joins it, or (called from the callback itself) lets it end on its own
  // once the callback returns; the thread keeps this state alive until then.
  void stop() noexcept {
    watch->cancel();
    core->remove_waiter(watch);
    std::lock_guard<std::mutex> lock(join_mu);
    if (!thread.joinable()) return;
    if (thread.get_id() == std::this_thread::get_id())
      thread.detach();
    else
      thread.join();
  }
};

namespace {
std::optional<leader_info> leader_of(const std::optional<lock_record>& r) {
  if (!r || !r->held) return std::nullopt;
  return leader_info{r->metadata, r->owner, r->token, r->expires_in};
}
}  // namespace

void observer_state::run() noexcept {
  using namespace std::chrono;
  std::int64_t last_term = -1;  // nothing reported yet; 0 = reported "no leader"
  std::string last_value;       // of last_term: a proclaim changes it within a term
  // While the office is vacant a candidate usually wins within a few round trips: look again
  // soon, backing off to `poll`.
  milliseconds vacant_delay = backoff::initial;
  for (;;) {
    milliseconds sleep = poll;
    try {
      auto now_leader = leader_of(core->db().inspect_watched(name, poll * 2, core->op_deadline()));
      std::int64_t term = now_leader ? now_leader->term : 0;
      if (term != last_term || (now_leader && now_leader->value != last_value)) {
        last_term = term;
        last_value = now_leader ? now_leader->value : std::string();
        vacant_delay = backoff::initial;
        try {
          on_change(now_leader);
        } catch (const std::exception& e) {
          core->log(log_level::error,
                    "election " + quoted(name) + ": observer callback threw: " + e.what());
        } catch (...) {
          core->log(log_level::error, "election " + quoted(name) + ": observer callback threw");
        }
      }
      if (now_leader) {
        sleep = std::min(poll, now_leader->expires_in + milliseconds{1});
      } else {
        sleep = std::min(poll, vacant_delay);
        vacant_delay = std::min(poll, vacant_delay * 2);
      }
    } catch (const std::exception& e) {
      core->log(log_level::warn,
                "election " + quoted(name) + ": observing failed, retrying: " + e.what());
    }
    if (watch->wait_until(steady_clock::now() + sleep) == release_watch::wake::cancelled) return;
  }
}

}  // namespace detail

observation& observation::operator=(observation&& other) noexcept {
  if (this != &other) {
    observation old(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

observation::~observation() { stop(); }

void observation::stop() noexcept {
  if (!state_) return;
  auto s = state_;
  s->stop();
  state_.reset();
}

election::election(client& c, std::string name, lock_options options)
    : client_(c), name_(std::move(name)), options_(std::move(options)) {
  detail::validate_name(name_);
  detail::validate(options_);
}

election::~election() {
  try {
    resign();
  } catch (...) {
    // The lease ended locally; its row expires by itself.
  }
}

bool election::try_campaign_for(std::string value, std::chrono::milliseconds wait) {
  detail::validate_metadata(value);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (leadership_ && *leadership_)
      throw error(errc::usage,
                  "election " + detail::quoted(name_) + ": campaign while already leader");
  }
  lock_options o = options_;
  o.metadata = std::move(value);
  std::optional<lease> won;
  if (wait == std::chrono::milliseconds::max()) {
    won.emplace(client_.acquire(name_, o));
  } else {
    won = client_.try_acquire_for(name_, wait, o);
  }
  if (!won) return false;
  std::lock_guard<std::mutex> lock(mu_);
  leadership_ = std::move(won);  // a lost earlier leadership is released (a no-op) here
  return true;
}

std::int64_t election::campaign(std::string value) {
  try_campaign_for(std::move(value), std::chrono::milliseconds::max());
  return term();
}

void election::proclaim(std::string value) {
  detail::validate_metadata(value);
  std::lock_guard<std::mutex> lock(mu_);
  if (!leadership_)
    throw error(errc::usage, "election " + detail::quoted(name_) +
                                 ": proclaim while not leader (campaign first)");
  leadership_->update_metadata(value);  // lease_lost once the leadership has ended
}

void election::resign() {
  std::optional<lease> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    held.swap(leadership_);
  }
  if (held) held->release();
}

bool election::is_leader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leadership_ && static_cast<bool>(*leadership_);
}

std::int64_t election::term() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leadership_ && *leadership_ ? leadership_->token() : 0;
}

lease_state election::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leadership_ ? leadership_->state() : lease_state::released;
}

std::chrono::milliseconds election::remaining() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leadership_ ? leadership_->remaining() : std::chrono::milliseconds::zero();
}

std::optional<leader_info> election::leader() { return detail::leader_of(client_.inspect(name_)); }

observation election::observe(std::function<void(const std::optional<leader_info>&)> on_change,
                              std::chrono::milliseconds poll) {
  if (!on_change) throw error(errc::invalid_argument, "election::observe: empty callback");
  if (poll < std::chrono::milliseconds{10})
    throw error(errc::invalid_argument, "election::observe: poll must be at least 10 ms");
  auto& core = client_.core_;
  core->ensure_open();
  core->ensure_schema();
  auto s = std::make_shared<detail::observer_state>();
  s->core = core;
  s->name = name_;
  s->on_change = std::move(on_change);
  s->poll = poll;
  s->watch = core->add_waiter(name_);  // shutdown cancels it, ending the thread
  s->watch->make_observer();
  {
    // The callback may stop() the observation before std::thread's assignment completes.
    std::lock_guard<std::mutex> lock(s->join_mu);
    s->thread = std::thread([s] { s->run(); });
  }
  return observation(std::move(s));
}

}  // namespace sqlock
