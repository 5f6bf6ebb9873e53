#pragma once
// Which backend a database URL names, and how to show it without secrets.

#include <string>

namespace sqlock::detail {

struct parsed_url {
  enum class kind { sqlite, postgresql } backend;
  std::string location;  // sqlite: path or file: URI; postgresql: the URL/conninfo as given
  bool uri = false;      // sqlite: location is a file: URI
};

/// Throws errc::invalid_argument (the message never contains a password).
parsed_url parse_database_url(const std::string& url);

/// The URL with any password replaced by "****" (URI userinfo, password=..., or a password
/// query parameter). Safe for messages and logs.
std::string redact_url(const std::string& url);

}  // namespace sqlock::detail
