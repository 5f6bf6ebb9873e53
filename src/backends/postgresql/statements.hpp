// SPDX-License-Identifier: Apache-2.0
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
/// The prefix of the handoff channels (a release that granted a queued waiter notifies the
/// channel its ticket names): each backend instance LISTENs on its own, this prefix + "_" + 8
/// random hex digits (34 bytes). The payload is
/// "<nonce> <token> <attempt> <acquired_us> <expires_us> <name>".
std::string handoff_channel_for(const std::string& schema);

/// The epoch-microsecond integer of a timestamptz expression, computed by the server.
std::string epoch_us(const std::string& x);

/// Makes the current transaction commit without waiting for its WAL flush (soft state only:
/// releases, a waiter's ticket and mark; see the lock releases in statements_locks.cpp).
inline constexpr const char* unflushed_commit = "set_config('synchronous_commit', 'off', true)";

/// Rows a purge batch deletes at most (lock rows, semaphores, orphaned holder and ticket rows).
inline constexpr int purge_batch = 500;

/// The statements, built once per backend from the schema name quoted by libpq (the first
/// connection builds them). Their parameters are documented where they are built.
struct statements {
  std::string schema_ident;
  std::string acquire, acquire_try, renew, renew_mixed, release, release_waiting, abandon,
      leave_queue, force, request_release, sem_request_release, inspect, inspect_waiters, list,
      notify, version, read_version, inspect_watched, acquire_all, set_metadata;
  // Semaphores.
  std::string sem_acquire, sem_release, sem_release_waiting, sem_abandon, sem_force, sem_inspect,
      sem_list, sem_purge_lock, sem_purge_delete, sem_purge_orphans;
  // Purge of lock rows, and the transaction starts of the purge batches.
  std::string purge_begin, purge_delete, sem_purge_begin;
  // Migrations.
  std::string migrate_begin, schema_exists, create_schema, set_search_path, delete_version;
  // History (schema 10, statements_history.cpp), and the abandons that record 'lost'.
  std::string history, history_enabled, set_history, purge_history, abandon_lost, sem_abandon_lost;
  std::string locks, semaphores, holders, tickets, waiters;  // qualified table names
  std::string history_table, settings;                       // qualified (schema 10)
  std::string next_token;  // nextval() of the schema's token sequence

  statements(const connection& c, const std::string& schema);

 private:
  // The constructor's parts, by concern (statements_locks.cpp, statements_semaphores.cpp,
  // statements_admin.cpp).
  void lock_statements();
  void semaphore_statements();
  void admin_statements();
  void history_statements();
};

/// Inside a down step's transaction: locks the tables whose live rows are counted.
std::string lock_for_drop(bool locks, bool holders);
/// Inside a down step's transaction: up to 3 live rows of `table`, each with the total count.
std::string count_live(const char* table);

}  // namespace sqlock::detail::pg
