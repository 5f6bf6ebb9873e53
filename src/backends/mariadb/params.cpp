// SPDX-License-Identifier: Apache-2.0
// mariadb:// and mysql:// URLs, and the password file.

#include "backends/mariadb/params.hpp"

#include <cstdlib>
#include <fstream>
#include <optional>

#include <sqlock/error.hpp>

#include "backends/common/url.hpp"
#include "backends/mariadb/errors.hpp"

namespace sqlock::detail::mariadb {
namespace {

// `why` may quote a piece of the URL (a parameter's name): redact_message hides any piece of a
// secret in it, wherever the parse cut the URL.
[[noreturn]] void bad(const std::string& url, const std::string& why) {
  // An '@' after the first '?': most likely a raw '?' in the password, read as the query's start.
  const auto q = url.find('?');
  const std::string hint = q != std::string::npos && url.find('@', q) != std::string::npos
                               ? " (a '?' in the user name or password must be percent-encoded: "
                                 "%3F)"
                               : "";
  throw error(errc::invalid_argument,
              redact_message("database URL '" + redact_url(url) + "': " + why + hint, url),
              kind_name);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string decode(const std::string& url, std::string_view s, const char* part) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int hi = i + 2 < s.size() ? hex(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad(url, std::string("malformed percent-escape in the ") + part);
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  if (out.find('\0') != std::string::npos) bad(url, std::string("NUL byte in the ") + part);
  return out;
}

unsigned number(const std::string& url, const std::string& text, const char* what, unsigned lo,
                unsigned hi) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    bad(url, std::string(what) + " must be a number from " + std::to_string(lo) + " to " +
                 std::to_string(hi));
  unsigned long v = std::stoul(text);
  if (v < lo || v > hi)
    bad(url,
        std::string(what) + " must be from " + std::to_string(lo) + " to " + std::to_string(hi));
  return static_cast<unsigned>(v);
}

bool field_matches(const std::string& pattern, const std::string& v) {
  return pattern == "*" || pattern == v;
}

// One line of a password file, split at unescaped ':' (a '\' escapes ':' and '\').
std::vector<std::string> split_line(const std::string& line) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size()) {
      out.back() += line[++i];
    } else if (line[i] == ':' && out.size() < 4) {
      out.emplace_back();
    } else {
      out.back() += line[i];
    }
  }
  return out;
}

std::optional<std::string> from_passfile(const std::string& path, const connection_params& p) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  const std::string host = p.socket.empty() ? p.host : "localhost";
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto f = split_line(line);
    if (f.size() != 4) continue;
    if (field_matches(f[0], host) && field_matches(f[1], std::to_string(p.port)) &&
        field_matches(f[2], p.user))
      return f[3];
  }
  return std::nullopt;
}

}  // namespace

connection_params parse_url(const std::string& url) {
  connection_params p;
  std::size_t scheme = url.find("://");
  if (scheme == std::string::npos ||
      (url.compare(0, scheme, "mariadb") != 0 && url.compare(0, scheme, "mysql") != 0))
    bad(url, "not a mariadb:// or mysql:// URL");
  std::string rest = url.substr(scheme + 3);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest.resize(q);
  }
  std::string path;
  // The userinfo ends at the LAST '@' before the path (a raw '@' in a password stays in it).
  std::size_t slash = rest.find('/', rest.find('@') == std::string::npos ? 0 : rest.rfind('@'));
  if (slash != std::string::npos) {
    path = rest.substr(slash + 1);
    rest.resize(slash);
  }
  std::string hostport = rest;
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string userinfo = rest.substr(0, at);
    hostport = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    p.user = decode(url, userinfo.substr(0, colon), "user name");
    if (colon != std::string::npos) {
      p.password = decode(url, userinfo.substr(colon + 1), "password");
      p.has_password = true;
    }
  }
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) bad(url, "unterminated [IPv6 address]");
    p.host = hostport.substr(1, close - 1);
    std::string after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') bad(url, "unexpected text after the [IPv6 address]");
      p.port = number(url, after.substr(1), "the port", 1, 65535);
    }
  } else if (!hostport.empty()) {
    auto colon = hostport.find(':');
    if (colon != 0) p.host = decode(url, hostport.substr(0, colon), "host");
    if (colon != std::string::npos)
      p.port = number(url, hostport.substr(colon + 1), "the port", 1, 65535);
  }
  p.database = decode(url, path, "database name");
  if (p.database.empty())
    bad(url, "no database (mariadb://user@host:port/DATABASE): sqlock's tables live in one");
  if (p.database.find('/') != std::string::npos) bad(url, "the database name contains '/'");
  if (p.database.size() > 64) bad(url, "the database name is longer than 64 characters");
  std::string passfile;
  std::size_t at = 0;
  while (at <= query.size() && !query.empty()) {
    std::size_t amp = query.find('&', at);
    std::string item = query.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
    at = amp == std::string::npos ? query.size() + 1 : amp + 1;
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) bad(url, "query parameter without '=' (key=value)");
    std::string key = decode(url, item.substr(0, eq), "query");
    std::string val = decode(url, item.substr(eq + 1), "query");
    if (key == "socket") {
      p.socket = val;
    } else if (key == "connect_timeout") {
      p.connect_timeout = number(url, val, "connect_timeout", 1, 3600);
    } else if (key == "read_timeout") {
      p.read_timeout = number(url, val, "read_timeout", 1, 86400);
    } else if (key == "write_timeout") {
      p.write_timeout = number(url, val, "write_timeout", 1, 86400);
    } else if (key == "passfile") {
      passfile = val;
    } else if (key == "password") {
      bad(url, "put the password in the userinfo (user:password@host) or a password file");
    } else {
      bad(url, "unknown parameter '" + key +
                   "' (known: socket, connect_timeout, read_timeout, write_timeout, passfile)");
    }
  }
  if (p.user.empty()) {
    const char* u = std::getenv("USER");
    p.user = u ? u : "root";
  }
  if (!p.has_password) {
    if (passfile.empty())
      if (const char* env = std::getenv("SQLOCK_MARIADB_PASSFILE")) passfile = env;
    if (!passfile.empty())
      if (auto pw = from_passfile(passfile, p)) {
        p.password = *pw;
        p.has_password = true;
      }
  }
  p.display =
      url.substr(0, scheme) + "://" + p.user + "@" +
      (p.socket.empty() ? (p.host.find(':') != std::string::npos ? "[" + p.host + "]" : p.host) +
                              ":" + std::to_string(p.port)
                        : "(socket " + p.socket + ")") +
      "/" + p.database;
  return p;
}

}  // namespace sqlock::detail::mariadb
