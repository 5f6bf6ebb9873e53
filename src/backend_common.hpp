#pragma once
// Rules every backend applies the same way, so that they cannot drift apart.

#include <sqlock/backend.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "util.hpp"

namespace sqlock::detail {

/// Why a renewal of `key` was refused, from the row as it stands (nonce and token). `live`:
/// the row still carries our lease unexpired (then only a lock held by another transaction can
/// have stopped the renewal). A force release ends the lease and clears the nonce.
inline renew_outcome refused_renewal(const lease_key& key, std::string_view row_nonce,
                                     std::int64_t row_token, bool live) {
  if (row_nonce == key.nonce && row_token == key.token)
    return live ? renew_outcome::busy : renew_outcome::expired;
  if (row_nonce.empty() && row_token == key.token) return renew_outcome::force_released;
  return renew_outcome::taken_over;
}

/// "renew 'name' (token 42)" or "renew 3 leases", for messages.
inline std::string describe_renewal(const std::vector<renew_request>& requests) {
  if (requests.size() == 1)
    return "renew " + quoted(requests[0].key.name) + " (token " +
           std::to_string(requests[0].key.token) + ")";
  return "renew " + std::to_string(requests.size()) + " leases";
}

}  // namespace sqlock::detail
