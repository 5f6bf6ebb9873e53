// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which backend a database URL names (public: <sqlock/url.hpp>), and how to make a driver's
// message about a URL safe to show.

#include <string>
#include <string_view>

#include <sqlock/url.hpp>

namespace sqlock::detail {

using sqlock::parse_database_url;
using sqlock::parsed_url;
using sqlock::redact_url;
using sqlock::secret_ranges;

/// A libpq (or other) message about `url` made safe to show: every double-quoted segment that
/// contains a piece of a secret of `url` becomes "****", as does any other occurrence of such a
/// piece of 4 bytes or more. With `strict` (libpq's connection-string parse errors, which quote
/// the string itself) every quoted segment except "=" becomes "...".
std::string redact_message(std::string_view message, const std::string& url, bool strict = false);

}  // namespace sqlock::detail
