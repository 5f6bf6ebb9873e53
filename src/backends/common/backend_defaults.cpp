// SPDX-License-Identifier: Apache-2.0
// The default implementations of the backend interface's later virtuals, for backends written
// before them (third-party ones): correct, if not atomic in the database.

#include <string>

#include <sqlock/backend.hpp>
#include <sqlock/error.hpp>

#include "util/util.hpp"

namespace sqlock {

namespace {
std::string names_of(const std::vector<acquire_request>& requests) {
  std::string out;
  for (const auto& r : requests) out += (out.empty() ? "" : ", ") + detail::quoted(r.name);
  return out;
}
}  // namespace

// One name at a time, in the given order (byte order from the client, so two callers never
// hold each other's first name while waiting: a refusal never waits anyway). A refusal gives
// back what the earlier grants took; the caller sees no partial hold after the call returns.
std::vector<acquire_result> backend::try_acquire_all(const std::vector<acquire_request>& requests,
                                                     deadline until) {
  std::vector<acquire_result> out(requests.size());
  // Ends the first `n` grants; false when one of them may still be live.
  auto give_back = [&](std::size_t n) {
    bool all_ended = true;
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = requests[i];
      try {
        release({r.name, r.nonce, out[i].granted->token, lease_kind::lock}, until);
      } catch (const error&) {
        try {
          abandon({r.name, r.nonce, 0, lease_kind::lock}, until);
        } catch (const error&) {
          all_ended = false;
        }
      }
      out[i] = acquire_result{};
    }
    return all_ended;
  };
  for (std::size_t i = 0; i < requests.size(); ++i) {
    try {
      out[i] = try_acquire(requests[i], until);
    } catch (const error& e) {
      const bool ended = give_back(i);
      if (e.code() == errc::in_doubt || !ended)
        throw error(errc::in_doubt,
                    "acquire " + names_of(requests) + ": " + e.what() +
                        (ended ? "" : " (and a lock granted before it could not be given back)"),
                    e.backend(), e.sqlstate());
      throw;
    }
    if (!out[i].granted) {
      out[i].blocking = true;
      acquire_result refused = out[i];
      if (!give_back(i))
        throw error(errc::in_doubt,
                    "acquire " + names_of(requests) + ": refused on " +
                        detail::quoted(requests[i].name) +
                        ", and a lock granted before it could not be given back",
                    std::string(kind()));
      out[i] = refused;
      return out;
    }
  }
  return out;
}

bool backend::update_metadata(const lease_key& key, std::string_view metadata, deadline until) {
  (void)metadata;
  (void)until;
  throw error(errc::usage,
              "update metadata of " + detail::quoted(key.name) + ": the " + std::string(kind()) +
                  " backend does not support it",
              std::string(kind()));
}

}  // namespace sqlock
