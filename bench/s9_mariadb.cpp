// SPDX-License-Identifier: Apache-2.0
// Scenario 9: MariaDB. sqlock's uncontended cycle (scenario 1's: try_acquire with keepalive
// off, then release; and the same with one lease::renew in between) against a bare Connector/C
// loop sending the very same statement sequence: the texts are the backend's own
// (src/backends/mariadb/statements.hpp), ?N rewritten to ? and bound by number as the backend's
// connection.cpp does, server-side prepared once per connection, with the same transaction
// boundaries (START TRANSACTION and COMMIT as text queries), in the order locks.cpp and
// renew.cpp send them. The blocking API (sqlock uses the non-blocking one, for its deadlines):
// the floor, as blocking libpq is for scenario 1.

#include <mysql.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <variant>

#include <sqlock/sqlock.hpp>

#include "backends/mariadb/connection.hpp"
#include "backends/mariadb/params.hpp"
#include "backends/mariadb/statements.hpp"
#include "bench.hpp"
#include "util.hpp"

namespace bench {
namespace {

namespace sql = sqlock::detail::mariadb::sql;

const char* s9 = "s9";
constexpr int names_per_thread = 32;
constexpr int base_names = 9000000;
constexpr std::int64_t ttl_us = 30'000'000;

std::string name_for(int thread, int i) { return std::to_string(base_names + thread * 100 + i); }

using param = std::variant<std::int64_t, std::string>;
using row = std::vector<std::optional<std::string>>;

// One Connector/C connection (blocking API), as the backend opens its own: utf8mb4,
// CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS, the URL's database, the backend's session setup.
class bare_connection {
 public:
  explicit bare_connection(const std::string& url) {
    auto p = sqlock::detail::mariadb::parse_url(url);
    db_ = mysql_init(nullptr);
    if (!db_) throw failure("bare mariadb: out of memory");
    mysql_options(db_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!mysql_real_connect(db_, p.socket.empty() ? p.host.c_str() : "localhost", p.user.c_str(),
                            p.has_password ? p.password.c_str() : nullptr, p.database.c_str(),
                            p.port, p.socket.empty() ? nullptr : p.socket.c_str(),
                            CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS))
      fail("connect to " + p.display);
    query(sql::session_setup);
  }
  ~bare_connection() {
    for (auto& [text, s] : stmts_) mysql_stmt_close(s.stmt);
    mysql_close(db_);
  }
  bare_connection(const bare_connection&) = delete;
  bare_connection& operator=(const bare_connection&) = delete;

  // A text query (the write lock, COMMIT, the session setup), every result read; the first row
  // of the last result set that had one.
  row query(const std::string& text) {
    row first;
    if (mysql_real_query(db_, text.data(), text.size())) fail(text);
    do {
      if (MYSQL_RES* r = mysql_store_result(db_)) {
        if (MYSQL_ROW x = mysql_fetch_row(r)) {
          const unsigned long* len = mysql_fetch_lengths(r);
          first.clear();
          for (unsigned i = 0; i < mysql_num_fields(r); ++i)
            first.emplace_back(x[i] ? std::optional<std::string>(std::string(x[i], len[i]))
                                    : std::nullopt);
        }
        mysql_free_result(r);
      } else if (mysql_errno(db_)) {
        fail(text);
      }
    } while (mysql_next_result(db_) == 0);
    return first;
  }

  // Executes the statement of text `sql` (numbered parameters; prepared on first use) with
  // `params` (params[k] is ?k+1); returns its rows as text, as the backend reads them.
  std::vector<row> exec(const std::string& sql, const std::vector<param>& params,
                        std::uint64_t* affected = nullptr) {
    auto& s = prepared(sql);
    const std::size_t n = s.positions.size();
    std::vector<MYSQL_BIND> b(n);
    std::vector<unsigned long> lengths(n);
    for (std::size_t k = 0; k < n; ++k) {
      const auto& v = params.at(static_cast<std::size_t>(s.positions[k] - 1));
      std::memset(&b[k], 0, sizeof(MYSQL_BIND));
      if (auto* i = std::get_if<std::int64_t>(&v)) {
        b[k].buffer_type = MYSQL_TYPE_LONGLONG;
        b[k].buffer = const_cast<std::int64_t*>(i);
      } else {
        const auto& t = std::get<std::string>(v);
        b[k].buffer_type = MYSQL_TYPE_STRING;
        b[k].buffer = const_cast<char*>(t.data());
        b[k].buffer_length = lengths[k] = static_cast<unsigned long>(t.size());
        b[k].length = &lengths[k];
      }
    }
    if (n > 0 && mysql_stmt_bind_param(s.stmt, b.data())) fail_stmt(s.stmt, sql);
    if (mysql_stmt_execute(s.stmt)) fail_stmt(s.stmt, sql);
    if (affected) *affected = mysql_stmt_affected_rows(s.stmt);
    std::vector<row> rows;
    MYSQL_RES* meta = mysql_stmt_result_metadata(s.stmt);
    if (!meta) return rows;
    const unsigned cols = mysql_num_fields(meta);
    mysql_free_result(meta);
    if (mysql_stmt_store_result(s.stmt)) fail_stmt(s.stmt, sql);
    std::vector<MYSQL_BIND> r(cols);
    std::vector<std::array<char, 256>> bufs(cols);
    std::vector<unsigned long> lens(cols);
    std::vector<my_bool> nulls(cols);
    for (unsigned k = 0; k < cols; ++k) {
      std::memset(&r[k], 0, sizeof(MYSQL_BIND));
      r[k].buffer_type = MYSQL_TYPE_STRING;
      r[k].buffer = bufs[k].data();
      r[k].buffer_length = static_cast<unsigned long>(bufs[k].size());
      r[k].length = &lens[k];
      r[k].is_null = &nulls[k];
    }
    if (mysql_stmt_bind_result(s.stmt, r.data())) fail_stmt(s.stmt, sql);
    for (;;) {
      int f = mysql_stmt_fetch(s.stmt);
      if (f == MYSQL_NO_DATA) break;
      if (f == 1 || f == MYSQL_DATA_TRUNCATED) fail_stmt(s.stmt, sql);
      row out(cols);
      for (unsigned k = 0; k < cols; ++k)
        if (!nulls[k]) out[k] = std::string(bufs[k].data(), lens[k]);
      rows.push_back(std::move(out));
    }
    mysql_stmt_free_result(s.stmt);
    return rows;
  }

  std::string scalar(const std::string& text) {
    if (mysql_real_query(db_, text.data(), text.size())) fail(text);
    MYSQL_RES* r = mysql_store_result(db_);
    if (!r) fail(text);
    MYSQL_ROW v = mysql_fetch_row(r);
    std::string out = v && v[0] ? v[0] : "";
    mysql_free_result(r);
    return out;
  }

 private:
  struct stmt {
    MYSQL_STMT* stmt = nullptr;
    std::vector<int> positions;
  };
  stmt& prepared(const std::string& sql) {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return it->second;
    // The backend's own rewrite (connection.hpp), so the server receives the same text.
    auto [text, positions] = sqlock::detail::mariadb::positional_parameters(sql);
    MYSQL_STMT* s = mysql_stmt_init(db_);
    if (!s) throw failure("bare mariadb: out of memory");
    if (mysql_stmt_prepare(s, text.data(), text.size())) {
      std::string e = mysql_stmt_error(s);
      mysql_stmt_close(s);
      throw failure("bare mariadb: prepare " + sql + ": " + e);
    }
    return stmts_.emplace(sql, stmt{s, std::move(positions)}).first->second;
  }
  [[noreturn]] void fail(const std::string& what) {
    throw failure("bare mariadb: " + what + ": " + mysql_error(db_));
  }
  [[noreturn]] static void fail_stmt(MYSQL_STMT* s, const std::string& what) {
    throw failure("bare mariadb: " + what + ": " + mysql_stmt_error(s));
  }
  MYSQL* db_ = nullptr;
  std::map<std::string, stmt> stmts_;
};

std::int64_t as_int(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }

// The write transaction's start (connection.cpp, write_transaction): one text query that
// starts it and locks the counter row with the clock. Returns {counter, now}.
std::pair<std::int64_t, std::int64_t> begin_write(bare_connection& c) {
  auto wl = c.query(sql::write_lock);
  if (wl.size() != 2) throw failure("bare mariadb: no counter row");
  return {as_int(wl[0]), as_int(wl[1])};
}

// mariadb_backend::try_acquire of a free name, not waiting (locks.cpp): look first; the write
// transaction; the row locked NOWAIT; the token drawn; the upsert.
// Returns the token.
std::int64_t bare_acquire(bare_connection& c, const std::string& name, const std::string& nonce) {
  auto look = c.exec(sql::lock_look, {name});
  if (!look.empty() && as_int(look[0][0]) > 0 && look[0][1] != nonce)
    throw failure("bare mariadb: uncontended acquire refused (look)");
  auto [counter, now] = begin_write(c);
  auto cur = c.exec(sql::lock_row, {name});
  std::int64_t floor = 1;
  if (!cur.empty()) {
    if (as_int(cur[0][1]) > now) throw failure("bare mariadb: uncontended acquire refused");
    floor = as_int(cur[0][0]) + 1;
  }
  const std::int64_t token = std::max(counter + 1, floor);
  c.exec(sql::set_counter, {token});
  c.exec(sql::lock_upsert,
         {name, std::string("bench-bare"), nonce, token, now, now + ttl_us, std::string()});
  c.query(sql::commit);  // a try's fresh nonce has no ticket to drop
  return token;
}

// mariadb_backend::renew of one lock (renew.cpp): the row locked (SKIP LOCKED), its new expiry
// written when it moves.
void bare_renew(bare_connection& c, const std::string& name, const std::string& nonce,
                std::int64_t token) {
  static const std::string rows = sql::renew_lock_rows(1, true);
  static const std::string update = sql::renew_lock_update(1);
  auto [counter, now] = begin_write(c);
  (void)counter;
  auto r = c.exec(rows, {name});
  if (r.size() != 1 || r[0][1] != nonce || as_int(r[0][2]) != token || as_int(r[0][3]) <= now)
    throw failure("bare mariadb: renew found the lease gone");
  const std::int64_t expires = as_int(r[0][3]), e = std::max(expires, now + ttl_us);
  if (e != expires) c.exec(update, {name, e});
  c.query(sql::commit);
}

// mariadb_backend::end_lock, a release (locks.cpp): the row locked NOWAIT, its expiry set to
// now, the queue read in one statement (empty here: no handoff, no lapsed ticket to drop).
void bare_release(bare_connection& c, const std::string& name, const std::string& nonce,
                  std::int64_t token) {
  auto [counter, now] = begin_write(c);
  (void)counter;
  auto cur = c.exec(sql::lock_row, {name});
  if (cur.size() != 1 || as_int(cur[0][0]) != token || cur[0][2] != nonce ||
      as_int(cur[0][1]) <= now)
    throw failure("bare mariadb: release found the lease gone");
  c.exec(sql::lock_set_expiry, {now, name});
  if (!c.exec(sql::waiter_head, {name, now}).empty())  // no ticket, live or lapsed
    throw failure("bare mariadb: a waiter in an uncontended run");
  c.query(sql::commit);
}

// One connection per thread, opened on first use and kept across runs and repeats (as sqlock's
// client keeps its pool), so every statement is prepared before the measured runs.
using bare_pool = std::vector<std::shared_ptr<bare_connection>>;

run_result bare_cycles(const config& cfg, bare_pool& pool, int threads, bool renew) {
  while (pool.size() < static_cast<std::size_t>(threads))
    pool.push_back(std::make_shared<bare_connection>(cfg.mariadb_url));
  return run_workers(threads, cfg.run, [&](worker_ctx& ctx) -> op_fn {
    auto c = pool[static_cast<std::size_t>(ctx.index)];
    return [c, renew, i = 0](worker_ctx& w) mutable {
      auto name = name_for(w.index, i++ % names_per_thread);
      auto nonce = random_hex(16);
      auto token = bare_acquire(*c, name, nonce);
      if (renew) bare_renew(*c, name, nonce, token);
      bare_release(*c, name, nonce, token);
    };
  });
}

run_result sqlock_cycles(const config& cfg, sqlock::client& c, int threads, bool renew) {
  sqlock::lock_options opts;
  opts.keepalive = false;
  opts.ttl = milliseconds{ttl_us / 1000};
  return run_workers(threads, cfg.run, [&](worker_ctx&) -> op_fn {
    return [&, opts, renew, i = 0](worker_ctx& w) mutable {
      auto l = c.try_acquire(name_for(w.index, i++ % names_per_thread), opts);
      if (!l) throw failure("sqlock: uncontended acquire refused");
      if (renew && !l->renew()) throw failure("sqlock: renew of a held lease failed");
      l->release();
    };
  });
}

// Server-wide counters (SHOW GLOBAL STATUS): the benchmark is the server's only client while a
// run lasts. Each read is itself one statement (Questions counts it): subtracted.
struct server_counters {
  bare_connection c;
  int pid = -1;
  explicit server_counters(const std::string& url) : c(url) {
    std::ifstream f(c.scalar("SELECT @@pid_file"));
    f >> pid;
  }
  double status(const char* name) {
    return std::stod(c.scalar(std::string("SELECT variable_value FROM "
                                          "information_schema.global_status WHERE "
                                          "variable_name = '") +
                              name + "'"));
  }
  double cpu() const { return pid > 0 ? pid_cpu_seconds(pid) : -1; }
};

}  // namespace

std::string mariadb_version(const config& cfg) {
  bare_connection c(cfg.mariadb_url);
  return c.scalar("SELECT version()") + " (innodb_flush_log_at_trx_commit " +
         c.scalar("SELECT @@innodb_flush_log_at_trx_commit") + ", log_bin " +
         c.scalar("SELECT @@log_bin") + ", innodb_buffer_pool_size " +
         c.scalar("SELECT @@innodb_buffer_pool_size DIV 1048576") + "M)";
}

void run_mariadb(const config& cfg, report& rep) {
  rep.section(
      s9, "9. MariaDB: uncontended acquire+release cycles (MariaDB 10.11, InnoDB, keepalive off)",
      "Each thread cycles over its own 32 lock names (no contention): acquire, then release "
      "(scenario 1's cycle); and acquire, one lease::renew, release. The bare loop is the "
      "Connector/C blocking API sending the same statement sequence: the backend's own texts "
      "(src/backends/mariadb/statements.cpp, ?N rewritten to ? and bound by number as the "
      "backend's connection.cpp does), each server-side prepared once per connection, the same "
      "transaction boundaries (START TRANSACTION and COMMIT as text queries), in the order "
      "locks.cpp and renew.cpp send them: acquire = look-first SELECT; START TRANSACTION, "
      "counter row FOR UPDATE (with the clock), lock row FOR UPDATE NOWAIT, counter UPDATE, "
      "upsert, DELETE of used-up tickets, COMMIT (8 statements); renew = START TRANSACTION, "
      "counter row, the lease's row FOR UPDATE SKIP LOCKED, expiry UPDATE, COMMIT (5); release = "
      "START TRANSACTION, counter row, lock row, expiry UPDATE, queue head SELECT, DELETE of "
      "lapsed tickets, COMMIT (7). Every COMMIT flushes the redo log "
      "(innodb_flush_log_at_trx_commit = 1); MariaDB has no per-transaction relaxed commit, so "
      "the release's commit is flushed too (PostgreSQL's is not: issue 14). sqlock uses one "
      "client with pool_size = threads; the bare loop one connection per thread.");
  {
    sqlock::client c(cfg.mariadb_url);
    if (c.schema_version() == 0) c.migrate();
  }
  server_counters srv(cfg.mariadb_url);
  if (srv.pid <= 0)
    rep.note(s9, "Server CPU not measured: the server's pid file (@@pid_file) was not readable.");
  std::map<int, std::unique_ptr<sqlock::client>> clients;
  auto client_for = [&](int threads) -> sqlock::client& {
    auto& c = clients[threads];
    if (!c) {
      sqlock::client_options co;
      co.backend.pool_size = static_cast<std::size_t>(threads);
      c = std::make_unique<sqlock::client>(cfg.mariadb_url, co);
    }
    return *c;
  };
  std::map<int, bare_pool> bare_pools;
  struct variant {
    std::string name;
    bool bare, renew;
  };
  const std::string cyc = "acquire+release", cyc_renew = "acquire+renew+release";
  const std::vector<variant> variants = {
      {"sqlock, " + cyc, false, false},
      {"bare Connector/C, same statements, " + cyc, true, false},
      {"sqlock, " + cyc_renew, false, true},
      {"bare Connector/C, same statements, " + cyc_renew, true, true},
  };
  const std::vector<int> thread_counts = {1, 4};
  const std::string how_tp =
      "completed cycles / wall time from the start barrier (all threads connected and "
      "prepared) to the last thread's exit";
  const std::string how_lat =
      "per cycle, steady_clock around the whole cycle in the calling thread; p50/p99 over every "
      "cycle of the run (nearest rank)";
  const std::string how_ratio =
      "sqlock's cycles/s / the bare loop's cycles/s, both measured in the same repeat, one "
      "right after the other";

  // Warm-up: connections, prepared statements, the rows themselves.
  for (int threads : thread_counts) {
    sqlock_cycles(cfg, client_for(threads), threads, true);
    bare_cycles(cfg, bare_pools[threads], threads, true);
  }

  for (int r = 0; r < cfg.repeats; ++r) {
    for (int threads : thread_counts) {
      const std::string tl = threads_label(threads);
      std::map<std::string, double> rate;
      for (const auto& v : variants) {
        double q0 = srv.status("Questions"), p0 = srv.status("Com_stmt_prepare");
        double scpu0 = srv.cpu(), cpu0 = process_cpu_seconds();
        auto res = v.bare ? bare_cycles(cfg, bare_pools[threads], threads, v.renew)
                          : sqlock_cycles(cfg, client_for(threads), threads, v.renew);
        double scpu = srv.cpu() - scpu0, cpu = process_cpu_seconds() - cpu0;
        // Each status read is one statement: one between q0 and q1 (p0's).
        double q = srv.status("Questions") - q0 - 2, prep = srv.status("Com_stmt_prepare") - p0;
        const double ops = static_cast<double>(res.ops);
        rate[v.name] = res.ops_per_s();
        rep.add(s9, "cycles/s, " + tl, v.name, "cycles/s", how_tp, res.ops_per_s());
        rep.add(s9, "cycle latency p50, " + tl, v.name, "ms", how_lat,
                percentile(res.lat_us, 50) / 1000);
        rep.add(s9, "cycle latency p99, " + tl, v.name, "ms", how_lat,
                percentile(res.lat_us, 99) / 1000);
        if (ops > 0) {
          rep.add(s9, "statements per cycle, " + tl, v.name, "statements",
                  "the server's Questions counter (SHOW GLOBAL STATUS: text queries and prepared "
                  "executions) during the run, less the benchmark's own reads of it, / cycles",
                  q / ops);
          rep.add(s9, "statements prepared per cycle, " + tl, v.name, "",
                  "the server's Com_stmt_prepare during the run / cycles (0: every statement "
                  "had been prepared on its connection before the run)",
                  prep / ops);
          if (srv.pid > 0)
            rep.add(s9, "server CPU per cycle, " + tl, v.name, "us",
                    "utime+stime of the mariadbd process (/proc/<pid>/stat, all its threads) "
                    "during the run / cycles",
                    scpu * 1e6 / ops);
          rep.add(s9, "client CPU per cycle, " + tl, v.name, "us",
                  "getrusage(RUSAGE_SELF) user+sys of the benchmark process during the run / "
                  "cycles (the client side only)",
                  cpu * 1e6 / ops);
        }
        std::cerr << "  s9 rep " << r + 1 << " " << tl << " " << v.name << ": "
                  << report::fmt(res.ops_per_s()) << " cycles/s\n";
      }
      for (const auto& c : {cyc, cyc_renew}) {
        const double bare = rate["bare Connector/C, same statements, " + c];
        rep.add(s9, "sqlock / bare, cycles/s, " + tl, c, "ratio", how_ratio,
                bare > 0 ? rate["sqlock, " + c] / bare : 0);
      }
    }
  }
}

}  // namespace bench
