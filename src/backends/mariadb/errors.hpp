// SPDX-License-Identifier: Apache-2.0
#pragma once
// MariaDB/MySQL error numbers -> sqlock::errc.

#include <string>

#include <sqlock/error.hpp>

namespace sqlock::detail::mariadb {

inline constexpr const char* kind_name = "mariadb";

/// The server's "lock wait timeout" (1205, what NOWAIT reports on MariaDB), MySQL 8's NOWAIT
/// error (3572) and a deadlock (1213): the row is held by another transaction.
bool row_is_locked(unsigned errnum) noexcept;

/// Whether the connection is gone after error `errnum`: Connector/C's own errors (CR_*,
/// 2000-2999), a server shutting down (1053), a killed connection (1927) or one the server
/// closed for idling inside a transaction (4031).
bool connection_lost(unsigned errnum) noexcept;

/// The errc for server or client error `errnum` of `what`; `after_send` for an error that
/// lost the connection once the statement may have reached the server.
errc code_for(unsigned errnum, errc after_send) noexcept;

/// " (run `sqlock migrate up`)" and the like: what to do about `errnum`, or empty.
std::string advice_for(unsigned errnum);

}  // namespace sqlock::detail::mariadb
