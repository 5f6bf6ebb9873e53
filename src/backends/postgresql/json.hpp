// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one JSON encoder of the PostgreSQL backend. Renew-many sends its leases as ONE json
// parameter (json_to_recordset on the server), and purge its batch of semaphore names (one
// parameter and one statement text whatever the count). Every value goes
// through append_json_string, which ALWAYS quotes and escapes: '"', '\\' and every control
// character (U+0000..U+001F, and U+007F for good measure) become escapes; other bytes pass
// through unchanged (inputs are validated UTF-8 before they reach a backend). Numbers are
// written by std::to_string, never from user text.

#include <cstdint>
#include <string>
#include <string_view>

namespace sqlock::detail::pg {

inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

inline std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

}  // namespace sqlock::detail::pg
