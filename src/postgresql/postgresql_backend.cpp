// Placeholder until the PostgreSQL backend lands (issue 3): the factory reports clearly.
#include <sqlock/error.hpp>

#include "../backends.hpp"

namespace sqlock::detail {

std::shared_ptr<backend> make_postgresql_backend(const std::string&, const backend_options&) {
  throw error(errc::invalid_argument, "the PostgreSQL backend is not implemented yet",
              "postgresql");
}

}  // namespace sqlock::detail
