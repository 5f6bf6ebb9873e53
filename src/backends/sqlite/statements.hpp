// SPDX-License-Identifier: Apache-2.0
#pragma once
// The SQL text of every statement the SQLite backend runs (the migrations aside), in one place;
// defined once in statements.cpp, so each has one address (the connection's statement cache is
// keyed by it).

// The database clock in SQL: the host's wall clock as epoch milliseconds. A macro so that
// statements (here and in fencing.cpp) are built from it by literal concatenation.
#define SQLOCK_SQLITE_NOW_MS "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"

namespace sqlock::detail::sqlite::sql {

// Connection and transactions.
extern const char pragma_synchronous_full[];
extern const char pragma_synchronous_normal[];
extern const char pragma_journal_mode_wal[];
extern const char has_schema_table[];
extern const char now[];
extern const char lock_request_release[];
extern const char holder_request_release[];
extern const char begin[];
extern const char begin_immediate[];
extern const char commit[];
extern const char rollback[];

// Schema administration.
extern const char read_schema_version[];
extern const char delete_schema_version[];
extern const char count_live_locks[];
extern const char count_live_holders[];
extern const char next_token[];

// Locks.
extern const char lock_look[];
extern const char lock_current[];
extern const char lock_upsert[];
extern const char lock_extend[];
extern const char lock_hand_off[];
extern const char lock_renew[];
extern const char lock_nonce_token[];
extern const char lock_release[];
// The SQL functions of register_functions (sql_api.cpp): a lease named by its token alone.
extern const char lock_renew_by_token[];
extern const char lock_release_by_token[];
extern const char lock_abandon[];
extern const char lock_set_metadata[];
extern const char lock_force_release[];
extern const char lock_inspect[];
extern const char lock_waiters[];
extern const char lock_list[];

// The lock queue (schema 4).
extern const char waiters_ahead[];
extern const char waiter_refresh[];
extern const char waiter_add[];
extern const char waiter_head[];
extern const char waiter_drop[];
extern const char waiters_drop_taken[];
extern const char waiters_drop_lapsed[];

// Semaphores.
extern const char holder_release[];
extern const char holder_abandon[];
extern const char holder_renew[];
extern const char holder_renew_by_token[];
extern const char holder_by_token[];
extern const char holder_forced[];
extern const char ticket_keep[];
extern const char ticket_drop[];
extern const char ticket_add[];
extern const char holder_handed[];
extern const char tickets_to_hand[];
extern const char holder_exists[];
extern const char semaphore_token[];
extern const char semaphore_ended_upto[];
extern const char holders_delete_ended[];
extern const char tickets_delete_ended[];
extern const char holder_add[];
extern const char semaphore_upsert[];
extern const char semaphore_inspect[];
extern const char semaphore_list[];
extern const char semaphore_force_release[];
extern const char semaphore_row[];
extern const char semaphore_usage[];
extern const char semaphore_queue[];
extern const char semaphore_holders[];
extern const char semaphore_tickets[];

// Purge.
extern const char purge_pick_locks[];
extern const char purge_delete_locks[];
extern const char purge_delete_waiters[];
extern const char purge_pick_semaphores[];
extern const char purge_delete_holders[];
extern const char purge_delete_tickets[];
extern const char purge_delete_semaphore[];

// History (schema 10; history.cpp, and the 'lost' mark of abandon in locks.cpp/semaphores.cpp).
extern const char history_read[];
extern const char history_enabled[];
extern const char history_set[];
extern const char history_purge[];
extern const char history_mark_lost[];
extern const char history_unmark[];

}  // namespace sqlock::detail::sqlite::sql
