// SPDX-License-Identifier: Apache-2.0
#pragma once
// The GRANT blocks of docs/postgresql.md, verbatim: tests grant exactly what users are told to
// grant, so a function added without updating the documentation fails them.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace sqlock_test {

/// The statements of the first ```sql block after `anchor` in docs/postgresql.md, with the
/// placeholder schema `sqlock_schema` replaced by `schema_ident` and `TO <role>;` by
/// `TO <role_ident>;`.
inline std::vector<std::string> docs_grants(const std::string& anchor, const std::string& role,
                                            const std::string& schema_ident,
                                            const std::string& role_ident) {
  std::ifstream in(std::filesystem::path(SQLOCK_SOURCE_DIR) / "docs" / "postgresql.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  auto at = text.find(anchor);
  REQUIRE(at != std::string::npos);
  auto begin = text.find("```sql\n", at);
  REQUIRE(begin != std::string::npos);
  begin += 7;
  auto end = text.find("```", begin);
  REQUIRE(end != std::string::npos);
  std::string block = text.substr(begin, end - begin);
  // sqlock_schema is the placeholder of docs/postgresql.md (not the prefix of
  // sqlock_schema_version).
  block = std::regex_replace(block, std::regex(R"(\bsqlock_schema\b(?!_))"), schema_ident);
  block = std::regex_replace(block, std::regex("\\bTO " + role + ";"), "TO " + role_ident + ";");
  std::vector<std::string> out;
  std::string::size_type from = 0, semi;
  while ((semi = block.find(';', from)) != std::string::npos) {
    out.push_back(block.substr(from, semi - from));
    from = semi + 1;
  }
  return out;
}

}  // namespace sqlock_test
