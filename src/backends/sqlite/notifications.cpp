// SPDX-License-Identifier: Apache-2.0
// How releases wake waiters in the SQLite backend: a process-global watch registry per
// database file. Waiters in other processes are not woken (wakes_other_processes() is false):
// they retry on a shorter backoff.

#include <sys/stat.h>

#include <map>
#include <mutex>

#include "backends/sqlite/backend.hpp"

namespace sqlock::detail::sqlite {
namespace {

// Releases by any backend of this process on the same file wake the waiters of all of them:
// registries are shared per file identity (device, inode).
std::shared_ptr<watch_registry> registry_for(const std::string& key) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<watch_registry>> registries;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = registries[key];
  auto r = slot.lock();
  if (!r) {
    r = std::make_shared<watch_registry>();
    slot = r;
  }
  return r;
}

std::string path_of(const std::string& location, bool uri) {
  if (!uri) return location;
  std::string p = location.substr(5);  // after "file:"
  if (p.rfind("//", 0) == 0) {
    p = p.substr(2);
    auto slash = p.find('/');
    p = slash == std::string::npos ? std::string() : p.substr(slash);
  }
  return p.substr(0, p.find_first_of("?#"));
}

}  // namespace

std::shared_ptr<watch_registry> sqlite_backend::registry() {
  std::lock_guard<std::mutex> lock(registry_mu_);
  if (!registry_) {
    struct stat st {};
    auto path = path_of(location_, uri_);
    if (::stat(path.c_str(), &st) == 0)
      registry_ = registry_for(std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
    else
      return registry_for("path:" + path);  // not created yet: do not pin this key
  }
  return registry_;
}

}  // namespace sqlock::detail::sqlite
