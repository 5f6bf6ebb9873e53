#pragma once
// Which backend a database URL names, and how to show it without secrets.

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sqlock::detail {

struct parsed_url {
  enum class kind { sqlite, postgresql } backend;
  std::string location;  // sqlite: path or file: URI; postgresql: the URL/conninfo as given
  bool uri = false;      // sqlite: location is a file: URI
};

/// Throws errc::invalid_argument (the message never contains a password).
parsed_url parse_database_url(const std::string& url);

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
std::vector<std::pair<std::size_t, std::size_t>> secret_ranges(std::string_view url);

/// The URL with every secret range replaced by "****". Safe for messages and logs.
std::string redact_url(const std::string& url);

/// A libpq (or other) message about `url` made safe to show: every double-quoted segment that
/// contains a piece of a secret of `url` becomes "****", as does any other occurrence of such a
/// piece of 4 bytes or more. With `strict` (libpq's connection-string parse errors, which quote
/// the string itself) every quoted segment except "=" becomes "...".
std::string redact_message(std::string_view message, const std::string& url, bool strict = false);

}  // namespace sqlock::detail
