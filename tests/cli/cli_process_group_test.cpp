// SPDX-License-Identifier: Apache-2.0
// Tests of the real `sqlock` binary for child processes and down migrations: `run` (and
// `elect -- CMD`) release only once CMD's whole process group is gone, and `migrate down`
// refuses to drop live leases unless --force. Every case runs against every backend.

#include <chrono>
#include <string>
#include <thread>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

TEST_CASE_TEMPLATE("run keeps the lock until the background job CMD left behind is gone", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string order = db.dir() + "/order", started = db.dir() + "/started";
  // sh exits at once; its background job writes 3 s later, still under the first lease.
  process first(
      db.cmd({"run", "x", "--ttl", "90s", "--kill-grace", "60s", "--", "sh", "-c",
              "(sleep 3; echo late >> \"$0\") & echo up > \"$1\"; exit 0", order, started}));
  REQUIRE_MESSAGE(eventually([&] { return !read_file(started).empty() || first.exited(); }, 20s),
                  "the first run did not start");
  // A second holder, tried again and again from the moment sh is done: it may get the lock only
  // after the background write, however long anything takes.
  int refused = 0;
  bool second = eventually(
      [&] {
        auto r = run(db.cmd({"run", "x", "-n", "--", "sh", "-c", "echo second >> \"$0\"", order}));
        if (r.code == 1) ++refused;
        return r.code == 0;
      },
      60s);
  CHECK(second);
  CHECK(read_file(order) == "late\nsecond\n");
  MESSAGE(refused << " attempts were refused while the background job ran");
  auto r = first.wait();
  CHECK(r.code == 0);
}

TEST_CASE_TEMPLATE("run kills leftovers that outlive --kill-grace and keeps CMD's exit status", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string pidfile = db.dir() + "/leftover.pid";
  // The leftover ignores SIGTERM (inherited from sh's trap): only the SIGKILL ends it.
  process p(db.cmd({"run", "y", "--kill-grace", "300ms", "--", "sh", "-c",
                    "trap '' TERM; sleep 60 & echo $! > \"$0\"; exit 3", pidfile}));
  auto r = p.wait(30s);
  CHECK(r.code == 3);
  CHECK(contains(r.err, "still run"));
  pid_t left = read_pid(pidfile);
  REQUIRE(left > 0);
  CHECK(eventually([&] { return process_gone(left); }, 5s));
  if (!process_gone(left)) ::kill(left, SIGKILL);
  CHECK(run(db.cmd({"run", "y", "-n", "--", "true"})).code == 0);  // released
}

TEST_CASE_TEMPLATE("elect -- CMD resigns only once CMD's background job is gone", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string order = db.dir() + "/order";
  auto r = run(db.cmd({"elect", "leader", "v1", "--ttl", "90s", "--kill-grace", "60s", "--", "sh",
                       "-c", "(sleep 1; echo late >> \"$0\") & exit 0", order}),
               {}, 60s);
  CHECK(r.code == 0);
  CHECK(read_file(order) == "late\n");  // written before the campaign ended
}

TEST_CASE_TEMPLATE("migrate down is refused while a lease is live, unless --force", DB,
                   CLI_DATABASES) {
  DB db;
  holder<DB> h(db, "job");
  auto refused = run(db.cmd({"migrate", "down", "--to", "0", "--yes"}));
  CHECK(refused.code == 64);
  CHECK(contains(refused.err, "1 live lease"));
  CHECK(contains(refused.err, "'job'"));
  CHECK(contains(refused.err, "--force"));
  CHECK(run(db.cmd({"migrate", "status", "--exit-code"})).code == 0);  // unchanged
  auto shown = run(db.cmd({"show", "job", "-o", "json"}));
  REQUIRE_MESSAGE(shown.code == 0, shown.err);
  CHECK(parse_json(shown.out)["held"] == true);
  CHECK_FALSE(h.proc->exited());

  // One step down drops no lease table: the lock is no obstacle.
  auto one = run(db.cmd({"migrate", "down", "--yes"}));
  CHECK_MESSAGE(one.code == 0, one.err);
  CHECK(run(db.cmd({"migrate", "up"})).code == 0);

  auto forced = run(db.cmd({"migrate", "down", "--to", "0", "--yes", "--force"}));
  CHECK_MESSAGE(forced.code == 0, forced.err);
  CHECK(contains(forced.err, "[warn]"));
  CHECK(contains(forced.err, "'job'"));
  auto status = run(db.cmd({"migrate", "status", "-o", "json"}));
  CHECK(parse_json(status.out)["current_version"] == 0);
}
