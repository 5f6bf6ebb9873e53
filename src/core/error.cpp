// SPDX-License-Identifier: Apache-2.0
#include <sqlock/error.hpp>
#include <sqlock/events.hpp>
#include <sqlock/types.hpp>

namespace sqlock {

error::error(errc code, const std::string& message, std::string backend, std::string sqlstate)
    : std::runtime_error(message),
      code_(code),
      backend_(std::move(backend)),
      sqlstate_(std::move(sqlstate)) {}

const char* to_string(errc code) noexcept {
  switch (code) {
    case errc::unavailable:
      return "unavailable";
    case errc::schema_mismatch:
      return "schema_mismatch";
    case errc::lease_lost:
      return "lease_lost";
    case errc::in_doubt:
      return "in_doubt";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::usage:
      return "usage";
    case errc::cancelled:
      return "cancelled";
    case errc::internal:
      return "internal";
  }
  return "unknown";
}

const char* to_string(lease_state state) noexcept {
  switch (state) {
    case lease_state::held:
      return "held";
    case lease_state::at_risk:
      return "at_risk";
    case lease_state::lost:
      return "lost";
    case lease_state::released:
      return "released";
  }
  return "unknown";
}

const char* to_string(lease_end how) noexcept {
  switch (how) {
    case lease_end::live:
      return "live";
    case lease_end::released:
      return "released";
    case lease_end::expired:
      return "expired";
    case lease_end::taken_over:
      return "taken over";
    case lease_end::force_released:
      return "force-released";
    case lease_end::revoked:
      return "revoked";
    case lease_end::lost:
      return "lost";
  }
  return "unknown";
}

const char* to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "unknown";
}

const char* to_string(event_kind kind) noexcept {
  switch (kind) {
    case event_kind::attempt:
      return "attempt";
    case event_kind::acquired:
      return "acquired";
    case event_kind::not_acquired:
      return "not_acquired";
    case event_kind::renewed:
      return "renewed";
    case event_kind::renew_failed:
      return "renew_failed";
    case event_kind::lost:
      return "lost";
    case event_kind::released:
      return "released";
    case event_kind::waiting:
      return "waiting";
    case event_kind::revoke_requested:
      return "revoke_requested";
  }
  return "unknown";
}

}  // namespace sqlock
