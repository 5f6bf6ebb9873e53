// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// sqlock::fence: the resource side of fencing tokens (Kleppmann's storage service).

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <sqlock/export.hpp>

namespace sqlock {

/// Remembers the highest fencing token seen per resource and rejects writes that carry a
/// smaller one, so a holder that paused past its lease cannot overwrite the work of the holder
/// that replaced it. Keep one `fence` where the resource lives (in memory here; persist the
/// highest token with the resource if the resource outlives the process).
/// Thread safety: thread-safe. Throws: nothing but std::bad_alloc.
class SQLOCK_EXPORT fence {
 public:
  /// Returns: true and records `token` when it is at least the highest seen for `resource`
  /// (the current holder may write many times); false for a stale token.
  bool accept(std::string_view resource, std::int64_t token);
  /// The highest token accepted for `resource`; 0 when none.
  std::int64_t highest(std::string_view resource) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::int64_t> highest_;
};

}  // namespace sqlock
