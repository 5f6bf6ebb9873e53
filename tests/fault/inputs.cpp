// SPDX-License-Identifier: Apache-2.0
// sqlock_fault_inputs: scenario 10, bad inputs. Each case must end in a typed sqlock::error
// (the expected errc when one is documented, anything but errc::internal otherwise), change no
// lock row, and leak nothing (file descriptors and threads are back to their count once the
// client is gone).
//
// usage: sqlock_fault_inputs --schema S --sqlite FILE
// needs SQLOCK_TEST_POSTGRESQL_URL, SQLOCK_TEST_POSTGRESQL_ADMIN_URL,
// SQLOCK_TEST_POSTGRESQL_RUNTIME_URL (scripts/with-postgres). Prints one line per case and a
// summary line; exits 1 when a case failed.

#include <dirent.h>
#include <libpq-fe.h>

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sqlock/sqlock.hpp>

#include "common.hpp"

namespace {

using namespace std::chrono_literals;
using sqlock::errc;

std::string env(const char* k) {
  const char* v = std::getenv(k);
  if (!v) throw std::runtime_error(std::string(k) + " not set: run under scripts/with-postgres");
  return v;
}

int count_dir(const char* path) {
  int n = 0;
  if (DIR* d = ::opendir(path)) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

/// Raw SQL for set-up and for reading the rows back (a connection per call: nothing kept).
std::string sql(const std::string& url, const std::string& q) {
  PGconn* c = PQconnectdb(url.c_str());
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(c, q.c_str());
  std::string out;
  auto st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string why = PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    throw std::runtime_error("setup SQL failed: " + why + " in: " + q);
  }
  for (int i = 0; i < PQntuples(r); ++i) {
    for (int j = 0; j < PQnfields(r); ++j) out += std::string(PQgetvalue(r, i, j)) + "|";
    out += "\n";
  }
  PQclear(r);
  PQfinish(c);
  return out;
}

struct runner {
  int passed = 0, failed = 0;
  std::function<std::string()> snapshot;

  /// Runs `body` (which must throw); `want` empty = any typed code but internal.
  void run(const std::string& label, std::optional<errc> want, const std::function<void()>& body) {
    std::string before = snapshot ? snapshot() : "";
    int fds = count_dir("/proc/self/fd"), threads = count_dir("/proc/self/task");
    std::string got = "no error";
    bool typed = false;
    try {
      body();
    } catch (const sqlock::error& e) {
      got = sqlock::to_string(e.code());
      typed = e.code() != errc::internal && (!want || e.code() == *want);
    } catch (const std::exception& e) {
      got = std::string("untyped: ") + e.what();
    }
    // Client threads end with the client; give the kernel a moment to reap them.
    int fds_after = 0, threads_after = 0;
    for (int i = 0; i < 50; ++i) {
      fds_after = count_dir("/proc/self/fd");
      threads_after = count_dir("/proc/self/task");
      if (fds_after <= fds && threads_after <= threads) break;
      std::this_thread::sleep_for(20ms);
    }
    std::string after = snapshot ? snapshot() : "";
    bool unchanged = before == after;
    bool ok = typed && unchanged && fds_after <= fds && threads_after <= threads;
    (ok ? passed : failed)++;
    std::cout << (ok ? "ok   " : "FAIL ") << label << ": " << got
              << (want ? std::string(" (want ") + sqlock::to_string(*want) + ")" : "")
              << (unchanged ? "" : " ROWS CHANGED")
              << (fds_after > fds ? " FD LEAK " + std::to_string(fds_after - fds) : "")
              << (threads_after > threads ? " THREAD LEAK" : "") << "\n";
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    fault::args a(argc, argv);
    const std::string url = env("SQLOCK_TEST_POSTGRESQL_URL");
    const std::string admin = env("SQLOCK_TEST_POSTGRESQL_ADMIN_URL");
    const std::string runtime = env("SQLOCK_TEST_POSTGRESQL_RUNTIME_URL");
    const std::string schema = a.str("schema", "fault_inputs");
    const std::string q = "\"" + schema + "\"";
    const std::string sqlite_file = a.str("sqlite");
    sqlock::client_options o;
    o.backend.schema = schema;
    o.operation_timeout = 3000ms;
    {
      sqlock::client c(url, o);
      c.migrate();
    }
    // Rows to protect: one held (by the `holder` client for the whole run), one released.
    sqlock::client holder(url, o);
    sqlock::lock_options long_lease;
    long_lease.ttl = 60s;
    auto held = holder.try_acquire("held", long_lease);
    if (auto r = holder.try_acquire("released", long_lease)) r->release();
    runner t;
    t.snapshot = [&] {
      return sql(admin, "SELECT name, owner, nonce, token, expires_at, metadata FROM " + q +
                            ".sqlock_locks ORDER BY name");
    };
    auto acquire_with = [&](const std::string& u, sqlock::client_options co,
                            const std::string& name, sqlock::lock_options lo = {}) {
      return [=] {
        sqlock::client c(u, co);
        auto l = c.try_acquire(name, lo);
      };
    };
    auto ttl = [](std::chrono::milliseconds v) {
      sqlock::lock_options lo;
      lo.ttl = v;
      return lo;
    };
    auto meta = [](std::string m) {
      sqlock::lock_options lo;
      lo.metadata = std::move(m);
      return lo;
    };
    // Names.
    t.run("empty name", errc::invalid_argument, acquire_with(url, o, ""));
    t.run("256-byte name", errc::invalid_argument, acquire_with(url, o, std::string(256, 'n')));
    t.run("name with NUL", errc::invalid_argument, acquire_with(url, o, std::string("a\0b", 3)));
    t.run("name not UTF-8", errc::invalid_argument, acquire_with(url, o, "bad\xff"));
    // TTLs and metadata.
    t.run("ttl 0", errc::invalid_argument, acquire_with(url, o, "released", ttl(0ms)));
    t.run("ttl 99 ms", errc::invalid_argument, acquire_with(url, o, "released", ttl(99ms)));
    t.run("ttl negative", errc::invalid_argument, acquire_with(url, o, "released", ttl(-5s)));
    t.run("ttl 8 days", errc::invalid_argument,
          acquire_with(url, o, "released", ttl(std::chrono::hours{24 * 8})));
    t.run("metadata 4097 bytes", errc::invalid_argument,
          acquire_with(url, o, "released", meta(std::string(4097, 'm'))));
    // URLs.
    for (const char* bad : {"mysql://u@h/db", "", ":memory:", "sqlite::memory:",
                            "postgresql://u@[::1/db", "postgresql://u@127.0.0.1/db?nonsense=1"})
      t.run(std::string("URL '") + bad + "'", errc::invalid_argument,
            acquire_with(bad, o, "released"));
    // libpq parses this one and fails only when connecting (reported below the library's URL
    // check, so it comes back as a connection failure): any typed error will do.
    t.run("URL 'host=127.0.0.1 port=notaport'", {},
          acquire_with("host=127.0.0.1 port=notaport", o, "released"));
    t.run("URL to a closed port", errc::unavailable,
          acquire_with("postgresql://sqlock_test@127.0.0.1:1/sqlock?connect_timeout=2", o,
                       "released"));
    // Missing or foreign schema versions.
    {
      sqlock::client_options m = o;
      m.backend.schema = schema + "_missing";
      t.run("missing schema", errc::schema_mismatch, acquire_with(url, m, "released"));
      sqlock::client_options n = o;
      n.backend.schema = schema + "_new";
      {
        sqlock::client c(url, n);
        c.migrate();
      }
      sql(admin, "INSERT INTO \"" + n.backend.schema + "\".sqlock_schema_version VALUES (99)");
      t.run("schema newer than the library", errc::schema_mismatch,
            acquire_with(url, n, "released"));
      sql(admin, "DELETE FROM \"" + n.backend.schema + "\".sqlock_schema_version");
      t.run("schema without a version row (older)", errc::schema_mismatch,
            acquire_with(url, n, "released"));
      sql(admin, "DROP SCHEMA \"" + n.backend.schema + "\" CASCADE");
    }
    // A read-only database session.
    t.run("read-only database", errc::unavailable,
          acquire_with(url + "?options=-c%20default_transaction_read_only%3Don", o, "released"));
    // Revoked grants for the least-privilege role.
    sql(admin, "GRANT USAGE ON SCHEMA " + q + " TO sqlock_runtime; GRANT SELECT ON " + q +
                   ".sqlock_schema_version TO sqlock_runtime; GRANT SELECT, INSERT, UPDATE, "
                   "DELETE ON " +
                   q + ".sqlock_locks, " + q +
                   ".sqlock_lock_waiters TO sqlock_runtime; GRANT USAGE ON SEQUENCE " + q +
                   ".sqlock_token_seq TO sqlock_runtime");
    sql(admin, "REVOKE UPDATE ON " + q + ".sqlock_locks FROM sqlock_runtime");
    t.run("revoked UPDATE", errc::invalid_argument, acquire_with(runtime, o, "released"));
    sql(admin, "GRANT UPDATE ON " + q +
                   ".sqlock_locks TO sqlock_runtime; REVOKE USAGE ON "
                   "SEQUENCE " +
                   q + ".sqlock_token_seq FROM sqlock_runtime");
    t.run("revoked sequence USAGE", errc::invalid_argument, acquire_with(runtime, o, "released"));
    sql(admin, "REVOKE ALL ON SCHEMA " + q + " FROM sqlock_runtime");
    t.run("revoked schema USAGE", {}, acquire_with(runtime, o, "released"));
    // An exhausted token sequence: refused with a typed error, never a wrapped token.
    sql(admin, "SELECT setval('" + q + ".sqlock_token_seq', 9223372036854775807)");
    t.run("exhausted sequence, existing row", {}, acquire_with(url, o, "released"));
    t.run("exhausted sequence, new row", {}, acquire_with(url, o, "fresh"));
    sql(admin, "ALTER SEQUENCE " + q + ".sqlock_token_seq MAXVALUE 1000000 RESTART WITH 1000000");
    sql(admin, "SELECT nextval('" + q + ".sqlock_token_seq')");
    t.run("sequence at MAXVALUE", {}, acquire_with(url, o, "released"));
    // SQLite: a missing file (only migrate creates one) and a read-only database.
    t.snapshot = nullptr;
    t.run("SQLite file missing", {}, acquire_with("sqlite:" + sqlite_file + ".missing", o, "x"));
    {
      sqlock::client c("sqlite:" + sqlite_file, o);
      c.migrate();
      auto l = c.try_acquire("x");
    }
    t.snapshot = [&] {
      std::string out;
      if (FILE* f = std::fopen(sqlite_file.c_str(), "rb")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
        std::fclose(f);
      }
      return out;
    };
    t.run("SQLite read-only", {}, acquire_with("file:" + sqlite_file + "?mode=ro", o, "y"));
    held->release();
    std::cout << "cases=" << t.passed + t.failed << " typed_unchanged_no_leak=" << t.passed
              << " failed=" << t.failed << "\n";
    sql(admin, "DROP SCHEMA " + q + " CASCADE");
    return t.failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "sqlock_fault_inputs: " << e.what() << "\n";
    return 5;
  }
}
