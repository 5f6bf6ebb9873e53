// SPDX-License-Identifier: Apache-2.0
// The client's administration calls: inspect and list, force and requested releases, purge, the
// history. Each validates its input before any I/O, checks the schema once, and makes one backend
// call; nothing here holds a lease.

#include <sqlock/client.hpp>
#include <sqlock/error.hpp>

#include "core/core.hpp"
#include "util/util.hpp"
#include "util/validate.hpp"

namespace sqlock {

std::optional<semaphore_record> client::inspect_semaphore(std::string_view name) {
  detail::validate_name(name);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().inspect_semaphore(name, core_->op_deadline());
}

std::vector<semaphore_record> client::list_semaphores(const list_filter& filter) {
  detail::validate_prefix(filter.prefix);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().list_semaphores(filter, core_->op_deadline());
}

std::size_t client::force_release_semaphore(std::string_view name, std::int64_t token) {
  detail::validate_name(name);
  if (token < 0) throw error(errc::invalid_argument, "force_release_semaphore: negative token");
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().force_release_semaphore(name, token, core_->op_deadline());
}

std::optional<lock_record> client::inspect(std::string_view name) {
  detail::validate_name(name);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().inspect(name, core_->op_deadline());
}

std::vector<lock_record> client::list(const list_filter& filter) {
  detail::validate_prefix(filter.prefix);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().list(filter, core_->op_deadline());
}

bool client::force_release(std::string_view name) {
  detail::validate_name(name);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().force_release(name, core_->op_deadline());
}

namespace {
void validate_grace(std::chrono::milliseconds grace) {
  if (grace < std::chrono::milliseconds::zero() || grace > max_ttl)
    throw error(errc::invalid_argument, "request_release: grace must be between 0 and " +
                                            std::to_string(max_ttl.count()) + " ms, got " +
                                            std::to_string(grace.count()) + " ms");
}
}  // namespace

bool client::request_release(std::string_view name, std::chrono::milliseconds grace) {
  detail::validate_name(name);
  validate_grace(grace);
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().request_release(lease_kind::lock, name, 0, grace, core_->op_deadline()) > 0;
}

std::size_t client::request_release_semaphore(std::string_view name,
                                              std::chrono::milliseconds grace, std::int64_t token) {
  detail::validate_name(name);
  validate_grace(grace);
  if (token < 0) throw error(errc::invalid_argument, "request_release_semaphore: negative token");
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().request_release(lease_kind::semaphore, name, token, grace,
                                     core_->op_deadline());
}

std::size_t client::purge(std::chrono::milliseconds free_for) {
  if (free_for < std::chrono::milliseconds::zero())
    throw error(errc::invalid_argument, "purge: free_for must not be negative");
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().purge(free_for, core_->op_deadline());
}

std::vector<history_record> client::history(const history_filter& filter) {
  if (!filter.name.empty()) detail::validate_name(filter.name);
  if (filter.since < std::chrono::milliseconds::zero())
    throw error(errc::invalid_argument, "history: since must not be negative");
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().history(filter, core_->op_deadline());
}

bool client::enable_history(bool on) {
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().set_history_enabled(on, core_->op_deadline());
}

bool client::history_enabled() {
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().history_enabled(core_->op_deadline());
}

std::size_t client::purge_history(std::chrono::milliseconds older_than) {
  if (older_than < std::chrono::milliseconds::zero())
    throw error(errc::invalid_argument, "purge history: older_than must not be negative");
  core_->ensure_open();
  core_->ensure_schema();
  return core_->db().purge_history(older_than, core_->op_deadline());
}

}  // namespace sqlock
