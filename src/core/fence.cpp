// SPDX-License-Identifier: Apache-2.0
#include <sqlock/fence.hpp>

namespace sqlock {

bool fence::accept(std::string_view resource, std::int64_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = highest_.try_emplace(std::string(resource), token);
  if (inserted) return true;
  if (token < it->second) return false;
  it->second = token;
  return true;
}

std::int64_t fence::highest(std::string_view resource) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = highest_.find(std::string(resource));
  return it == highest_.end() ? 0 : it->second;
}

}  // namespace sqlock
