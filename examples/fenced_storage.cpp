// SPDX-License-Identifier: Apache-2.0
// Kleppmann's fenced storage service (Martin Kleppmann, "How to do distributed locking", 2016):
// client 1 takes the lease, then pauses (a long GC pause stops every thread, the keepalive too)
// past its lease. Client 2 takes the lease with a larger token and writes. Client 1 wakes up, still
// believes it holds the lock and writes with its old token: the storage rejects it, because it
// remembers the highest token.
//
// usage: fenced_storage DATABASE_URL

#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

// The protected resource: it checks every write's token with a sqlock::fence.
class storage {
 public:
  bool write(const std::string& file, const std::string& data, std::int64_t token) {
    if (!fence_.accept(file, token)) {
      std::printf("storage: REJECTED write to %s with token %lld (highest seen %lld)\n",
                  file.c_str(), static_cast<long long>(token),
                  static_cast<long long>(fence_.highest(file)));
      return false;
    }
    files_[file] = data;
    std::printf("storage: ok, %s = \"%s\" (token %lld)\n", file.c_str(), data.c_str(),
                static_cast<long long>(token));
    return true;
  }
  const std::string& read(const std::string& file) { return files_[file]; }

 private:
  sqlock::fence fence_;
  std::map<std::string, std::string> files_;
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL\n", argv[0]);
    return 64;
  }
  try {
    sqlock::client client1(argv[1]);
    client1.migrate();
    sqlock::client client2(argv[1]);
    storage store;

    sqlock::lock_options opts;
    opts.ttl = 300ms;
    opts.keepalive = false;  // the pause below stops the whole process, keepalive included
    auto lease1 = client1.try_acquire("file-lock", opts);
    if (!lease1) return 1;
    std::printf("client 1: got the lease, token %lld\n", static_cast<long long>(lease1->token()));
    std::int64_t token1 = lease1->token();  // what client 1 will send after its pause

    std::puts("client 1: stop-the-world pause...");
    std::this_thread::sleep_for(600ms);  // past its lease

    auto lease2 = client2.acquire("file-lock");
    std::printf("client 2: got the lease, token %lld\n", static_cast<long long>(lease2.token()));
    if (!store.write("report.csv", "written by client 2", lease2.token())) return 1;

    std::puts("client 1: wakes up and writes, believing it still holds the lock");
    if (store.write("report.csv", "written by client 1", token1)) return 1;  // must be rejected
    std::printf("client 1: lease lost? %s\n", lease1->lost() ? "yes" : "no");
    std::printf("report.csv = \"%s\"\n", store.read("report.csv").c_str());
    return store.read("report.csv") == "written by client 2" ? 0 : 1;
  } catch (const sqlock::error& e) {
    std::fprintf(stderr, "fenced_storage: %s\n", e.what());
    return 1;
  }
}
