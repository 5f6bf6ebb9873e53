// SPDX-License-Identifier: Apache-2.0
// `sqlock release NAME --request [--grace D]` against the real binary: `run` forwards the
// request to CMD as SIGTERM and exits as CMD did when it finished within the grace, 75 when it
// had to be killed; `elect` without a command resigns; nothing changes when the lock is free.

#include <csignal>
#include <filesystem>

#include "cli_support.hpp"

using namespace std::chrono_literals;
using namespace sqlock_cli_test;

TEST_CASE_TEMPLATE("release --request: run sends CMD SIGTERM and exits with its status", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string ready = db.dir() + "/ready";
  process p(db.cmd({"run", "rq", "--ttl", "600ms", "--", "sh", "-c",
                    "trap 'exit 3' TERM; touch \"$0\"; while :; do sleep 0.05; done", ready}));
  REQUIRE_MESSAGE(eventually([&] { return std::filesystem::exists(ready) || p.exited(); }, 20s),
                  p.err());
  REQUIRE_MESSAGE(!p.exited(), p.err());
  auto asked = run(db.cmd({"release", "rq", "--request", "--grace", "10s", "-o", "json"}));
  REQUIRE_MESSAGE(asked.code == 0, asked.err);
  CHECK(parse_json(asked.out)["requested"] == 1);
  auto r = p.wait(15s);
  CHECK_MESSAGE(r.code == 3, r.err);  // CMD's own status: it finished within the grace
  CHECK(parse_json(run(db.cmd({"show", "rq", "-o", "json"})).out)["held"] == false);
}

TEST_CASE_TEMPLATE("release --request: a command that ignores it is killed at the grace, exit 75",
                   DB, CLI_DATABASES) {
  DB db;
  const std::string pidfile = db.dir() + "/cmd.pid";
  process p(db.cmd({"run", "stubborn", "--ttl", "600ms", "--", "sh", "-c",
                    "trap '' TERM; echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; "
                    "while :; do sleep 0.05; done",
                    pidfile}));
  REQUIRE_MESSAGE(eventually([&] { return read_pid(pidfile) > 0 || p.exited(); }, 20s), p.err());
  const pid_t child = read_pid(pidfile);
  REQUIRE(child > 0);
  const auto asked_at = std::chrono::steady_clock::now();
  REQUIRE(run(db.cmd({"release", "stubborn", "--request", "--grace", "1500ms"})).code == 0);
  auto r = p.wait(15s);
  CHECK_MESSAGE(r.code == 75, r.err);
  CHECK(std::chrono::steady_clock::now() - asked_at >= 1000ms);  // it had its grace
  CHECK(contains(r.err, "release requested"));
  CHECK(eventually([&] { return process_gone(child); }, 5s));
}

TEST_CASE_TEMPLATE("release --request: elect resigns; a free lock is left alone", DB,
                   CLI_DATABASES) {
  DB db;
  process leader(db.cmd({"elect", "office", "me", "--ttl", "600ms"}));
  REQUIRE_MESSAGE(eventually([&] { return contains(leader.out(), "me") || leader.exited(); }, 20s),
                  leader.err());
  REQUIRE(run(db.cmd({"release", "office", "--request", "--grace", "5s"})).code == 0);
  auto r = leader.wait(15s);
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(parse_json(run(db.cmd({"show", "office", "-o", "json"})).out)["held"] == false);
  auto again = run(db.cmd({"release", "office", "--request", "-o", "json"}));
  CHECK(again.code == 0);
  CHECK(parse_json(again.out)["requested"] == 0);
  CHECK(run(db.cmd({"release", "office", "--request", "--force"})).code == 64);
  CHECK(run(db.cmd({"release", "office", "--grace", "1s", "--force"})).code == 64);
  CHECK(run(db.cmd({"release", "office", "--request", "--grace", "-1s"})).code == 64);
}
