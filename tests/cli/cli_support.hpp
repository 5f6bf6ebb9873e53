// SPDX-License-Identifier: Apache-2.0
#pragma once
// Running the real `sqlock` binary from tests: posix_spawn with stdout/stderr captured in files,
// stdin from /dev/null (never a terminal), and a hermetic environment.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <sqlock/config.hpp>

#include "support/poll.hpp"
#include "support/temp_dir.hpp"

#if SQLOCK_HAVE_POSTGRESQL
#include "support/postgresql.hpp"
#endif
#if SQLOCK_HAVE_MARIADB
#include "support/mariadb.hpp"
#endif

extern char** environ;

namespace sqlock_cli_test {

using namespace std::chrono_literals;
using sqlock_test::eventually;
using sqlock_test::temp_dir;

inline const std::string binary = SQLOCK_CLI_BINARY;

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Environment changes for one process: a value sets, std::nullopt removes.
using env_changes = std::map<std::string, std::optional<std::string>>;

/// The test's environment minus everything that could point sqlock at a database or change its
/// output; PGPASSFILE (scripts/with-postgres) stays.
inline std::vector<std::string> make_env(const env_changes& changes) {
  static const char* strip[] = {"SQLOCK_DATABASE_URL=",
                                "DATABASE_URL=",
                                "SQLOCK_SCHEMA=",
                                "NO_COLOR=",
                                "SQLOCK_LOCK_NAME=",
                                "SQLOCK_LOCK_TOKEN=",
                                "SQLOCK_LOCK_OWNER=",
                                "SQLOCK_LOCK_COUNT=",
                                "SQLOCK_ELECTION_NAME=",
                                "SQLOCK_ELECTION_TERM=",
                                "SQLOCK_ELECTION_VALUE=",
                                "SQLOCK_ELECTION_OWNER=",
                                "PGHOST=",
                                "PGHOSTADDR=",
                                "PGPORT=",
                                "PGDATABASE=",
                                "PGUSER=",
                                "PGSERVICE=",
                                "TERM="};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string v(*e);
    bool drop = false;
    for (const char* s : strip) drop = drop || v.rfind(s, 0) == 0;
    auto eq = v.find('=');
    if (eq != std::string::npos && changes.count(v.substr(0, eq))) drop = true;
    if (!drop) env.push_back(v);
  }
  for (const auto& [k, v] : changes)
    if (v) env.push_back(k + "=" + *v);
  return env;
}

struct result {
  int code = -1;
  std::string out, err;
};

/// One running process. Its output goes to files in its own temp dir.
class process {
 public:
  explicit process(const std::vector<std::string>& argv, const env_changes& env = {}) {
    out_ = dir_.path() + "/stdout";
    err_ = dir_.path() + "/stderr";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    auto env_strings = make_env(env);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    int rc = posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
  }
  ~process() {
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

  /// True once it has exited (reaps it).
  bool exited() {
    if (reaped_) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    return reaped_;
  }
  /// Waits up to `limit`; a process still running then is killed and the check fails.
  result wait(std::chrono::milliseconds limit = 30s) {
    if (!eventually([&] { return exited(); }, limit)) {
      FAIL_CHECK("process " << pid_ << " did not exit within " << limit.count() << " ms; killed");
      ::kill(pid_, SIGKILL);
      eventually([&] { return exited(); });
    }
    return {code_, out(), err()};
  }

 private:
  temp_dir dir_;
  std::string out_, err_;
  pid_t pid_ = 0;
  bool reaped_ = false;
  int code_ = -1;
};

inline result run(const std::vector<std::string>& argv, const env_changes& env = {},
                  std::chrono::milliseconds limit = 30s) {
  process p(argv, env);
  return p.wait(limit);
}

/// `sqlock ARGS...` with no database configured.
inline std::vector<std::string> sqlock(std::vector<std::string> args) {
  args.insert(args.begin(), binary);
  return args;
}

inline nlohmann::json parse_json(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    FAIL("not one JSON document (" << e.what() << "): " << text);
  }
  return {};
}

/// Whether `pid` is gone (or a zombie waiting for a reaper that is not us).
inline bool process_gone(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

inline pid_t read_pid(const std::string& path) {
  std::string s = read_file(path);
  return s.empty() ? 0 : static_cast<pid_t>(std::stol(s));
}

// ---- databases ---------------------------------------------------------------------------

/// What the database fixtures share: `sqlock GLOBAL-OPTIONS ARGS...` and `migrate up`.
template <class Db>
struct cli_commands {
  std::vector<std::string> cmd(const std::vector<std::string>& args) const {
    auto v = static_cast<const Db&>(*this).global();
    v.insert(v.end(), args.begin(), args.end());
    return sqlock(v);
  }
  void migrate_up() const {
    auto r = run(cmd({"migrate", "up"}));
    REQUIRE_MESSAGE(r.code == 0, r.err);
  }
};

/// A SQLite file in a temp dir.
struct sqlite_db : cli_commands<sqlite_db> {
  explicit sqlite_db(bool migrate = true) : url_("sqlite:" + dir_.path() + "/locks.db") {
    if (migrate) migrate_up();
  }
  std::vector<std::string> global() const { return {"-d", url_}; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& url() const { return url_; }

 private:
  temp_dir dir_;
  std::string url_;
};

#if SQLOCK_HAVE_POSTGRESQL
/// A fresh schema (whose name needs quoting) in the database of scripts/with-postgres.
struct postgresql_db : cli_commands<postgresql_db> {
  explicit postgresql_db(bool migrate = true)
      : url_(sqlock_test::required_env("SQLOCK_TEST_POSTGRESQL_URL")),
        schema_(sqlock_test::unique_schema("Sqlock Cli")) {
    sqlock_test::pg_session s(url_);
    s.query("CREATE SCHEMA " + s.ident(schema_));
    if (migrate) migrate_up();
  }
  ~postgresql_db() {
    try {
      sqlock_test::pg_session s(url_);
      s.query("DROP SCHEMA IF EXISTS " + s.ident(schema_) + " CASCADE");
    } catch (...) {
    }
  }
  std::vector<std::string> global() const { return {"-d", url_, "--schema", schema_}; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& url() const { return url_; }

 private:
  temp_dir dir_;
  std::string url_;
  std::string schema_;
};
#endif

#if SQLOCK_HAVE_MARIADB
/// A fresh database `sqlock_t_...` on the server of scripts/with-mariadb, created and dropped
/// as the test user (as for the conformance suite). Its URL (-d) carries no password: the binary
/// reads it from SQLOCK_MARIADB_PASSFILE, which the environment passes through.
struct mariadb_db : cli_commands<mariadb_db> {
  explicit mariadb_db(bool migrate = true)
      : db_(sqlock_test::required_env("SQLOCK_TEST_MARIADB_URL")),
        url_(sqlock_test::mariadb_url_with_database(db_.base_url(), db_.name())) {
    // A password in the URL would be on the command line (ps) of every process spawned here.
    REQUIRE_MESSAGE(!sqlock_test::parse_mariadb_url(url_).has_password,
                    "SQLOCK_TEST_MARIADB_URL must not carry a password");
    (void)sqlock_test::required_env("SQLOCK_MARIADB_PASSFILE");
    if (migrate) migrate_up();
  }
  std::vector<std::string> global() const { return {"-d", url_}; }
  const std::string& dir() const { return dir_.path(); }
  const std::string& url() const { return url_; }
  /// The fixture's database (the URL's path).
  const std::string& database() const { return db_.name(); }

 private:
  temp_dir dir_;
  sqlock_test::mariadb_database db_;
  std::string url_;
};
#endif

// ---- shared by the test files ----------------------------------------------------------------

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::size_t occurrences(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1))
    ++n;
  return n;
}

/// A `sqlock run NAME -- sh -c 'echo $$ > PIDFILE; exec sleep 30'` in the background, started
/// and confirmed holding the lock (its command wrote its pid). `tag` tells apart several
/// holders of one name (semaphores).
template <class DB>
struct holder {
  holder(const DB& db, const std::string& name, std::vector<std::string> extra = {},
         const std::string& tag = {})
      : pidfile(db.dir() + "/" + name + tag + ".pid") {
    std::filesystem::remove(pidfile);
    std::vector<std::string> args = {"run", name};
    args.insert(args.end(), extra.begin(), extra.end());
    for (const char* a :
         {"--", "sh", "-c", "echo $$ > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec sleep 600"})
      args.push_back(a);
    args.push_back(pidfile);
    proc = std::make_unique<process>(db.cmd(args));
    bool started = eventually([&] { return read_pid(pidfile) > 0 || proc->exited(); }, 20s);
    REQUIRE_MESSAGE(started, "holder did not start");
    REQUIRE_MESSAGE(read_pid(pidfile) > 0, "holder exited early: " << proc->err());
    child = read_pid(pidfile);
  }
  // The command outlives any test body (a 30 s sleep ran out under a loaded sanitizer build and
  // ended a holder the test still counted on); it goes with the holder.
  ~holder() {
    if (child > 0) ::kill(child, SIGKILL);
  }
  holder(const holder&) = delete;
  holder& operator=(const holder&) = delete;
  std::string pidfile;
  std::unique_ptr<process> proc;
  pid_t child = 0;
};

}  // namespace sqlock_cli_test

TYPE_TO_STRING_AS("sqlite", sqlock_cli_test::sqlite_db);
#if SQLOCK_HAVE_POSTGRESQL
TYPE_TO_STRING_AS("postgresql", sqlock_cli_test::postgresql_db);
#define SQLOCK_CLI_PG_DB , sqlock_cli_test::postgresql_db
#else
#define SQLOCK_CLI_PG_DB
#endif
#if SQLOCK_HAVE_MARIADB
TYPE_TO_STRING_AS("mariadb", sqlock_cli_test::mariadb_db);
#define SQLOCK_CLI_MARIADB_DB , sqlock_cli_test::mariadb_db
#else
#define SQLOCK_CLI_MARIADB_DB
#endif
/// The databases every TEST_CASE_TEMPLATE runs against.
#define CLI_DATABASES sqlock_cli_test::sqlite_db SQLOCK_CLI_PG_DB SQLOCK_CLI_MARIADB_DB
