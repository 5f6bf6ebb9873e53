// SPDX-License-Identifier: Apache-2.0
// Tests of the real `sqlock` binary for semaphores (list, show, release, run --shared/--exclusive/
// --count/--limit) and leader election (elect), against every backend.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <thread>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

namespace {

/// Polls a `sqlock` command's JSON until `pred` holds (at most every 50 ms: each look is a
/// process).
template <class DB, class Pred>
bool eventually_json(const DB& db, const std::vector<std::string>& args, Pred pred,
                     std::chrono::milliseconds limit = 20s) {
  return eventually(
      [&] {
        auto r = run(db.cmd(args));
        if (r.code == 0 && pred(parse_json(r.out))) return true;
        std::this_thread::sleep_for(50ms);
        return false;
      },
      limit);
}

/// The JSON documents of a JSON-lines output.
std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(parse_json(line));
  return out;
}

/// N of the first "term=N " in a campaign's output; 0 when there is none.
std::int64_t term_in(const std::string& out) {
  auto p = out.find("term=");
  if (p == std::string::npos) return 0;
  return std::stoll(out.substr(p + 5));
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

// ---- usage ---------------------------------------------------------------------------------

TEST_CASE("semaphore and elect flags that do not fit exit 64 with a clear message") {
  sqlite_db db;
  struct bad {
    std::vector<std::string> args;
    std::string says;
  };
  for (const auto& b : std::vector<bad>{
           {{"run", "p", "--count", "3", "--limit", "2", "--", "true"},
            "--count 3 is more than --limit 2"},
           {{"run", "p", "--shared", "--count", "2", "--", "true"}, "--shared"},
           {{"run", "p", "--exclusive", "--limit", "2", "--", "true"}, "--exclusive"},
           {{"run", "p", "--shared", "--exclusive", "--", "true"}, "exclude"},
           {{"run", "p", "--count", "2", "--", "true"}, "--limit"},
           {{"run", "p", "--limit", "0", "--", "true"}, "--limit"},
           {{"run", "p", "--count", "0", "--limit", "2", "--", "true"}, "--count"},
           {{"release", "p", "--force", "--yes", "--token", "3"}, "--semaphore"},
           {{"elect", "e", "v", "--interval", "1s"}, "--interval"},
           {{"elect", "e", "-n"}, "campaign"},
           {{"elect", "-l", "e", "v"}, "VALUE"},
           {{"elect", "e", "--", "true"}, "VALUE"},
           {{"elect", "e", "v", "extra"}, "extra"},
       }) {
    auto r = run(db.cmd(b.args));
    CAPTURE(b.args[0]);
    CAPTURE(b.args[2]);
    CAPTURE(r.err);
    CHECK(r.code == 64);
    CHECK(contains(r.err, b.says));
  }
  // Nothing was created by the refused runs.
  auto list = parse_json(run(db.cmd({"list", "-o", "json"})).out);
  CHECK(list["semaphores"].empty());
  CHECK(list["locks"].empty());
}

// ---- semaphores ------------------------------------------------------------------------------

TEST_CASE_TEMPLATE(
    "list and show include a semaphore with its holders and a queued waiter; "
    "release --semaphore ends one holder or all",
    DB, CLI_DATABASES) {
  DB db;
  holder<DB> a(db, "pool", {"--limit", "3", "--metadata", "alpha", "--ttl", "1s"}, "-a");
  holder<DB> b(db, "pool", {"--limit", "3", "--count", "2", "--metadata", "beta", "--ttl", "1s"},
               "-b");
  // The semaphore is full: a fair waiter for 1 unit queues with a ticket.
  const std::string marker = db.dir() + "/waiter-ran";
  process waiter(db.cmd({"run", "pool", "--limit", "3", "--fair", "--", "sh", "-c",
                         "echo \"$SQLOCK_LOCK_COUNT\" > \"$0\"", marker}));
  REQUIRE(eventually_json(db, {"show", "pool", "--semaphore", "-o", "json"},
                          [](const nlohmann::json& j) { return j["waiters"].size() == 1; }));

  auto list = parse_json(run(db.cmd({"list", "-o", "json"})).out);
  CHECK(list["locks"].empty());  // a separate namespace
  REQUIRE(list["semaphores"].size() == 1);
  auto s = list["semaphores"][0];
  CHECK(s["kind"] == "semaphore");
  CHECK(s["name"] == "pool");
  CHECK(s["limit"] == 3);
  CHECK(s["used"] == 3);
  CHECK(s["held"] == true);
  REQUIRE(s["holders"].size() == 2);
  auto ha = s["holders"][0], hb = s["holders"][1];  // by token: a was granted first
  CHECK(ha["metadata"] == "alpha");
  CHECK(ha["count"] == 1);
  CHECK(hb["metadata"] == "beta");
  CHECK(hb["count"] == 2);
  CHECK(hb["token"].template get<std::int64_t>() > ha["token"].template get<std::int64_t>());
  for (const auto& h : {ha, hb}) {
    CHECK(h["owner"].template get<std::string>().find(':') != std::string::npos);
    CHECK(h["expires_in_seconds"].template get<double>() > 0.0);
    CHECK(h["expires_in_seconds"].template get<double>() <= 1.0);
    CHECK(h["acquired_at"].template get<std::string>().size() == 24);
  }
  REQUIRE(s["waiters"].size() == 1);
  auto w = s["waiters"][0];
  CHECK(w["count"] == 1);
  CHECK(w["ticket"].template get<std::int64_t>() > hb["token"].template get<std::int64_t>());
  CHECK(w["expires_in_seconds"].template get<double>() > 0.0);
  CHECK(w["owner"].template get<std::string>().find(':') != std::string::npos);

  // Another limit than the live holders' is a usage error (nothing waits or changes).
  auto mismatch = run(db.cmd({"run", "pool", "--limit", "4", "-n", "--", "true"}));
  CHECK(mismatch.code == 64);
  CHECK(contains(mismatch.err, "limit"));
  auto busy = run(db.cmd({"run", "pool", "--limit", "3", "-n", "--", "true"}));
  CHECK(busy.code == 1);
  CHECK(contains(busy.err, "3 of 3 units used by 2 holders, 1 queued"));

  // Filters.
  CHECK(parse_json(run(db.cmd({"list", "--held", "--semaphores", "-o", "json"})).out)["semaphores"]
            .size() == 1);
  CHECK(parse_json(run(db.cmd({"list", "--free", "-o", "json"})).out)["semaphores"].empty());
  CHECK(parse_json(run(db.cmd({"list", "--semaphores", "-o", "json"})).out).count("locks") == 0);
  CHECK(parse_json(run(db.cmd({"list", "--locks", "-o", "json"})).out).count("semaphores") == 0);
  CHECK(
      parse_json(run(db.cmd({"list", "--prefix", "poo", "-o", "json"})).out)["semaphores"].size() ==
      1);
  CHECK(parse_json(run(db.cmd({"list", "--prefix", "x", "-o", "json"})).out)["semaphores"].empty());

  auto table = run(db.cmd({"list"}));
  REQUIRE(table.code == 0);
  for (const char* col :
       {"SEMAPHORE", "LIMIT", "USED", "HOLDERS", "WAITERS", "STATE", "pool", "full"})
    CHECK(contains(table.out, col));
  CHECK_FALSE(contains(table.out, "EXPIRES_IN"));  // no locks: no lock table
  auto locks_table = run(db.cmd({"list", "--locks"}));
  CHECK(contains(locks_table.out, "EXPIRES_IN"));
  CHECK_FALSE(contains(locks_table.out, "pool"));

  auto show = run(db.cmd({"show", "pool"}));
  REQUIRE(show.code == 0);
  for (const char* text : {"semaphore", "3 of 3 units used", "alpha", "beta", "TOKEN", "COUNT",
                           "expires in", "TICKET", "ticket expires in"})
    CHECK(contains(show.out, text));
  CHECK(parse_json(run(db.cmd({"show", "pool", "-o", "json"})).out)["kind"] == "semaphore");
  auto no_lock = run(db.cmd({"show", "pool", "--lock"}));
  CHECK(no_lock.code == 1);
  CHECK(contains(no_lock.err, "no such lock"));
  CHECK(run(db.cmd({"show", "nothing"})).code == 1);
  auto no_lock_release = run(db.cmd({"release", "pool", "--force", "--yes"}));
  CHECK(no_lock_release.code == 1);
  CHECK(contains(no_lock_release.err, "--semaphore"));  // the hint

  // Without a terminal, --yes is required; nothing changes.
  CHECK(run(db.cmd({"release", "pool", "--force", "--semaphore"})).code == 64);
  CHECK_FALSE(a.proc->exited());

  // Force-release a's acquisition only: a's run is stopped (75), the waiter gets the unit.
  const auto token_a = ha["token"].template get<std::int64_t>();
  auto rel = run(db.cmd({"release", "pool", "--force", "--semaphore", "--token",
                         std::to_string(token_a), "--yes", "-o", "json"}));
  REQUIRE_MESSAGE(rel.code == 0, rel.err);
  auto relj = parse_json(rel.out);
  CHECK(relj["released"] == true);
  CHECK(relj["released_count"] == 1);
  REQUIRE(relj["holders"].size() == 1);
  CHECK(relj["holders"][0]["token"] == token_a);
  auto ra = a.proc->wait(10s);
  CHECK(ra.code == 75);
  CHECK(contains(ra.err, "lost"));
  CHECK(eventually([&] { return process_gone(a.child); }));
  auto rw = waiter.wait(20s);
  CHECK_MESSAGE(rw.code == 0, rw.err);
  CHECK(read_file(marker) == "1\n");
  CHECK_FALSE(b.proc->exited());

  // A token that is not a live holder: nothing to do, exit 0.
  auto stale = run(db.cmd({"release", "pool", "--force", "--semaphore", "--token",
                           std::to_string(token_a), "--yes", "-o", "json"}));
  CHECK(stale.code == 0);
  CHECK(parse_json(stale.out)["released"] == false);

  // A lock of the same name is another thing; show then shows both.
  REQUIRE(run(db.cmd({"run", "pool", "-n", "--metadata", "the lock", "--", "true"})).code == 0);
  auto both = run(db.cmd({"show", "pool"}));
  CHECK(contains(both.out, "kind:        lock"));
  CHECK(contains(both.out, "kind:        semaphore"));
  auto bothj = parse_json(run(db.cmd({"show", "pool", "-o", "json"})).out);
  CHECK(bothj["kind"] == "lock");
  CHECK(bothj["metadata"] == "the lock");
  CHECK(bothj["semaphore"]["kind"] == "semaphore");
  CHECK(parse_json(run(db.cmd({"show", "pool", "--semaphore", "-o", "json"})).out)["holders"]
            .size() == 1);

  // Every holder: b is stopped too.
  auto all = run(db.cmd({"release", "pool", "--force", "--semaphore", "--yes"}));
  REQUIRE_MESSAGE(all.code == 0, all.err);
  CHECK(contains(all.out, "released 1 holder"));
  CHECK(b.proc->wait(10s).code == 75);
  auto none = run(db.cmd({"release", "pool", "--force", "--semaphore", "--yes", "-o", "json"}));
  CHECK(none.code == 0);
  CHECK(parse_json(none.out)["released_count"] == 0);
  CHECK(run(db.cmd({"release", "nope", "--force", "--semaphore", "--yes"})).code == 1);
}

TEST_CASE_TEMPLATE("show lists a lock's queued waiter; the release hands the lock to it", DB,
                   CLI_DATABASES) {
  DB db;
  holder<DB> a(db, "job", {"--ttl", "5s"});
  const std::string marker = db.dir() + "/fair-waiter-ran";
  process waiter(db.cmd({"run", "job", "--fair", "--metadata", "next", "--", "sh", "-c",
                         "echo \"$SQLOCK_LOCK_TOKEN\" > \"$0\"", marker}));
  REQUIRE(eventually_json(db, {"show", "job", "-o", "json"},
                          [](const nlohmann::json& j) { return j["waiters"].size() == 1; }));
  auto j = parse_json(run(db.cmd({"show", "job", "-o", "json"})).out);
  CHECK(j["waiters"][0]["fair"] == true);
  const std::int64_t ticket = j["waiters"][0]["ticket"];
  const std::int64_t token_a = j["token"];
  CHECK(ticket > token_a);
  CHECK(contains(run(db.cmd({"show", "job"})).out, "fair"));
  ::kill(a.child, SIGTERM);  // the holder's command ends: its run releases, handing the lock on
  auto rw = waiter.wait(20s);
  CHECK_MESSAGE(rw.code == 0, rw.err);
  CHECK(std::stoll(read_file(marker)) > token_a);
  CHECK(parse_json(run(db.cmd({"show", "job", "-o", "json"})).out)["waiters"].empty());
}

TEST_CASE_TEMPLATE("run --shared runs readers together while --exclusive waits for them", DB,
                   CLI_DATABASES) {
  DB db;
  // Shared and exclusive runs pass their units to the command.
  const std::string count_file = db.dir() + "/count";
  REQUIRE(run(db.cmd({"run", "rw", "--shared", "--", "sh", "-c",
                      "echo \"$SQLOCK_LOCK_NAME $SQLOCK_LOCK_COUNT\" > \"$0\"", count_file}))
              .code == 0);
  CHECK(read_file(count_file) == "rw 1\n");

  holder<DB> r1(db, "rw", {"--shared"}, "-r1");
  // The second reader starts (its command runs) while the first still runs.
  holder<DB> r2(db, "rw", {"--shared"}, "-r2");
  CHECK_FALSE(r1.proc->exited());
  auto busy = run(db.cmd({"run", "rw", "--exclusive", "-n", "--", "true"}));
  CHECK(busy.code == 1);
  CHECK(contains(busy.err, "busy"));
  CHECK(contains(busy.err, "shared by 2"));
  // The lock "rw" is another namespace: free.
  CHECK(run(db.cmd({"run", "rw", "-n", "--", "true"})).code == 0);

  const std::string marker = db.dir() + "/exclusive-ran";
  process writer(db.cmd({"run", "rw", "--exclusive", "--", "sh", "-c",
                         "echo \"$SQLOCK_LOCK_COUNT\" > \"$0\"", marker}));
  // What `run` does on a busy lock holds for semaphore units: --wait, -n, the conflict code,
  // and SIGINT while waiting.
  auto t0 = std::chrono::steady_clock::now();
  auto timed = run(db.cmd({"run", "rw", "--exclusive", "--wait", "300ms", "--", "true"}));
  CHECK(timed.code == 1);
  CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
  CHECK(contains(timed.err, "waited"));
  CHECK(run(db.cmd({"run", "rw", "--exclusive", "-n", "--conflict-exit-code", "7", "--", "true"}))
            .code == 7);
  {
    process waiting(db.cmd({"run", "rw", "--exclusive", "--fair", "--", "true"}));
    REQUIRE(eventually_json(db, {"show", "rw", "--semaphore", "-o", "json"},
                            [](const nlohmann::json& j) { return j["waiters"].size() == 1; }));
    ::kill(waiting.pid(), SIGINT);
    auto interrupted = waiting.wait();
    CHECK(interrupted.code == 130);
    CHECK(contains(interrupted.err, "interrupted"));
  }

  // Still waiting after a while, and after one of the two readers left.
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(writer.exited());
  ::kill(r1.proc->pid(), SIGTERM);
  CHECK(r1.proc->wait().code == 143);
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(writer.exited());
  CHECK(read_file(marker).empty());
  ::kill(r2.proc->pid(), SIGTERM);
  CHECK(r2.proc->wait().code == 143);
  auto w = writer.wait(20s);
  CHECK_MESSAGE(w.code == 0, w.err);
  CHECK(read_file(marker) == "1000000000\n");  // sqlock::max_semaphore_limit: all units
}

TEST_CASE_TEMPLATE("run --limit 2: at most two of three at once; --count 2 --limit 2: one", DB,
                   CLI_DATABASES) {
  DB db;
  constexpr int processes = 3;
  constexpr int rounds = 2;
  // Two slots, taken with atomic mkdir: a third command inside at the same time finds both
  // taken and exits 99. The slot used is logged: slot2 means two were inside at once.
  const std::string slots = db.dir() + "/slots";
  std::filesystem::create_directory(slots);
  const std::string log = db.dir() + "/log";
  const std::string two_slots =
      "if mkdir \"$0/1\" 2>/dev/null; then s=1; elif mkdir \"$0/2\" 2>/dev/null; then s=2; "
      "else exit 99; fi; echo \"slot$s\" >> \"$1\"; sleep 0.3; rmdir \"$0/$s\"";
  const std::string one_slot =
      "mkdir \"$0/1\" || exit 99; echo slot1 >> \"$1\"; sleep 0.2; rmdir \"$0/1\"";

  auto contend = [&](const std::string& name, const std::vector<std::string>& flags,
                     const std::string& script) {
    std::filesystem::remove(log);
    std::vector<std::thread> threads;
    std::vector<std::string> errors(processes);
    for (int p = 0; p < processes; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < rounds; ++i) {
          auto args = concat(concat({"run", name}, flags),
                             {"--ttl", "5s", "--", "sh", "-c", script, slots, log});
          process proc(db.cmd(args));
          auto r = proc.wait(60s);
          if (r.code != 0)
            errors[static_cast<std::size_t>(p)] = "exit " + std::to_string(r.code) + ": " + r.err;
        }
      });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors) CHECK_MESSAGE(e.empty(), e);
    return read_file(log);
  };

  auto two = contend("two-of-two", {"--limit", "2"}, two_slots);
  CHECK(occurrences(two, "slot") == processes * rounds);
  // Three start at once and two units are free: two ran together at least once.
  CHECK(contains(two, "slot2"));

  auto one = contend("all-of-two", {"--count", "2", "--limit", "2"}, one_slot);
  CHECK(occurrences(one, "slot1") == processes * rounds);
}

// ---- elect ----------------------------------------------------------------------------------

TEST_CASE_TEMPLATE(
    "elect: the second candidate leads once the first resigns, and the observer "
    "prints both with increasing terms",
    DB, CLI_DATABASES) {
  DB db;
  process observer(db.cmd({"elect", "jobs", "--interval", "200ms", "-o", "json"}));
  REQUIRE(eventually([&] { return contains(observer.out(), "\"term\":null"); }, 20s));

  process a(db.cmd({"elect", "jobs", "alpha"}));
  REQUIRE_MESSAGE(eventually([&] { return contains(a.out(), "value=alpha") || a.exited(); }, 20s),
                  a.err());
  REQUIRE_MESSAGE(!a.exited(), a.err());
  const std::int64_t term_a = term_in(a.out());
  CHECK(term_a > 0);
  CHECK(contains(a.out(), "owner="));

  process b(db.cmd({"elect", "jobs", "beta"}));
  auto nb = run(db.cmd({"elect", "jobs", "gamma", "-n"}));
  CHECK(nb.code == 1);
  CHECK(contains(nb.err, "alpha"));
  auto timed =
      run(db.cmd({"elect", "jobs", "gamma", "--wait", "200ms", "--conflict-exit-code", "3"}));
  CHECK(timed.code == 3);
  CHECK(timed.out.empty());
  auto show = parse_json(run(db.cmd({"show", "jobs", "-o", "json"})).out);
  CHECK(show["held"] == true);
  CHECK(show["metadata"] == "alpha");
  CHECK(show["token"] == term_a);
  REQUIRE(eventually([&] { return contains(observer.out(), "\"alpha\""); }, 20s));
  CHECK(b.out().empty());
  CHECK_FALSE(b.exited());

  ::kill(a.pid(), SIGINT);
  auto ra = a.wait();
  CHECK(ra.code == 0);
  CHECK(contains(ra.err, "resigned"));
  REQUIRE_MESSAGE(eventually([&] { return contains(b.out(), "value=beta") || b.exited(); }, 20s),
                  b.err());
  const std::int64_t term_b = term_in(b.out());
  CHECK(term_b > term_a);
  REQUIRE(eventually([&] { return contains(observer.out(), "\"beta\""); }, 20s));

  ::kill(b.pid(), SIGTERM);
  CHECK(b.wait().code == 0);
  REQUIRE(eventually(
      [&] {
        auto lines = json_lines(observer.out());
        return !lines.empty() && lines.back()["term"].is_null();
      },
      20s));
  ::kill(observer.pid(), SIGINT);
  auto ro = observer.wait();
  CHECK(ro.code == 0);

  std::vector<std::string> values;
  std::vector<std::int64_t> terms;
  for (const auto& line : json_lines(ro.out)) {
    CHECK(line["name"] == "jobs");
    if (line["term"].is_null()) continue;
    values.push_back(line["value"].template get<std::string>());
    terms.push_back(line["term"].template get<std::int64_t>());
    CHECK(line["owner"].template get<std::string>().find(':') != std::string::npos);
    CHECK(line["expires_in_seconds"].template get<double>() > 0.0);
  }
  CHECK(values == std::vector<std::string>{"alpha", "beta"});
  CHECK(terms == std::vector<std::int64_t>{term_a, term_b});
}

TEST_CASE_TEMPLATE("elect -- CMD runs the command while leader; a lost leadership exits 75", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string out = db.dir() + "/elect-env";
  auto r = run(db.cmd({"elect", "e", "v 1", "--", "sh", "-c",
                       "printf '%s|%s|%s' \"$SQLOCK_ELECTION_NAME\" \"$SQLOCK_ELECTION_TERM\" "
                       "\"$SQLOCK_ELECTION_VALUE\" > \"$0\"; exit 4",
                       out}));
  CHECK_MESSAGE(r.code == 4, r.err);
  const std::int64_t term = term_in(r.out);
  CHECK(contains(r.out, "value=\"v 1\""));
  CHECK(read_file(out) == "e|" + std::to_string(term) + "|v 1");
  auto after = parse_json(run(db.cmd({"show", "e", "-o", "json"})).out);
  CHECK(after["held"] == false);  // the command's exit resigned
  CHECK(after["token"] == term);

  // The observer's table format, and JSON from a campaign.
  process observer(db.cmd({"elect", "-l", "e", "--interval", "200ms"}));
  REQUIRE(eventually([&] { return contains(observer.out(), "no leader"); }, 20s));
  process a(db.cmd({"elect", "e", "x", "--ttl", "600ms", "-o", "json"}));
  REQUIRE_MESSAGE(
      eventually([&] { return contains(a.out(), "\"value\":\"x\"") || a.exited(); }, 20s), a.err());
  auto aj = parse_json(a.out());
  CHECK(aj["term"].template get<std::int64_t>() > term);
  REQUIRE(eventually([&] { return contains(observer.out(), "value=x"); }, 20s));
  CHECK(
      contains(observer.out(), "term=" + std::to_string(aj["term"].template get<std::int64_t>())));

  // Force-released: the leader learns at its next renewal and exits 75.
  REQUIRE(run(db.cmd({"release", "e", "--force", "--yes"})).code == 0);
  auto ra = a.wait(10s);
  CHECK(ra.code == 75);
  CHECK(contains(ra.err, "lost"));
  ::kill(observer.pid(), SIGTERM);
  CHECK(observer.wait().code == 0);

  // With a command: the command is stopped too.
  const std::string pidfile = db.dir() + "/leader.pid";
  process c(db.cmd({"elect", "e", "y", "--ttl", "600ms", "--kill-grace", "100ms", "--", "sh", "-c",
                    "echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 30", pidfile}));
  REQUIRE(eventually([&] { return read_pid(pidfile) > 0 || c.exited(); }, 20s));
  REQUIRE_MESSAGE(read_pid(pidfile) > 0, c.err());
  const pid_t child = read_pid(pidfile);
  REQUIRE(run(db.cmd({"release", "e", "--force", "--yes"})).code == 0);
  auto rc = c.wait(10s);
  CHECK(rc.code == 75);
  CHECK(eventually([&] { return process_gone(child); }));
}
