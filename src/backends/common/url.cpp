// SPDX-License-Identifier: Apache-2.0
#include "backends/common/url.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>
#include <regex>

#include <sqlock/backend.hpp>
#include <sqlock/config.hpp>
#include <sqlock/error.hpp>

#include "backends/common/backends.hpp"

namespace sqlock::detail {

namespace {
bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

[[noreturn]] void bad(const std::string& url, const std::string& why) {
  throw error(errc::invalid_argument, "database URL '" + redact_url(url) + "': " + why);
}

}  // namespace

namespace {

using range = std::pair<std::size_t, std::size_t>;

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// libpq's secret keywords are password, sslpassword (and oauth_client_secret in newer
// versions); near misses ("PASSWORD", "pasword") are rejected by libpq but still hide their
// value, because the user meant a password.
bool secret_key(std::string_view key) {
  std::string k = lower(key);
  for (const char* w : {"pass", "sword", "pwd", "secret"})
    if (k.find(w) != std::string::npos) return true;
  return false;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding as libpq does it; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// Length of a URI scheme followed by "://" at the start of s, or 0.
std::size_t uri_scheme_length(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return 0;
  std::size_t i = 1;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '+' ||
                          s[i] == '.' || s[i] == '-'))
    ++i;
  return s.substr(i, 3) == "://" ? i : 0;
}

// libpq key=value strings start with a keyword followed by '='.
bool conninfo_shape(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  std::size_t k = i;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
  if (i == k) return false;
  while (i < s.size() && is_space(s[i])) ++i;
  return i < s.size() && s[i] == '=';
}

void query_ranges(std::string_view url, std::size_t q, std::vector<range>& out);

void uri_ranges(std::string_view url, std::size_t rest, std::vector<range>& out) {
  const std::size_t n = url.size();
  std::size_t query_from = rest;
  std::size_t first_at = url.find('@', rest);
  if (first_at != std::string_view::npos) {
    std::size_t slash = url.find('/', first_at);
    std::size_t at = url.rfind('@', slash == std::string_view::npos ? n - 1 : slash);
    std::size_t colon = url.find(':', rest);
    if (colon < at) out.emplace_back(colon + 1, at - colon - 1);
    query_from = at + 1;
  }
  query_ranges(url, url.find('?', query_from), out);
}

// The parameters after `q` (a '?', or npos): secret keys' values.
void query_ranges(std::string_view url, std::size_t q, std::vector<range>& out) {
  const std::size_t n = url.size();
  if (q == std::string_view::npos) return;
  // "&key=" where key is made of characters a parameter name (possibly percent-encoded) has.
  auto param_starts_at = [&](std::size_t amp) {
    std::size_t j = amp + 1;
    while (j < n &&
           (std::isalnum(static_cast<unsigned char>(url[j])) || url[j] == '_' || url[j] == '%'))
      ++j;
    return j > amp + 1 && j < n && url[j] == '=';
  };
  std::size_t i = q + 1;
  while (i < n) {
    std::size_t amp = url.find('&', i);
    std::size_t token_end = amp == std::string_view::npos ? n : amp;
    std::size_t eq = url.find('=', i);
    if (eq != std::string_view::npos && eq < token_end) {
      auto key = percent_decode(url.substr(i, eq - i));
      if (!key || secret_key(*key) || secret_key(url.substr(i, eq - i))) {
        // A secret may itself hold a raw '&': it runs until something that looks like the
        // next parameter.
        std::size_t end = eq + 1;
        for (;;) {
          std::size_t a = url.find('&', end);
          if (a == std::string_view::npos) {
            end = n;
            break;
          }
          if (param_starts_at(a)) {
            end = a;
            break;
          }
          end = a + 1;
        }
        if (end > eq + 1) out.emplace_back(eq + 1, end - eq - 1);
        token_end = end;
      }
    }
    i = token_end + 1;
  }
}

void conninfo_ranges(std::string_view s, std::vector<range>& out) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  for (;;) {
    while (i < n && is_space(s[i])) ++i;
    if (i >= n) return;
    std::size_t key = i;
    while (i < n && !is_space(s[i]) && s[i] != '=') ++i;
    std::string_view keyword = s.substr(key, i - key);
    while (i < n && is_space(s[i])) ++i;
    if (i >= n || s[i] != '=') {
      // libpq stops here ("missing '='"): the rest may be the tail of an unquoted password.
      out.emplace_back(key, n - key);
      return;
    }
    ++i;
    while (i < n && is_space(s[i])) ++i;
    std::size_t value = i;
    if (i < n && s[i] == '\'') {
      bool closed = false;
      for (++i; i < n; ++i) {
        if (s[i] == '\\') {
          ++i;
        } else if (s[i] == '\'') {
          closed = true;
          ++i;
          break;
        }
      }
      if (!closed) {
        out.emplace_back(value, n - value);
        return;
      }
      i = std::min(i, n);
    } else {
      while (i < n && !is_space(s[i])) i += s[i] == '\\' ? 2 : 1;
      i = std::min(i, n);
    }
    if (secret_key(keyword) && i > value) out.emplace_back(value, i - value);
  }
}

// Pieces of the secrets, cut where a parser may cut them, decoded too: what a message about
// the string could quote.
std::vector<std::string> secret_pieces(const std::string& url) {
  std::vector<std::string> out;
  for (auto [pos, len] : secret_ranges(url)) {
    std::string_view text = std::string_view(url).substr(pos, len);
    auto add = [&](std::string_view piece) {
      if (piece.empty()) return;
      out.emplace_back(piece);
      if (auto d = percent_decode(piece); d && *d != piece && !d->empty()) out.push_back(*d);
    };
    add(text);
    std::size_t start = 0;
    for (std::size_t k = 0; k <= text.size(); ++k) {
      if (k == text.size() || std::strchr("@/?#:&=,;' \t\r\n\\\"", text[k]) != nullptr) {
        add(text.substr(start, k - start));
        start = k + 1;
      }
    }
  }
  return out;
}

}  // namespace

}  // namespace sqlock::detail

// The public part (<sqlock/url.hpp>).
namespace sqlock {

using namespace detail;  // the parsers above, for this file

std::vector<std::pair<std::size_t, std::size_t>> secret_ranges(std::string_view url) {
  std::vector<range> out;
  if (std::size_t scheme = uri_scheme_length(url); scheme > 0) {
    uri_ranges(url, scheme + 3, out);
  } else if (conninfo_shape(url)) {
    conninfo_ranges(url, out);
  } else {
    // A malformed URI ("postgresql:/u:pw@h", "postgresql//u:pw@h"): hide from the first ':'
    // to the last '@'.
    std::size_t at = url.rfind('@');
    std::size_t colon = url.find(':');
    if (at != std::string_view::npos && colon != std::string_view::npos && colon < at) {
      // Skip the scheme's own colon when the userinfo follows it.
      std::size_t second = url.find(':', colon + 1);
      if (second != std::string_view::npos && second < at) colon = second;
      out.emplace_back(colon + 1, at - colon - 1);
    }
    // "file:/path?password=..." and other scheme:... forms with parameters.
    query_ranges(url, url.find('?', at == std::string_view::npos ? 0 : at + 1), out);
  }
  std::sort(out.begin(), out.end());
  std::vector<range> merged;
  for (auto r : out) {
    if (!merged.empty() && r.first <= merged.back().first + merged.back().second) {
      auto end = std::max(merged.back().first + merged.back().second, r.first + r.second);
      merged.back().second = end - merged.back().first;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

std::string redact_url(const std::string& url) {
  std::string out;
  std::size_t at = 0;
  for (auto [pos, len] : secret_ranges(url)) {
    out.append(url, at, pos - at);
    out += "****";
    at = pos + len;
  }
  out.append(url, at, std::string::npos);
  return out;
}

}  // namespace sqlock

namespace sqlock::detail {

std::string redact_message(std::string_view message, const std::string& url, bool strict) {
  auto pieces = secret_pieces(url);
  auto has_piece = [&](std::string_view text) {
    for (const auto& p : pieces)
      if (text.find(p) != std::string_view::npos) return true;
    return false;
  };
  std::string out;
  std::size_t i = 0;
  while (i < message.size()) {
    std::size_t open = message.find('"', i);
    std::size_t close = open == std::string_view::npos ? open : message.find('"', open + 1);
    if (close == std::string_view::npos) {
      // An unbalanced quote: treat the rest as quoted.
      std::string_view rest = message.substr(i);
      if (open != std::string_view::npos && (strict || has_piece(rest.substr(open - i))))
        out.append(message.substr(i, open - i)).append("\"...");
      else
        out.append(rest);
      break;
    }
    out.append(message.substr(i, open - i));
    std::string_view inner = message.substr(open + 1, close - open - 1);
    if (strict ? inner != "=" : has_piece(inner))
      out += strict ? "\"...\"" : "\"****\"";
    else
      out.append(message.substr(open, close - open + 1));
    i = close + 1;
  }
  for (const auto& p : pieces) {
    if (p.size() < 4) continue;
    for (std::size_t k = out.find(p); k != std::string::npos; k = out.find(p, k + 4))
      out.replace(k, p.size(), "****");
  }
  return out;
}

}  // namespace sqlock::detail

// The public part (<sqlock/url.hpp>).
namespace sqlock {

parsed_url parse_database_url(const std::string& url) {
  if (url.empty()) bad(url, "empty");
  if (url.find('\0') != std::string::npos) bad(url, "contains a NUL byte");
  if (starts_with(url, "postgresql://") || starts_with(url, "postgres://"))
    return {parsed_url::kind::postgresql, url, false};
  if (starts_with(url, "mariadb://") || starts_with(url, "mysql://"))
    return {parsed_url::kind::mariadb, url, false};
  if (starts_with(url, "memory:")) {
    // The test kit's in-memory database, shared by name within this process.
    if (url.size() == 7) bad(url, "no database name (memory:NAME)");
    return {parsed_url::kind::memory, url.substr(7), false};
  }
  if (starts_with(url, "sqlite:")) {
    std::string rest = url.substr(7);
    if (starts_with(rest, "//")) {
      // sqlite:///abs/path (empty authority) or sqlite://localhost/abs/path
      rest = rest.substr(2);
      if (starts_with(rest, "localhost/")) rest = rest.substr(9);
      if (!starts_with(rest, "/"))
        bad(url, "a sqlite:// URL takes an absolute path (sqlite:///path)");
    }
    if (rest.empty()) bad(url, "no file path");
    if (rest == ":memory:")
      bad(url,
          "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
    return {parsed_url::kind::sqlite, rest, false};
  }
  if (starts_with(url, "file:")) {
    if (url == "file::memory:" || url.find("mode=memory") != std::string::npos)
      bad(url,
          "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
    return {parsed_url::kind::sqlite, url, true};
  }
  if (url == ":memory:")
    bad(url,
        "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
  if (conninfo_shape(url)) return {parsed_url::kind::postgresql, url, false};
  static const std::regex scheme(R"(^([A-Za-z][A-Za-z0-9+.-]*):)");
  std::smatch m;
  if (std::regex_search(url, m, scheme) && m[1].length() > 1)
    bad(url, "unsupported scheme '" + m[1].str() +
                 "' (use postgresql://, postgres://, a libpq key=value string, mariadb://, "
                 "mysql://, sqlite:PATH, a file: URI, a plain path, or memory:NAME in tests)");
  return {parsed_url::kind::sqlite, url, false};
}

std::shared_ptr<backend> open_backend(const std::string& database_url,
                                      const backend_options& options) {
  auto parsed = detail::parse_database_url(database_url);
  if (parsed.backend == detail::parsed_url::kind::memory)
    return detail::make_memory_backend(parsed.location, options);
  if (parsed.backend == detail::parsed_url::kind::mariadb) {
#if SQLOCK_HAVE_MARIADB
    return detail::make_mariadb_backend(parsed.location, options);
#else
    throw error(errc::invalid_argument,
                "this sqlock was built without MariaDB/MySQL support "
                "(SQLOCK_WITH_MARIADB=OFF)");
#endif
  }
  if (parsed.backend == detail::parsed_url::kind::sqlite) {
#if SQLOCK_HAVE_SQLITE
    return detail::make_sqlite_backend(parsed.location, parsed.uri, options);
#else
    throw error(errc::invalid_argument,
                "this sqlock was built without SQLite support "
                "(SQLOCK_WITH_SQLITE=OFF)");
#endif
  }
#if SQLOCK_HAVE_POSTGRESQL
  return detail::make_postgresql_backend(parsed.location, options);
#else
  throw error(errc::invalid_argument,
              "this sqlock was built without PostgreSQL support "
              "(SQLOCK_WITH_POSTGRESQL=OFF)");
#endif
}

}  // namespace sqlock
