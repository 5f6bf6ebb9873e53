// SPDX-License-Identifier: Apache-2.0
// Tests of the real `sqlock` binary. Cases templated over the database run once per backend
// (ctest cli.sqlite and cli.postgresql); the others need no database or use SQLite.

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>

#include "cli_support.hpp"

using namespace sqlock_cli_test;

// ---- no database ------------------------------------------------------------------------

TEST_CASE("--help exits 0 on the tool and on every command, with examples") {
  auto r = run(sqlock({"--help"}));
  CHECK(r.code == 0);
  CHECK(contains(r.out, "Examples"));
  for (auto cmd : std::vector<std::vector<std::string>>{{"list"},
                                                        {"show"},
                                                        {"watch"},
                                                        {"release"},
                                                        {"purge"},
                                                        {"migrate"},
                                                        {"migrate", "up"},
                                                        {"migrate", "down"},
                                                        {"migrate", "status"},
                                                        {"migrate", "print"},
                                                        {"run"},
                                                        {"elect"},
                                                        {"history"},
                                                        {"version"}}) {
    cmd.push_back("--help");
    auto h = run(sqlock(cmd));
    CAPTURE(cmd[0]);
    CHECK(h.code == 0);
    CHECK(contains(h.out, "Example"));
  }
}

TEST_CASE("usage errors exit 64") {
  CHECK(run(sqlock({})).code == 64);
  CHECK(run(sqlock({"frobnicate"})).code == 64);
  CHECK(run(sqlock({"list", "--bogus"})).code == 64);
  CHECK(run(sqlock({"-o", "yaml", "list"})).code == 64);
  CHECK(run(sqlock({"show"})).code == 64);
  CHECK(run(sqlock({"migrate"})).code == 64);
  CHECK(run(sqlock({"list", "--held", "--free"})).code == 64);
  sqlite_db db;
  CHECK(run(db.cmd({"purge", "--free-for", "soon"})).code == 64);
  CHECK(run(db.cmd({"purge", "--free-for", "10"})).code == 64);
  CHECK(run(db.cmd({"run", "x", "--ttl", "5x", "--", "true"})).code == 64);
  CHECK(run(db.cmd({"run", "x", "--ttl", "10ms", "--", "true"})).code == 64);  // below min ttl
  CHECK(run(db.cmd({"run", "x", "-n", "--wait", "1s", "--", "true"})).code == 64);
  CHECK(run(db.cmd({"run", "x"})).code == 64);                     // no command
  CHECK(run(db.cmd({"show", std::string(300, 'n')})).code == 64);  // name too long
}

TEST_CASE("durations accept ms, s, m, h and combinations") {
  sqlite_db db;
  for (const char* d : {"500ms", "30s", "5m", "1h", "1m30s", "1.5s", "2d"}) {
    auto r = run(db.cmd({"purge", "--free-for", d, "-o", "json"}));
    CAPTURE(d);
    REQUIRE(r.code == 0);
    CHECK(parse_json(r.out)["purged"] == 0);
  }
  auto r = run(db.cmd({"purge", "--free-for", "1m30s", "-o", "json"}));
  CHECK(parse_json(r.out)["free_for_seconds"].template get<double>() == doctest::Approx(90.0));
}

TEST_CASE("version prints the version, also as JSON") {
  auto r = run(sqlock({"version"}));
  CHECK(r.code == 0);
  CHECK(contains(r.out, "sqlock "));
  auto j = run(sqlock({"version", "-o", "json"}));
  CHECK(j.code == 0);
  auto doc = parse_json(j.out);
  CHECK(doc["version"].is_string());
  CHECK(doc["backends"].is_array());
  auto built_in = [&](const char* name) {
    for (const auto& b : doc["backends"])
      if (b == name) return true;
    return false;
  };
  CHECK(built_in("postgresql") == bool(SQLOCK_HAVE_POSTGRESQL));
  CHECK(built_in("sqlite") == bool(SQLOCK_HAVE_SQLITE));
  CHECK(built_in("mariadb") == bool(SQLOCK_HAVE_MARIADB));
}

TEST_CASE("migrate print writes the embedded SQL without a database") {
  auto r = run(sqlock({"migrate", "print", "--backend", "sqlite"}));
  CHECK(r.code == 0);
  CHECK(contains(r.out, "sqlock_locks"));
  CHECK(contains(r.out, "001_"));
  auto down = run(sqlock({"migrate", "print", "--backend", "sqlite", "--down"}));
  CHECK(down.code == 0);
  CHECK(contains(down.out, ".down.sql"));
  auto pg = run(sqlock({"migrate", "print", "--backend", "postgresql"}));
  CHECK(pg.code == 0);
  CHECK(contains(pg.out, "sqlock_locks"));
  auto mdb = run(sqlock({"migrate", "print", "--backend", "mariadb"}));
  CHECK(mdb.code == 0);
  CHECK(contains(mdb.out, "sqlock_locks"));
  CHECK(contains(mdb.out, "(mariadb)"));
  // The URL's backend is the default; without either, a usage error.
  auto from_url =
      run(sqlock({"migrate", "print"}), {{"SQLOCK_DATABASE_URL", "sqlite:/nonexistent/x.db"}});
  CHECK(from_url.code == 0);
  CHECK(from_url.out == r.out);
  CHECK(run(sqlock({"migrate", "print"})).code == 64);
  CHECK(run(sqlock({"migrate", "print", "--backend", "mysql"})).code == 64);
}

TEST_CASE("no database configured exits 78") {
  auto r = run(sqlock({"list"}));
  CHECK(r.code == 78);
  CHECK(contains(r.err, "SQLOCK_DATABASE_URL"));
}

TEST_CASE("a URL with an unsupported scheme exits 78 without showing the password") {
  auto r = run(sqlock({"-d", "mysql://u:secret@h/db", "list"}));
  CHECK(r.code == 78);
  CHECK_FALSE(contains(r.err + r.out, "secret"));
  CHECK(contains(r.err, "mysql"));
  auto env = run(sqlock({"list"}), {{"DATABASE_URL", "mysql://u:secret@h/db"}});
  CHECK(env.code == 78);
  CHECK_FALSE(contains(env.err + env.out, "secret"));
}

TEST_CASE("the URL comes from -d, then SQLOCK_DATABASE_URL, then DATABASE_URL") {
  sqlite_db a, b;
  REQUIRE(run(a.cmd({"run", "only-in-a", "--", "true"})).code == 0);
  auto names = [](const result& r) {
    std::set<std::string> out;
    nlohmann::json doc = parse_json(r.out);
    for (auto& l : doc["locks"]) out.insert(l["name"].template get<std::string>());
    return out;
  };
  auto env_a = run(sqlock({"list", "-o", "json"}),
                   {{"SQLOCK_DATABASE_URL", a.url()}, {"DATABASE_URL", b.url()}});
  CHECK(names(env_a).count("only-in-a") == 1);
  auto env_b = run(sqlock({"list", "-o", "json"}), {{"DATABASE_URL", b.url()}});
  CHECK(names(env_b).empty());
  auto flag_b =
      run(sqlock({"-d", b.url(), "list", "-o", "json"}), {{"SQLOCK_DATABASE_URL", a.url()}});
  CHECK(names(flag_b).empty());
}

#if SQLOCK_HAVE_POSTGRESQL
TEST_CASE("an unreachable PostgreSQL exits 69 without showing the password") {
  auto r = run(sqlock({"-d", "postgresql://u:secret@127.0.0.1:1/db", "list"}));
  CHECK(r.code == 69);
  CHECK_FALSE(contains(r.err + r.out, "secret"));
  auto kv = run(sqlock({"-d", "host=127.0.0.1 port=1 user=u password=secret dbname=db", "list"}));
  CHECK(kv.code == 69);
  CHECK_FALSE(contains(kv.err + kv.out, "secret"));
}

TEST_CASE("passwords in every URL form are scrubbed from the visible command line") {
  // `watch` keeps running while the database is unreachable, which gives time to look.
  for (const std::string url : {"postgresql://u:hunter2@127.0.0.1:1/db",
                                "postgresql://u@127.0.0.1:1/db?sslmode=disable&password=hunter2",
                                "host=127.0.0.1 port=1 user=u password=hunter2 dbname=db",
                                "host=127.0.0.1 port=1 password = 'hun ter2' dbname=db"}) {
    process p(sqlock({"-d", url, "watch", "--interval", "100ms"}));
    REQUIRE(eventually([&] { return contains(p.err(), "127.0.0.1") || p.exited(); }));
    std::string cmdline = read_file("/proc/" + std::to_string(p.pid()) + "/cmdline");
    CAPTURE(url);
    CAPTURE(cmdline);
    CHECK_FALSE(p.exited());
    CHECK(contains(cmdline, "127.0.0.1"));
    CHECK_FALSE(contains(cmdline, "hunter2"));
    CHECK_FALSE(contains(cmdline, "hun ter2"));
    CHECK_FALSE(contains(p.err() + p.out(), "hunter2"));
    ::kill(p.pid(), SIGINT);
    CHECK(p.wait().code == 0);
  }
}

TEST_CASE("libpq's PG* variables are used when no URL is given") {
  auto r = run(sqlock({"list"}), {{"PGHOST", "127.0.0.1"}, {"PGPORT", "1"}});
  CHECK(r.code == 69);  // it tried libpq's 127.0.0.1:1
  CHECK(contains(r.err, "postgresql"));
}
#endif

#if SQLOCK_HAVE_MARIADB
TEST_CASE("an unreachable MariaDB exits 69 without showing the password") {
  for (const std::string url :
       {"mariadb://u:secret@127.0.0.1:1/db", "mysql://u:secret@127.0.0.1:1/db"}) {
    CAPTURE(url);
    auto r = run(sqlock({"-d", url, "list"}));
    CHECK(r.code == 69);
    CHECK(contains(r.err, "127.0.0.1"));
    CHECK_FALSE(contains(r.err + r.out, "secret"));
  }
}

TEST_CASE("passwords in MariaDB URLs are scrubbed from the visible command line") {
  // `watch` keeps running while the database is unreachable, which gives time to look.
  for (const std::string url :
       {"mariadb://u:hunter2@127.0.0.1:1/db", "mysql://u:hunter2@127.0.0.1:1/db",
        "mariadb://u:hun%20ter2@127.0.0.1:1/db?connect_timeout=1"}) {
    process p(sqlock({"-d", url, "watch", "--interval", "100ms"}));
    REQUIRE(eventually([&] { return contains(p.err(), "127.0.0.1") || p.exited(); }));
    std::string cmdline = read_file("/proc/" + std::to_string(p.pid()) + "/cmdline");
    CAPTURE(url);
    CAPTURE(cmdline);
    CAPTURE(p.err());
    CHECK_FALSE(p.exited());
    CHECK(contains(cmdline, "127.0.0.1"));
    CHECK_FALSE(contains(cmdline, "hunter2"));
    CHECK_FALSE(contains(cmdline, "hun%20ter2"));
    CHECK_FALSE(contains(p.err() + p.out(), "hunter2"));
    CHECK_FALSE(contains(p.err() + p.out(), "hun%20ter2"));
    ::kill(p.pid(), SIGINT);
    CHECK(p.wait().code == 0);
  }
}
#endif

TEST_CASE("a password given with -d is scrubbed from the visible command line") {
  sqlite_db db;
  // SQLite ignores unknown URI parameters, so a file: URI can carry a "password".
  const std::string url = "file:" + db.dir() + "/locks.db?password=hunter2";
  const std::string pidfile = db.dir() + "/cmd.pid";
  for (const auto& form : std::vector<std::vector<std::string>>{
           {"-d", url}, {"--database-url=" + url}, {"--database-url", url}}) {
    std::filesystem::remove(pidfile);
    std::vector<std::string> args = form;
    for (const char* a : {"run", "scrub", "--", "sh", "-c", "echo $$ > \"$0\"; exec sleep 30"})
      args.emplace_back(a);
    args.push_back(pidfile);
    process p(sqlock(args));
    REQUIRE(eventually([&] { return read_pid(pidfile) > 0 || p.exited(); }, 20s));
    REQUIRE_MESSAGE(read_pid(pidfile) > 0, p.err());
    std::string cmdline = read_file("/proc/" + std::to_string(p.pid()) + "/cmdline");
    CAPTURE(cmdline);
    CHECK(contains(cmdline, "locks.db?password="));
    CHECK_FALSE(contains(cmdline, "hunter2"));
    ::kill(p.pid(), SIGTERM);
    CHECK(p.wait().code == 143);
  }
}

TEST_CASE("colour only when asked for, or on a terminal without NO_COLOR") {
  sqlite_db db;
  REQUIRE(run(db.cmd({"run", "c", "--", "true"})).code == 0);
  CHECK_FALSE(contains(run(db.cmd({"list"})).out, "\x1b["));
  CHECK(contains(run(db.cmd({"--color", "always", "list"})).out, "\x1b["));
  CHECK_FALSE(contains(run(db.cmd({"--color", "never", "list"})).out, "\x1b["));
  CHECK_FALSE(contains(run(db.cmd({"list", "--color", "auto"}), {{"NO_COLOR", "1"}}).out, "\x1b["));
}

TEST_CASE("the man page and the bash completion cover every subcommand, from the tool's help") {
  const std::vector<std::string> commands{"list",    "show", "watch", "release", "purge",
                                          "migrate", "run",  "elect", "version", "history"};
  auto help = run(sqlock({"--help"}));
  for (const auto& c : commands) CHECK(contains(help.out, "  " + c + " "));
  // sqlock.1 is written at build time from `sqlock --help` and every `sqlock CMD --help`.
  const std::string page = read_file(SQLOCK_CLI_MANPAGE);
  CHECK(contains(page, ".TH SQLOCK 1"));
  for (const auto& c : commands) {
    std::string upper = c;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    CHECK_MESSAGE(contains(page, ".SH \"SQLOCK " + upper + "\""), c);
  }
  CHECK(contains(page, ".SS \"sqlock migrate down\""));
  CHECK(contains(page, "--kill-grace"));
  // The completion reads the help at Tab time: subcommands, a subcommand's options, and
  // `migrate`'s own subcommands, for the binary named in the command line.
  auto complete = [&](const std::string& words) {
    const std::string script = std::string("source '") + SQLOCK_CLI_COMPLETION + "'; COMP_WORDS=(" +
                               words +
                               "); "
                               "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _sqlock; "
                               "printf '%s\\n' \"${COMPREPLY[@]}\"";
    return run({"bash", "-c", script}).out;
  };
  const std::string bin = "'" + binary + "'";
  CHECK(complete(bin + " mi") == "migrate\n");
  auto all = complete(bin + " ''");
  for (const auto& c : commands) CHECK(contains(all, c + "\n"));
  CHECK(contains(all, "--database-url\n"));
  CHECK(complete(bin + " run --t") == "--ttl\n");
  CHECK(contains(complete(bin + " migrate ''"), "down\n"));
  CHECK(contains(complete(bin + " migrate down --"), "--to\n"));
  CHECK(complete(bin + " -o ''") == "table\njson\n");
}

TEST_CASE("a missing sqlite file is named, and only migrate up creates it") {
  temp_dir dir;
  const std::string path = dir.path() + "/never-created.db";
  for (std::vector<std::string> cmd : {std::vector<std::string>{"list"},
                                       {"show", "x"},
                                       {"watch", "--count", "1"},
                                       {"purge", "--free-for", "1h"},
                                       {"migrate", "down", "--yes"}}) {
    std::vector<std::string> args{"-d", "sqlite:" + path};
    args.insert(args.end(), cmd.begin(), cmd.end());
    auto r = run(sqlock(args));
    CAPTURE(cmd.front());
    CHECK(r.code == 78);
    CHECK(contains(r.err, "no SQLite database at"));
    CHECK(contains(r.err, "migrate up"));
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) != 0);  // not created
  }
  auto status = run(sqlock({"-d", "sqlite:" + path, "migrate", "status"}));
  CHECK(status.code == 0);
  CHECK(contains(status.out, "does not exist yet"));
  CHECK(run(sqlock({"-d", "sqlite:" + path, "migrate", "up"})).code == 0);
  CHECK(run(sqlock({"-d", "sqlite:" + path, "list"})).code == 0);
}

TEST_CASE("a sqlite database in a missing directory is a clear error") {
  auto r = run(sqlock({"-d", "sqlite:/nonexistent-dir/x/locks.db", "list"}));
  // The library reports the missing tables (78); `migrate up` then reports the open failure.
  CHECK((r.code == 78 || r.code == 69));
  auto m = run(sqlock({"-d", "sqlite:/nonexistent-dir/x/locks.db", "migrate", "up"}));
  CHECK(m.code == 78);  // a path that cannot be opened is configuration, not unavailable
}

// ---- every backend ------------------------------------------------------------------------

TEST_CASE_TEMPLATE("migrate status --exit-code exits 1 until migrate up", DB, CLI_DATABASES) {
  DB db(false);
  auto before = run(db.cmd({"migrate", "status", "--exit-code"}));
  CHECK_MESSAGE(before.code == 1, before.err);
  auto plain = run(db.cmd({"migrate", "status"}));
  CHECK(plain.code == 0);
  auto js = run(db.cmd({"migrate", "status", "-o", "json"}));
  REQUIRE(js.code == 0);
  auto doc = parse_json(js.out);
  CHECK(doc["current_version"] == 0);
  CHECK(doc["latest_version"].template get<int>() >= 1);
  CHECK(doc["up_to_date"] == false);
  CHECK(doc["pending"].size() == doc["latest_version"].template get<std::size_t>());
  // Missing schema: every other command says so with 78.
  auto list = run(db.cmd({"list"}));
  CHECK(list.code == 78);
  CHECK(contains(list.err, "migrate up"));
  CHECK(run(db.cmd({"run", "x", "--", "true"})).code == 78);

  auto up = run(db.cmd({"migrate", "up", "-o", "json"}));
  REQUIRE_MESSAGE(up.code == 0, up.err);
  auto upj = parse_json(up.out);
  CHECK(upj["previous_version"] == 0);
  CHECK(upj["version"] == doc["latest_version"]);
  CHECK(run(db.cmd({"migrate", "status", "--exit-code"})).code == 0);
  CHECK(run(db.cmd({"migrate", "up"})).code == 0);  // repeatable
}

TEST_CASE_TEMPLATE("migrate down reverts one version and asks without a terminal", DB,
                   CLI_DATABASES) {
  DB db;
  auto refused = run(db.cmd({"migrate", "down"}));
  CHECK(refused.code == 64);
  CHECK(run(db.cmd({"migrate", "status", "--exit-code"})).code == 0);  // unchanged
  auto latest = parse_json(run(db.cmd({"migrate", "status", "-o", "json"})).out)["latest_version"]
                    .template get<int>();
  auto down = run(db.cmd({"migrate", "down", "--yes", "-o", "json"}));
  REQUIRE_MESSAGE(down.code == 0, down.err);
  CHECK(parse_json(down.out)["version"] == latest - 1);
  CHECK(run(db.cmd({"migrate", "status", "--exit-code"})).code == 1);
  CHECK(run(db.cmd({"migrate", "down", "--to", "0", "--yes"})).code == 0);
  CHECK(run(db.cmd({"migrate", "up"})).code == 0);
  CHECK(run(db.cmd({"migrate", "status", "--exit-code"})).code == 0);
}

TEST_CASE_TEMPLATE("list and show report rows as tables and JSON", DB, CLI_DATABASES) {
  DB db;
  auto empty = run(db.cmd({"list", "-o", "json"}));  // global option after the command
  REQUIRE_MESSAGE(empty.code == 0, empty.err);
  // "semaphores" is new next to "locks" (so the whole document no longer equals the old one);
  // --locks gives exactly the old document.
  CHECK(parse_json(empty.out) == nlohmann::json{{"locks", nlohmann::json::array()},
                                                {"semaphores", nlohmann::json::array()}});
  auto locks_only = run(db.cmd({"list", "--locks", "-o", "json"}));
  CHECK(parse_json(locks_only.out) == nlohmann::json{{"locks", nlohmann::json::array()}});

  REQUIRE(run(db.cmd({"run", "job-a", "--metadata", "first", "--", "true"})).code == 0);
  holder<DB> h(db, "job-b", {"--metadata", "nightly", "--ttl", "20s"});

  auto all = run(db.cmd({"-o", "json", "list"}));
  REQUIRE(all.code == 0);
  auto locks = parse_json(all.out)["locks"];
  REQUIRE(locks.size() == 2);
  CHECK(locks[0]["name"] == "job-a");  // byte order of names
  CHECK(locks[0]["held"] == false);
  CHECK(locks[0]["metadata"] == "first");
  CHECK(locks[0]["expires_in_seconds"].template get<double>() <= 0.0);
  auto b = locks[1];
  CHECK(b["name"] == "job-b");
  CHECK(b["held"] == true);
  CHECK(b["metadata"] == "nightly");
  CHECK(b["token"].template get<std::int64_t>() > locks[0]["token"].template get<std::int64_t>());
  CHECK(b["expires_in_seconds"].template get<double>() > 5.0);
  CHECK(b["expires_in_seconds"].template get<double>() <= 20.0);
  CHECK(b["owner"].template get<std::string>().find(':') != std::string::npos);
  for (const char* key : {"acquired_at", "expires_at"}) {
    auto t = b[key].template get<std::string>();
    CAPTURE(t);
    CHECK(t.size() == 24);  // 2026-11-22T13:45:12.123Z
    CHECK(t[10] == 'T');
    CHECK(t.back() == 'Z');
  }

  auto held = parse_json(run(db.cmd({"list", "--held", "-o", "json"})).out)["locks"];
  REQUIRE(held.size() == 1);
  CHECK(held[0]["name"] == "job-b");
  auto free = parse_json(run(db.cmd({"list", "--free", "-o", "json"})).out)["locks"];
  REQUIRE(free.size() == 1);
  CHECK(free[0]["name"] == "job-a");
  auto prefix = parse_json(run(db.cmd({"list", "--prefix", "job-b", "-o", "json"})).out)["locks"];
  CHECK(prefix.size() == 1);
  auto limited = parse_json(run(db.cmd({"list", "--limit", "1", "-o", "json"})).out)["locks"];
  CHECK(limited.size() == 1);

  auto table = run(db.cmd({"list"}));
  CHECK(table.code == 0);
  for (const char* col :
       {"NAME", "OWNER", "TOKEN", "ACQUIRED", "EXPIRES_IN", "STATE", "QUEUED", "METADATA"})
    CHECK(contains(table.out, col));
  CHECK(contains(table.out, "expires in "));
  CHECK(contains(table.out, "free for "));
  // No line ends in blanks, not even a row whose last cells are empty.
  REQUIRE(run(db.cmd({"run", "job-c", "--", "true"})).code == 0);  // no metadata
  auto bare = run(db.cmd({"list"}));
  CAPTURE(bare.out);
  CHECK_FALSE(contains(bare.out, " \n"));
  auto bare_show = run(db.cmd({"show", "job-c"}));
  CAPTURE(bare_show.out);
  CHECK(contains(bare_show.out, "metadata:"));
  CHECK_FALSE(contains(bare_show.out, " \n"));

  auto show = run(db.cmd({"show", "job-b", "-o", "json"}));
  REQUIRE(show.code == 0);
  auto s = parse_json(show.out);
  CHECK(s["name"] == "job-b");
  CHECK(s["token"] == b["token"]);
  CHECK(s["held"] == true);
  auto show_text = run(db.cmd({"show", "job-b"}));
  CHECK(show_text.code == 0);
  CHECK(contains(show_text.out, "expires in"));
  auto unknown = run(db.cmd({"show", "no-such-lock"}));
  CHECK(unknown.code == 1);
  CHECK(unknown.out.empty());
}

TEST_CASE_TEMPLATE("run passes the lock to the command and exits with its status", DB,
                   CLI_DATABASES) {
  DB db;
  const std::string out = db.dir() + "/env.txt";
  auto r = run(db.cmd({"run", "env-job", "--", "sh", "-c",
                       "printf '%s|%s|%s' \"$SQLOCK_LOCK_NAME\" \"$SQLOCK_LOCK_TOKEN\" "
                       "\"$SQLOCK_LOCK_OWNER\" > \"$0\"; exit 3",
                       out}));
  CHECK(r.code == 3);
  auto text = read_file(out);
  CAPTURE(text);
  auto p1 = text.find('|'), p2 = text.rfind('|');
  REQUIRE(p1 != std::string::npos);
  REQUIRE(p2 != p1);
  CHECK(text.substr(0, p1) == "env-job");
  auto token = std::stoll(text.substr(p1 + 1, p2 - p1 - 1));
  CHECK(token > 0);
  CHECK_FALSE(text.substr(p2 + 1).empty());
  auto show = parse_json(run(db.cmd({"show", "env-job", "-o", "json"})).out);
  CHECK(show["token"] == token);
  CHECK(show["held"] == false);  // released when the command exited
  CHECK(show["owner"] == text.substr(p2 + 1));

  CHECK(run(db.cmd({"run", "env-job", "--", "true"})).code == 0);
  CHECK(run(db.cmd({"run", "env-job", "--", "sh", "-c", "kill -KILL $$"})).code == 128 + 9);
}

TEST_CASE_TEMPLATE("run reports a command that is missing (127) or not executable (126)", DB,
                   CLI_DATABASES) {
  DB db;
  CHECK(run(db.cmd({"run", "x", "--", "no-such-command-sqlock"})).code == 127);
  CHECK(run(db.cmd({"run", "x", "--", db.dir() + "/no-such-file"})).code == 127);
  const std::string script = db.dir() + "/not-executable.sh";
  write_file(script, "#!/bin/sh\nexit 0\n");
  CHECK(run(db.cmd({"run", "x", "--", script})).code == 126);
  // Nothing is left holding the lock.
  CHECK(run(db.cmd({"run", "x", "-n", "--", "true"})).code == 0);
  // And nothing was acquired: the command is looked up first (a path too), so no token is drawn
  // and no row is created.
  auto before = parse_json(run(db.cmd({"show", "x", "-o", "json"})).out);
  auto missing = run(db.cmd({"run", "x", "--", db.dir() + "/no-such-file"}));
  CHECK(missing.code == 127);
  CHECK(missing.err.find("command not found") != std::string::npos);
  CHECK(run(db.cmd({"run", "x", "--", script})).code == 126);
  CHECK(parse_json(run(db.cmd({"show", "x", "-o", "json"})).out)["token"] == before["token"]);
  CHECK(run(db.cmd({"run", "never-taken", "--", db.dir() + "/no-such-file"})).code == 127);
  CHECK(run(db.cmd({"show", "never-taken"})).code == 1);
}

TEST_CASE_TEMPLATE("run on a busy lock exits 1, or --conflict-exit-code, and forwards signals", DB,
                   CLI_DATABASES) {
  DB db;
  holder<DB> h(db, "busy");
  auto nb = run(db.cmd({"run", "busy", "-n", "--", "true"}));
  CHECK(nb.code == 1);
  CHECK(contains(nb.err, "busy"));
  CHECK(
      run(db.cmd({"run", "busy", "--nonblock", "--conflict-exit-code", "7", "--", "true"})).code ==
      7);
  auto t0 = std::chrono::steady_clock::now();
  auto timed = run(db.cmd({"run", "busy", "--wait", "300ms", "--", "true"}));
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(timed.code == 1);
  CHECK(waited >= 300ms);
  // A waiting run is interrupted cleanly by SIGINT.
  process waiter(db.cmd({"run", "busy", "--", "true"}));
  // Its signal thread exists once it is about to wait (signals are blocked before that).
  REQUIRE(eventually([&] {
    std::error_code ec;
    auto it =
        std::filesystem::directory_iterator("/proc/" + std::to_string(waiter.pid()) + "/task", ec);
    return !ec && std::distance(it, std::filesystem::directory_iterator{}) >= 2;
  }));
  ::kill(waiter.pid(), SIGINT);
  auto interrupted = waiter.wait();
  CHECK(interrupted.code == 130);
  CHECK(contains(interrupted.err, "interrupted"));

  // SIGTERM to `sqlock run` reaches the command, whose status it then returns.
  ::kill(h.proc->pid(), SIGTERM);
  CHECK(h.proc->wait().code == 143);
  CHECK(eventually([&] { return process_gone(h.child); }));
  auto after = parse_json(run(db.cmd({"show", "busy", "-o", "json"})).out);
  CHECK(after["held"] == false);
}

TEST_CASE_TEMPLATE("release --force ends a run's lease: the command is stopped and run exits 75",
                   DB, CLI_DATABASES) {
  DB db;
  CHECK(run(db.cmd({"release", "nope", "--force", "--yes"})).code == 1);

  // A ttl of 1 s: with 300 ms a renewal delayed by the release's own write (SQLite has one
  // writer) on a loaded machine left the lease at risk within the kill grace of its deadline,
  // and run stopped CMD for that (exit 75, "renewals failing") before it saw the force release.
  holder<DB> h(db, "victim", {"--ttl", "1s", "--kill-grace", "100ms"});
  // Without --force, and without a terminal to confirm: usage errors, nothing changed.
  CHECK(run(db.cmd({"release", "victim"})).code == 64);
  CHECK(run(db.cmd({"release", "victim", "--force"})).code == 64);
  CHECK(parse_json(run(db.cmd({"show", "victim", "-o", "json"})).out)["held"] == true);
  CHECK_FALSE(h.proc->exited());

  auto t0 = std::chrono::steady_clock::now();
  auto rel = run(db.cmd({"release", "victim", "--force", "--yes", "-o", "json"}));
  REQUIRE_MESSAGE(rel.code == 0, rel.err);
  CHECK(parse_json(rel.out)["released"] == true);
  auto r = h.proc->wait(10s);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(r.code == 75);
  CHECK_MESSAGE(contains(r.err, "lost"), r.err);
  CHECK(process_gone(h.child));
  MESSAGE("force-release to `run` exit: "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 5s);

  // Not held any more: nothing to do, exit 0.
  auto again = run(db.cmd({"release", "victim", "--force", "--yes", "-o", "json"}));
  CHECK(again.code == 0);
  CHECK(parse_json(again.out)["released"] == false);
}

TEST_CASE_TEMPLATE("if sqlock run dies, its command dies with it", DB, CLI_DATABASES) {
  DB db;
  holder<DB> h(db, "orphan");
  ::kill(h.proc->pid(), SIGKILL);
  CHECK(h.proc->wait().code == 128 + 9);
  CHECK(eventually([&] { return process_gone(h.child); }));
}

TEST_CASE_TEMPLATE("concurrent runs on one name never overlap and tokens increase", DB,
                   CLI_DATABASES) {
  DB db;
  constexpr int processes = 4;
  constexpr int rounds = 5;
  const std::string mutex_dir = db.dir() + "/inside";
  const std::string tokens = db.dir() + "/tokens";
  // mkdir is atomic: it fails if another command is inside at the same time.
  const std::string script =
      "mkdir \"$0\" || exit 99; echo \"$SQLOCK_LOCK_TOKEN\" >> \"$1\"; sleep 0.02; rmdir \"$0\"";
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::vector<std::string> errors(processes);
  for (int p = 0; p < processes; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < rounds; ++i) {
        process proc(
            db.cmd({"run", "shared", "--ttl", "5s", "--", "sh", "-c", script, mutex_dir, tokens}));
        auto r = proc.wait(60s);
        if (r.code != 0) {
          ++failures;
          errors[static_cast<std::size_t>(p)] = "exit " + std::to_string(r.code) + ": " + r.err;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) CHECK_MESSAGE(e.empty(), e);
  CHECK(failures == 0);
  std::vector<std::int64_t> seen;
  std::istringstream in(read_file(tokens));
  for (std::int64_t t; in >> t;) seen.push_back(t);
  CHECK(seen.size() == static_cast<std::size_t>(processes * rounds));
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i] > seen[i - 1]);
}

TEST_CASE_TEMPLATE("purge deletes rows free for at least the given time", DB, CLI_DATABASES) {
  DB db;
  REQUIRE(run(db.cmd({"run", "old", "--", "true"})).code == 0);
  holder<DB> h(db, "live");
  auto none = run(db.cmd({"purge", "-o", "json"}));  // default 24h
  REQUIRE_MESSAGE(none.code == 0, none.err);
  CHECK(parse_json(none.out)["purged"] == 0);
  CHECK(parse_json(none.out)["free_for_seconds"].template get<double>() ==
        doctest::Approx(86400.0));
  auto some = run(db.cmd({"purge", "--free-for", "0", "-o", "json"}));
  REQUIRE(some.code == 0);
  CHECK(parse_json(some.out)["purged"] == 1);
  auto locks = parse_json(run(db.cmd({"list", "-o", "json"})).out)["locks"];
  REQUIRE(locks.size() == 1);
  CHECK(locks[0]["name"] == "live");
  CHECK(run(db.cmd({"purge", "--free-for", "0"})).code == 0);
}

TEST_CASE_TEMPLATE("watch refreshes a given number of times and stops on SIGINT", DB,
                   CLI_DATABASES) {
  DB db;
  REQUIRE(run(db.cmd({"run", "w", "--", "true"})).code == 0);
  auto r = run(db.cmd({"watch", "--count", "2", "--interval", "100ms"}));
  CHECK(r.code == 0);
  CHECK(occurrences(r.out, "EXPIRES_IN") == 2);
  CHECK_FALSE(contains(r.out, "\x1b[2J"));  // not a terminal: no screen clearing
  auto j = run(db.cmd({"watch", "--count", "3", "--interval", "100ms", "-o", "json"}));
  CHECK(j.code == 0);
  std::istringstream lines(j.out);
  int docs = 0;
  for (std::string line; std::getline(lines, line);) {
    CHECK(parse_json(line)["locks"].size() == 1);
    ++docs;
  }
  CHECK(docs == 3);
  CHECK(run(db.cmd({"watch", "--interval", "1x"})).code == 64);

  process live(db.cmd({"watch", "--interval", "100ms"}));
  REQUIRE(eventually([&] { return contains(live.out(), "STATE"); }));
  ::kill(live.pid(), SIGINT);
  CHECK(live.wait().code == 0);
}

// ---- renewals failing (SQLite: another connection holds the write lock) ---------------------

TEST_CASE("while renewals fail, run kills the command before the lease's safety deadline") {
  // A lock, and the semaphore leases of run --shared and run --limit: the same supervision.
  for (const auto& flags :
       std::vector<std::vector<std::string>>{{}, {"--shared"}, {"--limit", "2"}}) {
    CAPTURE(flags.size());
    sqlite_db db;
    const std::string pidfile = db.dir() + "/stubborn.pid";
    // The command ignores SIGTERM, so only the SIGKILL at the safety deadline stops it.
    std::vector<std::string> args = {"run", "stubborn"};
    args.insert(args.end(), flags.begin(), flags.end());
    for (const char* a : {"--ttl", "1s", "--kill-grace", "300ms", "--", "sh", "-c",
                          "trap '' TERM; echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; "
                          "while :; do sleep 0.05; done"})
      args.emplace_back(a);
    args.push_back(pidfile);
    process p(db.cmd(args));
    REQUIRE(eventually([&] { return read_pid(pidfile) > 0 || p.exited(); }, 20s));
    REQUIRE_MESSAGE(read_pid(pidfile) > 0, p.err());
    const pid_t child = read_pid(pidfile);

    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.url().substr(7).c_str(), &raw) == SQLITE_OK);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> conn(raw, sqlite3_close);
    REQUIRE(sqlite3_exec(raw, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
    // Renewals from now on fail; the last one was sent before now, so the safety deadline is
    // before now + ttl.
    auto blocked_at = std::chrono::steady_clock::now();
    REQUIRE(eventually([&] { return process_gone(child); }, 5s));
    auto child_gone = std::chrono::steady_clock::now();
    auto r = p.wait(5s);
    sqlite3_exec(raw, "ROLLBACK", nullptr, nullptr, nullptr);
    CHECK(r.code == 75);
    CHECK(contains(r.err, "renewals failing"));
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(child_gone - blocked_at);
    MESSAGE("renewals blocked to command killed: " << took.count() << " ms (ttl 1000 ms)");
    // ttl plus the poll interval of this test and scheduling slack on a loaded machine.
    CHECK(took < 1300ms);
  }
}
