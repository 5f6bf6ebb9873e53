// SPDX-License-Identifier: Apache-2.0
// The C++ worker of the shared job queue (examples/job_queue.sh; its Python peer is
// job_worker.py). Both take the lock "jobs" (the Python one through sqlock's SQL functions),
// and each marks a job done and releases the lock in ONE transaction: the job pattern
// "do the work, mark it done, release" without a window where a crash lets a second worker redo
// it, or keeps the lock held until it expires.
//
// usage: job_worker DATABASE_URL SCHEMA setup JOBS    a scratch schema: sqlock's tables, JOBS jobs
//        job_worker DATABASE_URL SCHEMA work NAME     work until no job is left
//        job_worker DATABASE_URL SCHEMA check JOBS    every job done exactly once; drops SCHEMA

#include <cstdio>
#include <string>
#include <thread>

#include <sqlock/postgresql.hpp>
#include <sqlock/sqlock.hpp>

using namespace std::chrono_literals;

namespace {

int setup(const std::string& url, const std::string& schema, int jobs) {
  pqxx::connection db(url);
  pqxx::work tx(db);
  const std::string s = tx.quote_name(schema);
  tx.exec("CREATE SCHEMA " + s);
  tx.exec("CREATE TABLE " + s + ".jobs (id integer PRIMARY KEY, done_by text)");
  // What was done, under which lease. No unique constraint: a job done twice would show here.
  tx.exec("CREATE TABLE " + s + ".job_runs (job integer NOT NULL, worker text NOT NULL, " +
          "token bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
  tx.exec_params("INSERT INTO " + s + ".jobs (id) SELECT generate_series(1, $1)", jobs);
  tx.commit();
  sqlock::client_options options;
  options.backend.schema = schema;
  sqlock::client(url, options).migrate();  // sqlock's tables and SQL functions, in SCHEMA too
  std::printf("setup: %d jobs in schema %s\n", jobs, schema.c_str());
  return 0;
}

int work(const std::string& url, const std::string& schema, const std::string& worker) {
  sqlock::client_options options;
  options.backend.schema = schema;
  options.owner = worker;
  sqlock::client locks(url, options);
  pqxx::connection db(url);
  const std::string s = db.quote_name(schema);
  int done = 0;
  for (;;) {
    sqlock::lease lease = locks.acquire("jobs");  // waits; renewed in the background
    pqxx::work tx(db);
    auto job = tx.exec("SELECT id FROM " + s + ".jobs WHERE done_by IS NULL ORDER BY id LIMIT 1");
    if (!job.empty()) {
      const int id = job[0][0].as<int>();
      sqlock::postgresql::assert_held(tx, "jobs", lease.token(), schema);
      tx.exec_params("INSERT INTO " + s + ".job_runs (job, worker, token) VALUES ($1, $2, $3)", id,
                     worker, lease.token());
      std::this_thread::sleep_for(5ms);  // the work
      tx.exec_params("UPDATE " + s + ".jobs SET done_by = $1 WHERE id = $2", worker, id);
    }
    sqlock::postgresql::release(tx, lease, schema);  // the release commits with the work
    tx.commit();
    if (job.empty()) break;
    ++done;
  }
  std::printf("%s: %d jobs\n", worker.c_str(), done);
  return 0;
}

int check(const std::string& url, const std::string& schema, int jobs) {
  pqxx::connection db(url);
  pqxx::work tx(db);
  const std::string s = tx.quote_name(schema);
  const auto left = tx.exec1("SELECT count(*) FROM " + s + ".jobs WHERE done_by IS NULL")[0];
  const auto twice = tx.exec1("SELECT count(*) FROM (SELECT job FROM " + s +
                              ".job_runs GROUP BY job HAVING count(*) > 1) t")[0];
  const auto runs = tx.exec1("SELECT count(*), count(DISTINCT token) FROM " + s + ".job_runs");
  // Tokens increase with every grant, whichever language took it.
  const auto backwards = tx.exec1(
      "SELECT count(*) FROM (SELECT token < lag(token) OVER (ORDER BY "
      "at) AS back FROM " +
      s + ".job_runs) t WHERE back")[0];
  for (const auto& row :
       tx.exec("SELECT worker, count(*) FROM " + s + ".job_runs GROUP BY worker ORDER BY worker"))
    std::printf("check: %s did %d jobs\n", row[0].c_str(), row[1].as<int>());
  const bool ok = left.as<int>() == 0 && twice.as<int>() == 0 && runs[0].as<int>() == jobs &&
                  runs[1].as<int>() == jobs && backwards.as<int>() == 0;
  std::printf(
      "check: %d jobs, %d not done, %d done twice, %d runs under %d distinct tokens, "
      "%d tokens out of order: %s\n",
      jobs, left.as<int>(), twice.as<int>(), runs[0].as<int>(), runs[1].as<int>(),
      backwards.as<int>(), ok ? "ok" : "FAILED");
  tx.exec("DROP SCHEMA " + s + " CASCADE");
  tx.commit();
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s DATABASE_URL SCHEMA setup|work|check JOBS|NAME\n", argv[0]);
    return 64;
  }
  const std::string url = argv[1], schema = argv[2], what = argv[3], arg = argv[4];
  try {
    if (what == "setup") return setup(url, schema, std::stoi(arg));
    if (what == "work") return work(url, schema, arg);
    if (what == "check") return check(url, schema, std::stoi(arg));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "job_worker %s: %s\n", what.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "job_worker: unknown command %s\n", what.c_str());
  return 64;
}
