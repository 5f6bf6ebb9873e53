// SPDX-License-Identifier: Apache-2.0
// Same-database fencing on PostgreSQL: the protected table lives in the same database as the
// lock rows, and the application's own transaction calls sqlock_assert_held(name, token) first.
// It fails unless the token is the live lease, and it share-locks the lock row until the
// transaction ends, so no takeover can commit in between. A stalled holder's late write fails.
//
// usage: fenced_write_postgresql DATABASE_URL [SCHEMA]   (a scratch schema, dropped at the end)

#include <cstdio>
#include <thread>

#include <sqlock/postgresql.hpp>
#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {
// The application's write: the lease check and the insert in one transaction.
bool fenced_append(pqxx::connection& db, const std::string& schema, std::int64_t token,
                   const std::string& entry) {
  pqxx::work tx(db);
  try {
    sqlock::postgresql::assert_held(tx, "ledger", token, schema);
    tx.exec_params(
        "INSERT INTO " + tx.quote_name(schema) + ".ledger (entry, token) VALUES ($1, $2)", entry,
        token);
    tx.commit();
    std::printf("appended \"%s\" with token %lld\n", entry.c_str(), static_cast<long long>(token));
    return true;
  } catch (const sqlock::error& e) {
    std::printf("rejected \"%s\": %s\n", entry.c_str(), e.what());
    return false;  // tx rolls back
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATABASE_URL [SCHEMA]\n", argv[0]);
    return 64;
  }
  const std::string schema = argc > 2 ? argv[2] : "sqlock_example";
  try {
    sqlock::client_options opts;
    opts.backend.schema = schema;
    sqlock::client locks(argv[1], opts);
    locks.migrate();  // creates the schema if needed
    pqxx::connection app(argv[1]);
    {
      pqxx::work tx(app);
      tx.exec("CREATE TABLE IF NOT EXISTS " + tx.quote_name(schema) +
              ".ledger (entry text NOT NULL, token bigint NOT NULL)");
      tx.commit();
    }
    sqlock::lock_options short_lease;
    short_lease.ttl = 300ms;
    short_lease.keepalive = false;
    auto old = locks.try_acquire("ledger", short_lease);
    bool ok = old && fenced_append(app, schema, old->token(), "first entry");
    std::this_thread::sleep_for(500ms);  // the holder stalls past its lease
    sqlock::client other(argv[1], opts);
    auto fresh = other.acquire("ledger");
    ok = ok && fenced_append(app, schema, fresh.token(), "second entry") &&
         !fenced_append(app, schema, old->token(), "late entry from the stalled holder");
    fresh.release();
    pqxx::work cleanup(app);
    cleanup.exec("DROP SCHEMA " + cleanup.quote_name(schema) + " CASCADE");
    cleanup.commit();
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fenced_write_postgresql: %s\n", e.what());
    return 1;
  }
}
