// SPDX-License-Identifier: Apache-2.0
#include "core/wait.hpp"

#include <algorithm>

#include "util/util.hpp"

namespace sqlock::detail {

std::chrono::milliseconds backoff::next() {
  auto d = current_;
  current_ = std::min(cap_, current_ * 2);
  return jitter(std::max(d / 2, std::chrono::milliseconds{1}), d);
}

}  // namespace sqlock::detail
