// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the backends' history code shares (schema 10): the ended_how words of the migrations.

#include <string_view>

#include <sqlock/error.hpp>
#include <sqlock/types.hpp>

namespace sqlock::detail {

/// The lease_end an ended_how column (or 'live') names; errc::internal for any other word (the
/// table's CHECK constraint admits no other).
inline lease_end parse_lease_end(std::string_view how, std::string_view backend) {
  for (auto e : {lease_end::live, lease_end::released, lease_end::expired, lease_end::taken_over,
                 lease_end::force_released, lease_end::revoked, lease_end::lost})
    if (how == to_string(e)) return e;
  throw error(errc::internal, "history: unknown ended_how '" + std::string(how) + "'",
              std::string(backend));
}

}  // namespace sqlock::detail
