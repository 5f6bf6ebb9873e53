// SPDX-License-Identifier: Apache-2.0
#pragma once
// The SQL text of every statement the MariaDB backend runs (the migrations aside), in one place.
// Parameters are numbered (?1, ?2, ...; see connection.hpp). Times are epoch microseconds: ?now
// is the instant the write transaction read with its lock (write_transaction::now).

#include <string>

// The database clock in SQL: epoch microseconds, independent of the session's time zone.
#define SQLOCK_MARIADB_NOW_US "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"

namespace sqlock::detail::mariadb::sql {

// Connection and transactions.
extern const char session_setup[];
extern const char session_setup_mariadb[];
extern const char now[];
extern const char commit[];
extern const char rollback[];
extern const char write_lock[];
extern const char set_counter[];

// Schema administration.
extern const char has_schema_table[];
extern const char read_schema_version[];
extern const char delete_schema_version[];
extern const char migrate_lock[];
extern const char migrate_unlock[];
extern const char count_live_locks[];
extern const char count_live_holders[];

// Locks.
extern const char lock_look[];
extern const char lock_row[];
extern const char lock_upsert[];
extern const char lock_set_expiry[];
extern const char lock_hand_off[];
extern const char lock_request_release[];
extern const char holder_request_release[];
extern const char lock_set_metadata[];
extern const char lock_force_release[];
extern const char lock_inspect[];
extern const char lock_waiters[];
extern const char lock_list[];
/// Renewal in one statement each: the rows of `n` names (locks) or (name, nonce) pairs
/// (semaphore holders), locked (`locking`) unless another transaction holds them, and their new
/// expiries.
std::string renew_lock_rows(std::size_t n, bool locking);
std::string renew_lock_update(std::size_t n);
std::string renew_holder_rows(std::size_t n, bool locking);
std::string renew_holder_update(std::size_t n);

// The lock queue (schema 4).
extern const char waiters_ahead[];
extern const char waiter_refresh[];
extern const char waiter_add[];
extern const char waiter_head[];
extern const char waiter_drop[];
extern const char waiters_drop_taken[];
extern const char waiters_drop_lapsed[];

// Semaphores.
extern const char holder_row[];
extern const char holder_set_expiry[];
extern const char ticket_keep[];
extern const char ticket_drop[];
extern const char ticket_add[];
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
extern const char semaphore_lock_holders[];
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

}  // namespace sqlock::detail::mariadb::sql
