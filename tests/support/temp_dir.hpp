// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace sqlock_test {

/// A fresh directory under $TMPDIR, removed with its contents.
class temp_dir {
 public:
  temp_dir() {
    auto base = std::filesystem::temp_directory_path() / "sqlock-test-XXXXXX";
    std::string s = base.string();
    if (!mkdtemp(s.data())) throw std::runtime_error("mkdtemp failed");
    path_ = s;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sqlock_test
