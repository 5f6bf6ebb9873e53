#include "url.hpp"

#include <sqlock/backend.hpp>
#include <sqlock/error.hpp>

#include <cctype>
#include <regex>

#include "backends.hpp"

namespace sqlock::detail {

namespace {
bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

[[noreturn]] void bad(const std::string& url, const std::string& why) {
  throw error(errc::invalid_argument, "database URL '" + redact_url(url) + "': " + why);
}

// libpq key=value connection strings start with a keyword followed by '='.
bool looks_like_conninfo(const std::string& s) {
  static const std::regex re(R"(^\s*[A-Za-z_]+\s*=)");
  return std::regex_search(s, re);
}
}  // namespace

std::string redact_url(const std::string& url) {
  std::string out = url;
  // scheme://user:password@host
  static const std::regex userinfo(R"(^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^@/?#]*@)");
  out = std::regex_replace(out, userinfo, "$1:****@", std::regex_constants::format_first_only);
  // ?password=... or &password=... in URIs
  static const std::regex query(R"(([?&]password=)[^&#]*)", std::regex::icase);
  out = std::regex_replace(out, query, "$1****");
  // password=... / password = '...' in key=value strings
  static const std::regex kv(R"((^|\s)(password\s*=\s*)('(\\.|[^'])*'|\S+))", std::regex::icase);
  out = std::regex_replace(out, kv, "$1$2****");
  return out;
}

parsed_url parse_database_url(const std::string& url) {
  if (url.empty()) bad(url, "empty");
  if (url.find('\0') != std::string::npos) bad(url, "contains a NUL byte");
  if (starts_with(url, "postgresql://") || starts_with(url, "postgres://"))
    return {parsed_url::kind::postgresql, url, false};
  if (starts_with(url, "sqlite:")) {
    std::string rest = url.substr(7);
    if (starts_with(rest, "//")) {
      // sqlite:///abs/path (empty authority) or sqlite://localhost/abs/path
      rest = rest.substr(2);
      if (starts_with(rest, "localhost/")) rest = rest.substr(9);
      if (!starts_with(rest, "/")) bad(url, "a sqlite:// URL takes an absolute path (sqlite:///path)");
    }
    if (rest.empty()) bad(url, "no file path");
    if (rest == ":memory:")
      bad(url, "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
    return {parsed_url::kind::sqlite, rest, false};
  }
  if (starts_with(url, "file:")) {
    if (url == "file::memory:" || url.find("mode=memory") != std::string::npos)
      bad(url, "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
    return {parsed_url::kind::sqlite, url, true};
  }
  if (url == ":memory:")
    bad(url, "in-memory SQLite is not supported (the keepalive needs its own connection); use a file");
  if (looks_like_conninfo(url)) return {parsed_url::kind::postgresql, url, false};
  static const std::regex scheme(R"(^([A-Za-z][A-Za-z0-9+.-]*):)");
  std::smatch m;
  if (std::regex_search(url, m, scheme) && m[1].length() > 1)
    bad(url, "unsupported scheme '" + m[1].str() +
                 "' (use postgresql://, postgres://, a libpq key=value string, sqlite:PATH, "
                 "a file: URI or a plain path)");
  return {parsed_url::kind::sqlite, url, false};
}

}  // namespace sqlock::detail

namespace sqlock {

std::shared_ptr<backend> open_backend(const std::string& database_url,
                                      const backend_options& options) {
  auto parsed = detail::parse_database_url(database_url);
  if (parsed.backend == detail::parsed_url::kind::sqlite) {
#ifdef SQLOCK_HAVE_SQLITE
    return detail::make_sqlite_backend(parsed.location, parsed.uri, options);
#else
    throw error(errc::invalid_argument, "this sqlock was built without SQLite support "
                                        "(SQLOCK_WITH_SQLITE=OFF)");
#endif
  }
#ifdef SQLOCK_HAVE_POSTGRESQL
  return detail::make_postgresql_backend(parsed.location, options);
#else
  throw error(errc::invalid_argument, "this sqlock was built without PostgreSQL support "
                                      "(SQLOCK_WITH_POSTGRESQL=OFF)");
#endif
}

}  // namespace sqlock
