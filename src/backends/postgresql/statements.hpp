#pragma once
// The SQL text of the PostgreSQL backend's statements (struct statements, built once per
// backend), and the names derived from text: statement-name hashes and the NOTIFY channel.

#include <string>
#include <string_view>

#include "backends/postgresql/connection.hpp"

namespace sqlock::detail::pg {

/// FNV-1a of `s`, 16 hex digits: stable across processes.
std::string fnv_hex(std::string_view s);
/// The NOTIFY channel of a schema: stable, short enough for an identifier (63 bytes).
std::string channel_for(const std::string& schema);
/// The channel of handoffs (a release that granted a queued waiter): its payload is
/// "<nonce> <token> <attempt> <acquired_us> <expires_us> <name>".
std::string handoff_channel_for(const std::string& schema);

/// Rows a purge batch deletes at most (lock rows, semaphores, orphaned holder and ticket rows).
inline constexpr int purge_batch = 500;

/// The statements, built once per backend from the schema name quoted by libpq (the first
/// connection builds them). Their parameters are documented where they are built.
struct statements {
  std::string schema_ident;
  std::string acquire, renew, renew_mixed, release, release_waiting, abandon, leave_queue, force,
      inspect, inspect_waiters, list, notify, version, read_version, inspect_watched;
  // Semaphores.
  std::string sem_acquire, sem_release, sem_release_waiting, sem_abandon, sem_force, sem_inspect,
      sem_list, sem_purge_lock, sem_purge_delete, sem_purge_orphans;
  // Purge of lock rows, and the transaction starts of the purge batches.
  std::string purge_begin, purge_delete, sem_purge_begin;
  // Migrations.
  std::string migrate_begin, schema_exists, create_schema, set_search_path, delete_version;
  std::string locks, semaphores, holders, tickets, waiters;  // qualified table names

  statements(const connection& c, const std::string& schema);
};

/// Inside a down step's transaction: locks the tables whose live rows are counted.
std::string lock_for_drop(bool locks, bool holders);
/// Inside a down step's transaction: up to 3 live rows of `table`, each with the total count.
std::string count_live(const char* table);

}  // namespace sqlock::detail::pg
