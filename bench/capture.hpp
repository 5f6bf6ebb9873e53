// SPDX-License-Identifier: Apache-2.0
#pragma once
// sqlock's statements as the PostgreSQL server received them: a client whose role logs every
// statement (log_statement = all) runs one cycle, and its statements and their parameters are
// read back from the server log. The baselines then send exactly those texts, so the bench
// never keeps a copy of sqlock's SQL, nor of anything else private to the backend.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench.hpp"

namespace bench {

/// The lock cycle: one acquire, renew-many and release, as the server logged them.
struct statements {
  std::string acquire, release, renew;
  /// The NOTIFY channel sqlock's release passes as its parameter $4 (per schema; the capture
  /// runs on the schema the scenarios use, `public`).
  std::string channel;
  /// The handoff channel, the release's parameter $5 (schema 4).
  std::string handoff_channel;
};

/// Runs one acquire/renew/release through `cfg.pg_capture_url` and reads them back.
statements capture(const config& cfg);

/// The semaphore grant and release as the server logged them, with the parameters of the
/// capture run. Each parameter slot is classified by its captured value, so the bare loop fills
/// the slots that vary (name, nonce, owner, token, channel, and the limit, which differs
/// between the uncontended and the contended runs) and sends every other one exactly as sqlock
/// did (count, ttl, metadata, flags, ticket time), whatever their order.
struct sem_statements {
  enum class slot { literal, name, nonce, owner, token, channel, limit };
  struct stmt {
    std::string sql, params;  // params: the log's DETAIL text
    std::vector<slot> slots;
    std::vector<std::string> literals;  // the captured value of each slot
  };
  stmt acquire, release;
};

/// Runs one semaphore acquire (count 1 of `limit`) and release through the capture role;
/// `chan` is the channel from capture(), to recognise its slot.
sem_statements capture_semaphore(const config& cfg, const std::string& chan, std::int64_t limit);

/// "$1 = <name>, $2 = '30000', ..." for statements.sql.
std::string describe_slots(const sem_statements::stmt& st);

/// "$1 = 'a', $2 = NULL, ..." (a log's DETAIL text) -> values (NULL as an empty optional).
std::vector<std::optional<std::string>> parse_log_params(const std::string& detail);

}  // namespace bench
