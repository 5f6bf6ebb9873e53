// SPDX-License-Identifier: Apache-2.0
#pragma once
// Rules every backend applies the same way, so that they cannot drift apart.

#include <string>
#include <string_view>
#include <vector>

#include <sqlock/backend.hpp>

#include "util/util.hpp"

namespace sqlock::detail {

/// Why a renewal of `key` was refused, from the row as it stands (nonce and token). `live`:
/// the row still carries our lease unexpired (then only a lock held by another transaction can
/// have stopped the renewal). A force release ends the lease and clears the nonce.
/// The result of a renewal that did not renew (outcome `o`).
inline renew_result not_renewed(renew_outcome o) {
  renew_result r;
  r.outcome = o;
  return r;
}

inline renew_outcome refused_renewal(const lease_key& key, std::string_view row_nonce,
                                     std::int64_t row_token, bool live) {
  if (row_nonce == key.nonce && row_token == key.token)
    return live ? renew_outcome::busy : renew_outcome::expired;
  if (row_nonce.empty() && row_token == key.token) return renew_outcome::force_released;
  return renew_outcome::taken_over;
}

/// "request release of 'name'" (or "... of semaphore 'name'"), for messages.
inline std::string describe_request(lease_kind kind, std::string_view name) {
  return std::string(kind == lease_kind::semaphore ? "request release of semaphore "
                                                   : "request release of ") +
         quoted(name);
}

/// "renew 'name' (token 42)" or "renew 3 leases", for messages.
inline std::string describe_renewal(const std::vector<renew_request>& requests) {
  if (requests.size() == 1)
    return "renew " + quoted(requests[0].key.name) + " (token " +
           std::to_string(requests[0].key.token) + ")";
  return "renew " + std::to_string(requests.size()) + " leases";
}

/// The live leases a `migrate down` step would drop (read inside that step's transaction), and
/// the verdict: nothing to say, a warning when forced, otherwise `invalid_argument` (nothing is
/// changed). Dropping them would let the next grant after `migrate up` reuse small tokens
/// while their holders still work.
class live_leases {
 public:
  /// One table's live rows: the first few of them, and how many there are in all.
  void add(const char* label, std::string_view name, std::int64_t token, std::string_view owner) {
    examples_ += std::string(examples_.empty() ? "" : ", ") + label + " " + quoted(name) +
                 " (token " + std::to_string(token) + ", owner " + quoted(owner) + ")";
    ++shown_;
  }
  void total(std::int64_t n) {
    if (n > shown_) examples_ += ", ...";
    live_ += n;
    shown_ = 0;
  }
  /// Returns the warning to log when `force` and some are live (empty: nothing to say);
  /// throws when some are live and not `force`.
  std::string verdict(std::string_view backend, int version, bool force) const {
    if (live_ == 0) return {};
    std::string text =
        "migrate down from schema version " + std::to_string(version) + ": " +
        std::to_string(live_) +
        (live_ == 1 ? " live lease or semaphore holder" : " live leases or semaphore holders") +
        " would be dropped: " + examples_;
    if (force) return std::string(backend) + ": " + text + "; dropping them (force)";
    throw error(errc::invalid_argument,
                text +
                    "; stop their holders (or let the leases expire) and retry, or force it "
                    "(`sqlock migrate down --force`, migrate_options::force); the schema "
                    "stays at version " +
                    std::to_string(version),
                std::string(backend));
  }

 private:
  std::int64_t live_ = 0, shown_ = 0;
  std::string examples_;
};

}  // namespace sqlock::detail
