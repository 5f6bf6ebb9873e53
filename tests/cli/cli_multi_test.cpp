// SPDX-License-Identifier: Apache-2.0
// Tests of the real `sqlock` binary for several locks at once (`run a b -- CMD`) and for a
// leader's new value (`elect NAME --value-file PATH`, re-read on SIGHUP), against every backend.

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

TEST_CASE("run with several names refuses semaphore and fair flags and a repeated name") {
  for (const std::vector<std::string>& extra : {std::vector<std::string>{"--shared"},
                                                {"--exclusive"},
                                                {"--count", "1", "--limit", "2"},
                                                {"--fair"}}) {
    std::vector<std::string> args = {"-d", "sqlite:/nonexistent/x.db", "run", "a", "b"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "true"});
    auto r = run(sqlock(args));
    CHECK_MESSAGE(r.code == 64, extra[0] << ": " << r.err);
    CHECK(contains(r.err, "one NAME"));
  }
  auto twice = run(sqlock({"-d", "sqlite:/nonexistent/x.db", "run", "a", "b", "a", "--", "true"}));
  CHECK(twice.code == 64);
  CHECK(contains(twice.err, "twice"));
}

TEST_CASE_TEMPLATE("run a b -- CMD holds both locks while CMD runs, or neither", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string envfile = db.dir() + "/env";
  const std::string go = db.dir() + "/go";
  process p(db.cmd({"run", "m-b", "m-a", "--ttl", "5s", "--", "sh", "-c",
                    "printf '%s|%s|%s|%s' \"$SQLOCK_LOCK_NAME\" \"$SQLOCK_LOCK_TOKEN\" "
                    "\"$SQLOCK_LOCK_TOKENS\" \"$SQLOCK_LOCK_NAMES\" > \"$0.tmp\" && "
                    "mv \"$0.tmp\" \"$0\"; while [ ! -e \"$1\" ]; do sleep 0.05; done; exit 3",
                    envfile, go}));
  REQUIRE_MESSAGE(eventually([&] { return std::filesystem::exists(envfile) || p.exited(); }, 20s),
                  p.err());
  REQUIRE_MESSAGE(!p.exited(), p.err());
  auto b = parse_json(run(db.cmd({"show", "m-b", "-o", "json"})).out);
  auto a = parse_json(run(db.cmd({"show", "m-a", "-o", "json"})).out);
  CHECK(a["held"] == true);
  CHECK(b["held"] == true);
  const auto tb = b["token"].template get<std::int64_t>();
  const auto ta = a["token"].template get<std::int64_t>();
  CHECK(read_file(envfile) == "m-b|" + std::to_string(tb) + "|" + std::to_string(tb) + " " +
                                  std::to_string(ta) + "|m-b\nm-a");
  // Either name alone, and an overlapping set, are busy.
  CHECK(run(db.cmd({"run", "m-a", "-n", "--", "true"})).code == 1);
  auto busy = run(db.cmd({"run", "m-c", "m-b", "-n", "--", "true"}));
  CHECK(busy.code == 1);
  CHECK(contains(busy.err, "m-b"));
  // The refused run wrote nothing for its free name.
  CHECK(run(db.cmd({"show", "m-c", "-o", "json"})).code != 0);

  write_file(go, "");
  auto r = p.wait();
  CHECK_MESSAGE(r.code == 3, r.err);
  for (const char* n : {"m-a", "m-b"})
    CHECK(parse_json(run(db.cmd({"show", n, "-o", "json"})).out)["held"] == false);
  // Now both are free: a run over both and a third name gets all three.
  auto all = run(db.cmd({"run", "m-a", "m-b", "m-c", "-n", "--", "true"}));
  CHECK_MESSAGE(all.code == 0, all.err);
}

TEST_CASE_TEMPLATE("run a b -- CMD: losing one of the leases stops CMD and exits 75", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string pidfile = db.dir() + "/cmd.pid";
  process p(db.cmd({"run", "l-a", "l-b", "--ttl", "600ms", "--kill-grace", "100ms", "--", "sh",
                    "-c", "echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 60", pidfile}));
  REQUIRE_MESSAGE(eventually([&] { return read_pid(pidfile) > 0 || p.exited(); }, 20s), p.err());
  const pid_t child = read_pid(pidfile);
  REQUIRE(child > 0);
  REQUIRE(run(db.cmd({"release", "l-b", "--force", "--yes"})).code == 0);
  auto r = p.wait(15s);
  CHECK(r.code == 75);
  CHECK(contains(r.err, "lost"));
  CHECK(eventually([&] { return process_gone(child); }, 5s));
}

TEST_CASE_TEMPLATE("elect --value-file proclaims the file's new content on SIGHUP", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string file = db.dir() + "/value";
  write_file(file, "first\n");
  CHECK(run(db.cmd({"elect", "v", "x", "--value-file", file})).code == 64);
  process leader(db.cmd({"elect", "v", "--value-file", file}));
  REQUIRE_MESSAGE(
      eventually([&] { return contains(leader.out(), "value=first") || leader.exited(); }, 20s),
      leader.err());
  REQUIRE_MESSAGE(!leader.exited(), leader.err());
  auto before = parse_json(run(db.cmd({"show", "v", "-o", "json"})).out);
  CHECK(before["metadata"] == "first");

  write_file(file, "second value\n");
  ::kill(leader.pid(), SIGHUP);
  REQUIRE_MESSAGE(eventually([&] { return contains(leader.out(), "value=\"second value\""); }, 20s),
                  leader.err());
  auto after = parse_json(run(db.cmd({"show", "v", "-o", "json"})).out);
  CHECK(after["metadata"] == "second value");
  CHECK(after["token"] == before["token"]);  // the same term
  CHECK(after["held"] == true);
  CHECK_FALSE(leader.exited());  // SIGHUP did not resign

  // An unreadable file keeps the value.
  std::filesystem::remove(file);
  ::kill(leader.pid(), SIGHUP);
  REQUIRE(eventually([&] { return contains(leader.err(), "value stays"); }, 20s));
  CHECK(parse_json(run(db.cmd({"show", "v", "-o", "json"})).out)["metadata"] == "second value");

  ::kill(leader.pid(), SIGTERM);
  auto r = leader.wait();
  CHECK(r.code == 0);
  CHECK(parse_json(run(db.cmd({"show", "v", "-o", "json"})).out)["held"] == false);
}
