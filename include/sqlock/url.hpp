// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Database URLs: which backend a URL names, and how to show one without its secrets. The
/// `sqlock` tool uses these; so can any tool that prints a URL or scrubs it from its argv.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sqlock/export.hpp>

namespace sqlock {

struct parsed_url {
  /// `memory`: `memory:NAME`, a process-wide in-memory database (<sqlock/testing.hpp>).
  /// `mariadb`: `mariadb://` or `mysql://` (MariaDB 10.6+, MySQL 8.0.1+).
  enum class kind { sqlite, postgresql, memory, mariadb } backend;
  std::string location;  // sqlite: path or file: URI; postgresql and mariadb: the URL as given;
                         // memory: the database's name
  bool uri = false;      // sqlite: location is a file: URI
};

/// Throws errc::invalid_argument (the message never contains a password).
SQLOCK_EXPORT parsed_url parse_database_url(const std::string& url);

/// Byte ranges [first, first + second) of `url` that may hold a secret, sorted and disjoint.
/// One parser for every consumer (messages, the CLI's argv scrubbing), following libpq's
/// grammar (connection strings: URI and key=value forms) and erring on the side of hiding:
/// - URI `scheme://user:PASSWORD@host/...`: the password runs from the first ':' of the
///   userinfo to the LAST '@' before the first '/' that follows the first '@' (libpq itself
///   stops at the first '@', so a raw '@' in a password would otherwise leak into the host);
/// - URI query parameters whose key (percent-decoded, any case) names a secret (password,
///   sslpassword, ...), up to the next `&key=`; a key that does not decode is a secret too;
/// - key=value strings (single quotes, backslash escapes) with secret keys; after a syntax
///   error (unterminated quote, a word without '=') everything to the end is hidden;
/// - any other `scheme:...user:PASSWORD@...` shape: from the first ':' after the scheme to the
///   last '@'.
SQLOCK_EXPORT std::vector<std::pair<std::size_t, std::size_t>> secret_ranges(std::string_view url);

/// The URL with every secret range replaced by "****". Safe for messages and logs.
SQLOCK_EXPORT std::string redact_url(const std::string& url);

}  // namespace sqlock
