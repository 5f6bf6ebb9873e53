// SPDX-License-Identifier: Apache-2.0
// Written only against docs/design.md section 6: the public API as a user sees it.
#include <cstdio>
#include <iostream>

#include <sqlock/sqlock.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer SQLITE_FILE\n";
    return 2;
  }
  using namespace std::chrono_literals;
  try {
    sqlock::client a(std::string("sqlite:") + argv[1]);
    a.migrate();
    sqlock::client b(std::string("sqlite:") + argv[1]);

    sqlock::lock_options opts;
    opts.ttl = 2s;
    opts.metadata = "package test";
    std::optional<sqlock::lease> first = a.try_acquire("report", opts);
    if (!first || first->token() <= 0) return 10;
    if (b.try_acquire("report")) return 11;  // held: refused, not an exception
    std::optional<sqlock::lock_record> rec = b.inspect("report");
    if (!rec || !rec->held || rec->metadata != "package test") return 12;
    std::int64_t t1 = first->token();
    first->release();
    sqlock::lease second = b.acquire("report", opts);
    if (second.token() <= t1) return 13;
    if (!second || second.state() != sqlock::lease_state::held) return 14;
    try {
      (void)a.try_acquire("", opts);
      return 15;
    } catch (const sqlock::error& e) {
      if (e.code() != sqlock::errc::invalid_argument) return 16;
    }
    std::printf("consumer ok: sqlock %s, tokens %lld then %lld\n", sqlock::version_string,
                static_cast<long long>(t1), static_cast<long long>(second.token()));
  } catch (const sqlock::error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
