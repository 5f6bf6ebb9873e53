#pragma once
// The SQL migrations, embedded at build time from migrations/<backend>/*.sql (public:
// <sqlock/migrations.hpp>); the backends step through them.

#include <sqlock/migrations.hpp>

namespace sqlock::detail {

using sqlock::embedded_migrations;
using sqlock::latest_migration;
using sqlock::migration;

}  // namespace sqlock::detail
