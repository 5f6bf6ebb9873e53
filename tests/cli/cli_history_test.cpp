// SPDX-License-Identifier: Apache-2.0
// Tests of `sqlock history` (schema 10) and `sqlock purge --history-older-than`, with the real
// binary, once per backend.

#include <cstdint>
#include <thread>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

TEST_CASE_TEMPLATE("history --enable records leases; history shows them as a table and JSON", DB,
                   CLI_DATABASES) {
  DB db;
  auto off = run(db.cmd({"history", "-o", "json"}));
  REQUIRE_MESSAGE(off.code == 0, off.err);
  CHECK(parse_json(off.out)["history_enabled"] == false);
  CHECK(parse_json(off.out)["leases"].empty());

  auto on = run(db.cmd({"history", "--enable", "-o", "json"}));
  REQUIRE_MESSAGE(on.code == 0, on.err);
  CHECK(parse_json(on.out) == nlohmann::json{{"history_enabled", true}, {"was_enabled", false}});

  REQUIRE(run(db.cmd({"run", "job", "--metadata", "first", "--", "true"})).code == 0);
  REQUIRE(run(db.cmd({"run", "job", "--metadata", "second", "--", "true"})).code == 0);
  REQUIRE(run(db.cmd({"run", "other", "--", "true"})).code == 0);

  auto j = run(db.cmd({"history", "job", "-o", "json"}));
  REQUIRE_MESSAGE(j.code == 0, j.err);
  auto doc = parse_json(j.out);
  CHECK(doc["history_enabled"] == true);
  auto leases = doc["leases"];
  REQUIRE(leases.size() == 2);
  CHECK(leases[0]["name"] == "job");
  CHECK(leases[0]["kind"] == "lock");
  CHECK(leases[0]["metadata"] == "first");
  CHECK(leases[0]["ended_how"] == "released");
  CHECK(leases[1]["metadata"] == "second");
  CHECK(leases[1]["ended_how"] == "released");
  CHECK(leases[0]["token"].template get<std::int64_t>() <
        leases[1]["token"].template get<std::int64_t>());
  for (const char* key : {"owner", "granted_at", "ended_at"}) CHECK(leases[0][key].is_string());
  CHECK(leases[0]["ended_at"].template get<std::string>() <=
        leases[1]["granted_at"].template get<std::string>());

  auto all = run(db.cmd({"history", "-o", "json"}));
  CHECK(parse_json(all.out)["leases"].size() == 3);

  auto table = run(db.cmd({"history"}));
  REQUIRE(table.code == 0);
  CHECK(contains(table.out, "NAME"));
  CHECK(contains(table.out, "HOW"));
  CHECK(occurrences(table.out, "released") == 3);

  auto recent = run(db.cmd({"history", "--since", "1h", "-o", "json"}));
  CHECK(parse_json(recent.out)["leases"].size() == 3);

  auto disabled = run(db.cmd({"history", "--disable"}));
  CHECK(disabled.code == 0);
  CHECK(contains(disabled.out, "disabled"));
  auto status = run(db.cmd({"history", "-o", "json"}));
  CHECK(parse_json(status.out)["history_enabled"] == false);
  CHECK(parse_json(status.out)["leases"].size() == 3);  // what was recorded stays
}

TEST_CASE_TEMPLATE("purge --history-older-than trims the history", DB, CLI_DATABASES) {
  DB db;
  REQUIRE(run(db.cmd({"history", "--enable"})).code == 0);
  REQUIRE(run(db.cmd({"run", "job", "--", "true"})).code == 0);
  REQUIRE(run(db.cmd({"run", "job", "--", "true"})).code == 0);  // the first one is recorded
  std::this_thread::sleep_for(std::chrono::milliseconds{1200});  // lets database time pass
  auto kept = run(db.cmd({"purge", "--history-older-than", "1h", "-o", "json"}));
  REQUIRE_MESSAGE(kept.code == 0, kept.err);
  CHECK(parse_json(kept.out)["history_purged"] == 0);
  auto p = run(db.cmd({"purge", "--history-older-than", "1s", "-o", "json"}));
  REQUIRE_MESSAGE(p.code == 0, p.err);
  CHECK(parse_json(p.out)["history_purged"] == 2);
  CHECK(parse_json(p.out)["purged"] == 0);  // the lock row is free for less than 24 h
  // What is left is the lock row's own last lease, which `history` always reads from the row.
  auto after = parse_json(run(db.cmd({"history", "-o", "json"})).out)["leases"];
  REQUIRE(after.size() == 1);
  CHECK(after[0]["ended_how"] == "expired");
}

TEST_CASE("history: usage errors exit 64") {
  sqlite_db db;
  CHECK(run(db.cmd({"history", "--enable", "--disable"})).code == 64);
  CHECK(run(db.cmd({"history", "job", "--enable"})).code == 64);
  CHECK(run(db.cmd({"history", "--since", "soon"})).code == 64);
  CHECK(run(db.cmd({"history", "--since", "0s"})).code == 64);
  CHECK(run(db.cmd({"history", std::string(300, 'n')})).code == 64);
  CHECK(run(db.cmd({"purge", "--history-older-than", "x"})).code == 64);
}
