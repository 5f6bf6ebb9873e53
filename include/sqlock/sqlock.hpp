// SPDX-License-Identifier: Apache-2.0
#pragma once
/// \file
/// Umbrella header: distributed locks as rows in the SQL database you already run.

#include <sqlock/backend.hpp>
#include <sqlock/client.hpp>
#include <sqlock/config.hpp>
#include <sqlock/election.hpp>
#include <sqlock/error.hpp>
#include <sqlock/events.hpp>
#include <sqlock/fence.hpp>
#include <sqlock/lease.hpp>
#include <sqlock/migrations.hpp>
#include <sqlock/mutex.hpp>
#include <sqlock/shared_mutex.hpp>
#include <sqlock/types.hpp>
#include <sqlock/url.hpp>
#include <sqlock/validate.hpp>
#include <sqlock/version.hpp>
