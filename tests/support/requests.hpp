// SPDX-License-Identifier: Apache-2.0
#pragma once
// Builders for the requests of the sqlock::backend interface, for tests that call a backend
// directly (below sqlock::client).

#include <chrono>
#include <cstdint>
#include <string>

#include <sqlock/sqlock.hpp>

namespace sqlock_test {

/// A deadline `within` from now for one backend call.
inline sqlock::deadline soon(std::chrono::milliseconds within = std::chrono::seconds{10}) {
  return std::chrono::steady_clock::now() + within;
}

/// A lock request of owner "test".
inline sqlock::acquire_request request(std::string name, std::string nonce,
                                       std::chrono::milliseconds ttl = std::chrono::seconds{30},
                                       bool waiting = false) {
  sqlock::acquire_request r;
  r.name = std::move(name);
  r.owner = "test";
  r.nonce = std::move(nonce);
  r.ttl = ttl;
  r.waiting = waiting;
  return r;
}

/// A semaphore request of owner "test" for `count` of `limit` units.
inline sqlock::semaphore_request sem_request(
    std::string name, std::string nonce, std::int64_t limit, std::int64_t count = 1,
    std::chrono::milliseconds ttl = std::chrono::seconds{30}, bool waiting = false,
    bool fair = false) {
  sqlock::semaphore_request r;
  r.name = std::move(name);
  r.owner = "test";
  r.nonce = std::move(nonce);
  r.limit = limit;
  r.count = count;
  r.ttl = ttl;
  r.waiting = waiting;
  r.fair = fair;
  r.ticket_ttl = sqlock::fair_ticket_ttl;
  return r;
}

/// The key of a semaphore holder's lease.
inline sqlock::lease_key holder_key(std::string name, std::string nonce, std::int64_t token) {
  return {std::move(name), std::move(nonce), token, sqlock::lease_kind::semaphore};
}

}  // namespace sqlock_test
