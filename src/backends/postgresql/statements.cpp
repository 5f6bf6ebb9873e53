// SPDX-License-Identifier: Apache-2.0
// The SQL text of the PostgreSQL backend's statements, built once per backend (the first
// connection quotes the schema name) in the constructor of `statements`: the names and helpers
// here, the statements themselves by concern in statements_locks.cpp, statements_semaphores.cpp
// and statements_admin.cpp.

#include "backends/postgresql/statements.hpp"

#include <cstdint>

namespace sqlock::detail::pg {
std::string epoch_us(const std::string& x) {
  return "(extract(epoch from " + x + ") * 1000000)::bigint";
}

// FNV-1a, hex: stable across processes.
std::string fnv_hex(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 15; i >= 0; --i) out.push_back(hex[(h >> (i * 4)) & 0xf]);
  return out;
}

// A stable channel name per schema, short enough for an identifier (63 bytes).
std::string channel_for(const std::string& schema) { return "sqlock_" + fnv_hex(schema); }
std::string handoff_channel_for(const std::string& schema) { return "sqlock_h_" + fnv_hex(schema); }

statements::statements(const connection& c, const std::string& schema) {
  schema_ident = c.escape_identifier(schema);
  locks = schema_ident + ".sqlock_locks";
  semaphores = schema_ident + ".sqlock_semaphores";
  holders = schema_ident + ".sqlock_semaphore_holders";
  tickets = schema_ident + ".sqlock_semaphore_tickets";
  waiters = schema_ident + ".sqlock_lock_waiters";
  history_table = schema_ident + ".sqlock_history";
  settings = schema_ident + ".sqlock_settings";
  next_token = "nextval(" + c.escape_literal(schema_ident + ".sqlock_token_seq") + "::regclass)";
  lock_statements();
  semaphore_statements();
  admin_statements();
  history_statements();
}

}  // namespace sqlock::detail::pg
