// SPDX-License-Identifier: Apache-2.0
// sqlock_fault_worker: one process of a fault scenario. It uses the library (or, in advisory
// mode, raw session advisory locks for comparison) and appends every step to a history file,
// one line per event, stamped with CLOCK_MONOTONIC (see common.hpp). The checker reads the
// histories afterwards; the worker itself judges nothing.
//
// usage: sqlock_fault_worker --mode soak|semaphore|herd|advisory|migrate|late_renewal --id ID
//          --history FILE
//          [--url URL | env SQLOCK_FAULT_URL] [--schema S] [--pgbouncer] (listen URL from env
//          SQLOCK_FAULT_LISTEN_URL) [--names a,b,c] [--threads T] [--iterations N]
//          [--duration-ms D] [--ttl-ms T] [--hold-min-ms A] [--hold-max-ms B]
//          [--near-ttl-pct P] [--wait-ms W] [--write-every-ms E] [--fence-port P]
//          [--zombie-writes Z] [--rounds R] [--barrier-dir DIR] [--op-timeout-ms O] [--seed S]
//          [--pause-max-ms P (soak: sleep a random 0..P ms after each release)]
//          [--stop-file F (soak: start no acquisition once F exists)]
//          [--metadata M] [--purge-ms F (purge rows free for F ms at the end)]
//          semaphore mode (the soak loop on semaphores instead of locks):
//          [--limit N] [--count C (units per acquisition; 0: random 1..count-max)]
//          [--count-max M] [--fair-names a,b (these names wait fairly, the rest do not)]
//          late_renewal mode (one lease of the first name, a lock or with --limit a
//          semaphore of --count units, held hold-max-ms; see late_renewal()):
//          --barrier-dir DIR [--short-ttl-ms S]
// The URL normally comes from the environment so that no password can show in `ps`.
//
// History lines: "<mono_ns> <worker> <event> <fields...>", events:
//   start pid | attempt name [units fair] | grant name token lease [units] | refused name |
//   valid name token lease safe_until_ns | write name token lease ok|stale|err [zombie] |
//   noticed_lost name token lease | lost name token reason... | renewed name token | at_risk
//   name token | handed name token (a release handed this waiter the lock) | release_begin name
//   token lease | released name token lease | release_err name token lease code | error name code |
//   leak name lease | ready | herd_done round | done | renew_warm|renew_short|renew_again name
//   ok|false|err code (late_renewal mode)
// (the [bracketed] fields only in semaphore mode)
// exit: 0 ok, 2 usage, 5 setup error

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sqlock/sqlock.hpp>

#include "common.hpp"

namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

const char* code_name(sqlock::errc c) {
  switch (c) {
    case sqlock::errc::unavailable:
      return "unavailable";
    case sqlock::errc::schema_mismatch:
      return "schema_mismatch";
    case sqlock::errc::lease_lost:
      return "lease_lost";
    case sqlock::errc::in_doubt:
      return "in_doubt";
    case sqlock::errc::invalid_argument:
      return "invalid_argument";
    case sqlock::errc::usage:
      return "usage";
    case sqlock::errc::cancelled:
      return "cancelled";
    case sqlock::errc::internal:
      return "internal";
  }
  return "?";
}

/// No spaces in history fields.
std::string word(std::string s) {
  for (char& c : s)
    if (c == ' ' || c == '\n' || c == '\t') c = '_';
  return s.substr(0, 200);
}

/// A client of the fenced resource server: one connection per thread.
class fence_client {
 public:
  explicit fence_client(int port) : port_(port) {}
  ~fence_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  fence_client(const fence_client&) = delete;
  fence_client& operator=(const fence_client&) = delete;
  /// "ok", "stale" or "err".
  std::string write(const std::string& name, std::int64_t token, const std::string& lease) {
    if (port_ <= 0) return "none";
    if (fd_ < 0) fd_ = fault::connect_loopback(port_);
    if (fd_ < 0) return "err";
    std::string req = "W " + name + " " + std::to_string(token) + " " + lease + "\n";
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
      return reset();
    std::string resp;
    char c;
    while (resp.size() < 64) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return reset();
      if (::recv(fd_, &c, 1, 0) != 1) return reset();
      if (c == '\n') break;
      resp += c;
    }
    if (resp.rfind("OK", 0) == 0) return "ok";
    if (resp.rfind("STALE", 0) == 0) return "stale";
    return "err";
  }

 private:
  std::string reset() {
    ::close(fd_);
    fd_ = -1;
    return "err";
  }
  int port_;
  int fd_ = -1;
};

struct config {
  std::string mode, id, url, schema, listen_url, barrier_dir, stop_file;
  std::vector<std::string> names, fair_names;
  bool pgbouncer = false;
  long limit = 0, count = 1, count_max = 1;  ///< semaphore mode: limit > 0
  long threads = 1, iterations = 0, duration_ms = 0, ttl_ms = 2000, hold_min_ms = 0,
       hold_max_ms = 20, near_ttl_pct = 0, wait_ms = 5000, write_every_ms = 20, fence_port = 0,
       zombie_writes = 0, rounds = 0, op_timeout_ms = 10000, seed = 0, purge_ms = 0,
       pause_max_ms = 0;
  std::string metadata;
};

sqlock::client_options client_options(const config& cfg, fault::history& h) {
  sqlock::client_options o;
  if (!cfg.schema.empty()) o.backend.schema = cfg.schema;
  if (cfg.pgbouncer) {
    // PgBouncer in transaction mode: no named prepared statements, and LISTEN through it hears
    // nothing, so the listener connects to the server directly.
    o.backend.prepared_statements = false;
    o.backend.listen_url = cfg.listen_url;
  }
  o.operation_timeout = ms{cfg.op_timeout_ms};
  const std::string id = cfg.id;
  o.log = [&h, id](sqlock::log_level level, std::string_view msg) {
    if (level == sqlock::log_level::warn || level == sqlock::log_level::error)
      h.line("%s log %s %s", id.c_str(), sqlock::to_string(level), word(std::string(msg)).c_str());
  };
  o.listeners.push_back([&h, id](const sqlock::lock_event& e) {
    if (e.kind == sqlock::event_kind::renewed)
      h.line("%s renewed %s %lld", id.c_str(), e.name.c_str(), static_cast<long long>(e.token));
    else if (e.kind == sqlock::event_kind::acquired && e.reason == "handed over")
      h.line("%s handed %s %lld", id.c_str(), e.name.c_str(), static_cast<long long>(e.token));
    else if (e.kind == sqlock::event_kind::renew_failed)
      h.line("%s at_risk %s %lld %s", id.c_str(), e.name.c_str(), static_cast<long long>(e.token),
             word(e.reason).c_str());
  });
  return o;
}

/// Releases `l`, between the history lines "release_begin" and "released" (or "release_err"
/// with the error's code).
void release(fault::history& h, sqlock::lease& l, const std::string& wid, const std::string& name,
             long long token, const std::string& lease_id) {
  h.line("%s release_begin %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
  try {
    l.release();
    h.line("%s released %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
  } catch (const sqlock::error& e) {
    h.line("%s release_err %s %lld %s %s", wid.c_str(), name.c_str(), token, lease_id.c_str(),
           code_name(e.code()));
  }
}

/// The soak loop of one thread: acquire a random name, hold it for a random time while
/// validating the lease and writing to the fenced resource, release.
// One validation of a held lease, recorded with the instant it was taken, and one fenced write
// with its token. Returns false (after recording it) when the lease is no longer valid.
// `risk_seen`: whether this lease was already seen at risk (logged once per lease, as
// "risk_seen": a failover, or failing renewals).
bool validate_and_write(const config& cfg, fault::history& h, fence_client& fence,
                        const std::string& wid, const std::string& name, long long token,
                        const std::string& lease_id, const sqlock::lease& l, bool& risk_seen) {
  // The lease is validated AFTER the timestamp is taken: it was held at that instant.
  std::int64_t t = fault::mono_ns();
  auto rem = l.remaining();
  // Lost by the lease's own state, not by `remaining()`, which truncates to whole ms: 0 ms
  // while up to 1 ms is left. Recording that as a loss put it before the safety deadline that
  // earlier validations had shown (6.proxy failed once: refuse_loss_lag_ms=-0.9).
  if (!l) {
    h.line("%s noticed_lost %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
    return false;
  }
  if (!risk_seen && l.state() == sqlock::lease_state::at_risk) {
    risk_seen = true;
    h.line("%s risk_seen %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
  }
  if (rem <= ms{0}) return true;  // under 1 ms left: no write; the next look sees the loss
  h.at(t,
       wid + " valid " + name + " " + std::to_string(token) + " " + lease_id + " " +
           std::to_string(t + std::chrono::duration_cast<std::chrono::nanoseconds>(rem).count()));
  if (cfg.fence_port > 0) {
    auto r = fence.write(name, token, lease_id);
    h.line("%s write %s %lld %s %s", wid.c_str(), name.c_str(), token, lease_id.c_str(), r.c_str());
  }
  return true;
}

void soak_thread(const config& cfg, sqlock::client& c, fault::history& h, int thread,
                 std::int64_t end_ns) {
  const std::string wid = cfg.id + (cfg.threads > 1 ? "." + std::to_string(thread) : "");
  std::mt19937_64 rng(static_cast<std::uint64_t>(cfg.seed) * 7919 + std::hash<std::string>{}(wid));
  fence_client fence(static_cast<int>(cfg.fence_port));
  sqlock::lock_options lo;
  lo.ttl = ms{cfg.ttl_ms};
  lo.metadata = cfg.metadata;
  lo.on_lost = [&h, wid](const sqlock::lost_event& e) {
    h.line("%s lost %s %lld %s", wid.c_str(), e.name.c_str(), static_cast<long long>(e.token),
           word(e.reason).c_str());
  };
  long seq = 0;
  for (long i = 0; cfg.iterations == 0 || i < cfg.iterations; ++i) {
    if (end_ns && fault::mono_ns() >= end_ns) break;
    if (!cfg.stop_file.empty() && ::access(cfg.stop_file.c_str(), F_OK) == 0) break;
    const std::string& name = cfg.names[rng() % cfg.names.size()];
    long hold;
    if (cfg.near_ttl_pct > 0 && static_cast<long>(rng() % 100) < cfg.near_ttl_pct)
      hold = cfg.ttl_ms * (70 + static_cast<long>(rng() % 61)) / 100;  // 0.7 .. 1.3 ttl
    else
      hold = cfg.hold_min_ms +
             static_cast<long>(rng() %
                               static_cast<std::uint64_t>(cfg.hold_max_ms - cfg.hold_min_ms + 1));
    std::optional<sqlock::lease> l;
    long units = 1;
    try {
      if (cfg.limit > 0) {
        // A semaphore: `units` of `limit`, fair when the name is listed as fair.
        sqlock::semaphore_options so;
        static_cast<sqlock::lock_options&>(so) = lo;
        so.limit = cfg.limit;
        units = cfg.count > 0
                    ? cfg.count
                    : 1 + static_cast<long>(rng() % static_cast<std::uint64_t>(cfg.count_max));
        so.count = std::min(units, cfg.limit);
        units = so.count;
        for (const auto& f : cfg.fair_names) so.fair = so.fair || f == name;
        h.line("%s attempt %s %ld %d", wid.c_str(), name.c_str(), units, so.fair ? 1 : 0);
        l = c.try_acquire_semaphore_for(name, ms{cfg.wait_ms}, so);
      } else {
        h.line("%s attempt %s", wid.c_str(), name.c_str());
        l = c.try_acquire_for(name, ms{cfg.wait_ms}, lo);
      }
    } catch (const sqlock::error& e) {
      h.line("%s error %s %s %s", wid.c_str(), name.c_str(), code_name(e.code()),
             word(e.what()).c_str());
      std::this_thread::sleep_for(50ms);
      continue;
    }
    if (!l) {
      h.line("%s refused %s", wid.c_str(), name.c_str());
      continue;
    }
    const std::string lease_id = wid + "#" + std::to_string(++seq);
    const auto token = static_cast<long long>(l->token());
    const std::int64_t granted =
        cfg.limit > 0
            ? h.line("%s grant %s %lld %s %ld", wid.c_str(), name.c_str(), token, lease_id.c_str(),
                     units)
            : h.line("%s grant %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
    const std::int64_t until = granted + hold * 1000000;
    bool lost = false, risk_seen = false;
    for (;;) {
      if (!validate_and_write(cfg, h, fence, wid, name, token, lease_id, *l, risk_seen)) {
        lost = true;
        break;
      }
      std::int64_t now = fault::mono_ns();
      if (now >= until) break;
      std::this_thread::sleep_for(std::chrono::nanoseconds{
          std::min<std::int64_t>(until - now, cfg.write_every_ms * 1000000)});
    }
    if (lost) {
      // A zombie that ignores the loss and keeps writing with its old token: the resource
      // must reject every one of these writes.
      for (long z = 0; z < cfg.zombie_writes; ++z) {
        auto r = fence.write(name, token, lease_id);
        h.line("%s write %s %lld %s %s zombie", wid.c_str(), name.c_str(), token, lease_id.c_str(),
               r.c_str());
        std::this_thread::sleep_for(ms{cfg.write_every_ms});
      }
    }
    release(h, *l, wid, name, token, lease_id);
    if (cfg.pause_max_ms > 0)
      std::this_thread::sleep_for(
          ms{static_cast<long>(rng() % static_cast<std::uint64_t>(cfg.pause_max_ms + 1))});
  }
}

/// Waits until `path` exists, polling every 200 µs (a start barrier shared by processes).
void wait_for_file(const std::string& path) {
  while (::access(path.c_str(), F_OK) != 0) std::this_thread::sleep_for(200us);
}

/// Issue 12, item 1, step by step: grant (a lock, or a semaphore when cfg.limit > 0), warm the
/// renewal connection, then on the driver's signal (file "renew_short" in the barrier dir) a
/// renew(short) that the proxy holds back (it times out), at once followed by a plain renew()
/// through a fresh connection; the lease is validated, and the resource written, all along
/// until hold-max-ms after the grant. The driver delivers the held statement afterwards.
void late_renewal(const config& cfg, sqlock::client& c, fault::history& h, long short_ttl_ms) {
  const std::string& wid = cfg.id;
  const std::string& name = cfg.names[0];
  sqlock::lock_options lo;
  lo.ttl = ms{cfg.ttl_ms};
  lo.on_lost = [&h, wid](const sqlock::lost_event& e) {
    h.line("%s lost %s %lld %s", wid.c_str(), e.name.c_str(), static_cast<long long>(e.token),
           word(e.reason).c_str());
  };
  std::optional<sqlock::lease> l;
  if (cfg.limit > 0) {
    sqlock::semaphore_options so;
    static_cast<sqlock::lock_options&>(so) = lo;
    so.limit = cfg.limit;
    so.count = std::min(std::max(cfg.count, 1L), cfg.limit);
    h.line("%s attempt %s %ld 0", wid.c_str(), name.c_str(), static_cast<long>(so.count));
    l = c.try_acquire_semaphore_for(name, ms{cfg.wait_ms}, so);
  } else {
    h.line("%s attempt %s", wid.c_str(), name.c_str());
    l = c.try_acquire_for(name, ms{cfg.wait_ms}, lo);
  }
  if (!l) {
    h.line("%s refused %s", wid.c_str(), name.c_str());
    return;
  }
  const std::string lease_id = wid + "#1";
  const auto token = static_cast<long long>(l->token());
  const std::int64_t granted =
      cfg.limit > 0
          ? h.line("%s grant %s %lld %s %lld", wid.c_str(), name.c_str(), token, lease_id.c_str(),
                   static_cast<long long>(l->count()))
          : h.line("%s grant %s %lld %s", wid.c_str(), name.c_str(), token, lease_id.c_str());
  const std::int64_t until = granted + cfg.hold_max_ms * 1000000;
  std::thread validator([&] {
    fence_client fence(static_cast<int>(cfg.fence_port));
    bool risk_seen = false;
    while (fault::mono_ns() < until) {
      if (!validate_and_write(cfg, h, fence, wid, name, token, lease_id, *l, risk_seen)) return;
      std::this_thread::sleep_for(ms{cfg.write_every_ms});
    }
  });
  auto renew = [&](const char* step, std::optional<ms> ttl) {
    try {
      bool ok = l->renew(ttl);
      h.line("%s %s %s %s", wid.c_str(), step, name.c_str(), ok ? "ok" : "false");
      return ok;
    } catch (const sqlock::error& e) {
      h.line("%s %s %s err %s", wid.c_str(), step, name.c_str(), code_name(e.code()));
      return false;
    }
  };
  // The keepalive's connection exists and is idle: the short renewal goes out on it.
  renew("renew_warm", std::nullopt);
  h.line("%s ready", wid.c_str());
  wait_for_file(cfg.barrier_dir + "/renew_short");
  renew("renew_short", ms{short_ttl_ms});
  for (int i = 0; i < 10 && !renew("renew_again", std::nullopt); ++i)
    std::this_thread::sleep_for(100ms);
  validator.join();
  release(h, *l, wid, name, token, lease_id);
}

/// The herd: every thread of every process tries the same name at the same instant, round
/// after round; winners keep their leases until the driver ends the run.
void herd_thread(const config& cfg, sqlock::client& c, fault::history& h, int thread,
                 std::vector<sqlock::lease>& kept, std::mutex& kept_mu) {
  const std::string wid = cfg.id + "." + std::to_string(thread);
  sqlock::lock_options lo;
  lo.ttl = ms{cfg.ttl_ms};
  lo.on_lost = [&h, wid](const sqlock::lost_event& e) {
    h.line("%s lost %s %lld %s", wid.c_str(), e.name.c_str(), static_cast<long long>(e.token),
           word(e.reason).c_str());
  };
  h.line("%s ready", wid.c_str());
  for (long r = 0; r < cfg.rounds; ++r) {
    const std::string name = cfg.names[0] + "-" + std::to_string(r);
    wait_for_file(cfg.barrier_dir + "/go." + std::to_string(r));
    h.line("%s attempt %s", wid.c_str(), name.c_str());
    try {
      auto l = c.try_acquire(name, lo);
      if (l) {
        h.line("%s grant %s %lld %s#%ld", wid.c_str(), name.c_str(),
               static_cast<long long>(l->token()), wid.c_str(), r);
        std::lock_guard<std::mutex> lock(kept_mu);
        kept.push_back(std::move(*l));
      } else {
        h.line("%s refused %s", wid.c_str(), name.c_str());
      }
    } catch (const sqlock::error& e) {
      h.line("%s error %s %s %s", wid.c_str(), name.c_str(), code_name(e.code()),
             word(e.what()).c_str());
    }
    h.line("%s herd_done %ld", wid.c_str(), r);
  }
}

/// Session advisory locks through the given URL, the way pglock-style libraries use them:
/// pg_try_advisory_lock, work, pg_advisory_unlock. Through PgBouncer in transaction mode the
/// lock and the unlock may run on different server connections.
void advisory_thread(const config& cfg, fault::history& h, int thread, std::int64_t end_ns) {
  const std::string wid = cfg.id + (cfg.threads > 1 ? "." + std::to_string(thread) : "");
  std::mt19937_64 rng(static_cast<std::uint64_t>(cfg.seed) * 7919 + std::hash<std::string>{}(wid));
  PGconn* conn = PQconnectdb(cfg.url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    h.line("%s error - unavailable connect", wid.c_str());
    PQfinish(conn);
    return;
  }
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  auto bool_query = [&](const char* sql, const std::string& key) -> int {
    const char* v[1] = {key.c_str()};
    PGresult* r = PQexecParams(conn, sql, 1, nullptr, v, nullptr, nullptr, 0);
    int out = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      out = std::strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? 1 : 0;
    PQclear(r);
    return out;
  };
  long seq = 0;
  for (long i = 0; cfg.iterations == 0 || i < cfg.iterations; ++i) {
    if (end_ns && fault::mono_ns() >= end_ns) break;
    std::size_t k = rng() % cfg.names.size();
    const std::string& name = cfg.names[k];
    const std::string key = std::to_string(424242000 + static_cast<long>(k));
    long hold = cfg.hold_min_ms +
                static_cast<long>(
                    rng() % static_cast<std::uint64_t>(cfg.hold_max_ms - cfg.hold_min_ms + 1));
    h.line("%s attempt %s", wid.c_str(), name.c_str());
    int got = bool_query("SELECT pg_try_advisory_lock($1::bigint)", key);
    if (got < 0) {
      h.line("%s error %s unavailable query", wid.c_str(), name.c_str());
      std::this_thread::sleep_for(50ms);
      continue;
    }
    if (got == 0) {
      h.line("%s refused %s", wid.c_str(), name.c_str());
      std::this_thread::sleep_for(ms{1 + static_cast<long>(rng() % 5)});
      continue;
    }
    const std::string lease_id = wid + "#" + std::to_string(++seq);
    std::int64_t granted = h.line("%s grant %s 0 %s", wid.c_str(), name.c_str(), lease_id.c_str());
    std::int64_t until = granted + hold * 1000000;
    for (;;) {
      std::int64_t t = fault::mono_ns();
      // A session advisory lock gives its holder no way to validate it: it believes it holds.
      h.at(t, wid + " valid " + name + " 0 " + lease_id + " 0");
      if (t >= until) break;
      std::this_thread::sleep_for(std::chrono::nanoseconds{
          std::min<std::int64_t>(until - t, cfg.write_every_ms * 1000000)});
    }
    h.line("%s release_begin %s 0 %s", wid.c_str(), name.c_str(), lease_id.c_str());
    int unlocked = bool_query("SELECT pg_advisory_unlock($1::bigint)", key);
    if (unlocked == 1)
      h.line("%s released %s 0 %s", wid.c_str(), name.c_str(), lease_id.c_str());
    else
      h.line("%s leak %s %s", wid.c_str(), name.c_str(), lease_id.c_str());
  }
  PQfinish(conn);
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  try {
    fault::args a(argc, argv);
    cfg.mode = a.str("mode", "soak");
    cfg.id = a.str("id", "w");
    cfg.url = a.str("url");
    if (cfg.url.empty())
      if (const char* e = std::getenv("SQLOCK_FAULT_URL")) cfg.url = e;
    if (const char* e = std::getenv("SQLOCK_FAULT_LISTEN_URL")) cfg.listen_url = e;
    cfg.schema = a.str("schema");
    cfg.pgbouncer = a.flag("pgbouncer");
    cfg.names = fault::split(a.str("names", "a,b,c"), ',');
    cfg.barrier_dir = a.str("barrier-dir");
    cfg.stop_file = a.str("stop-file");
    cfg.threads = a.num("threads", 1);
    cfg.iterations = a.num("iterations", 0);
    cfg.duration_ms = a.num("duration-ms", 0);
    cfg.ttl_ms = a.num("ttl-ms", 2000);
    cfg.hold_min_ms = a.num("hold-min-ms", 0);
    cfg.hold_max_ms = a.num("hold-max-ms", 20);
    cfg.near_ttl_pct = a.num("near-ttl-pct", 0);
    cfg.wait_ms = a.num("wait-ms", 5000);
    cfg.write_every_ms = a.num("write-every-ms", 20);
    cfg.fence_port = a.num("fence-port", 0);
    cfg.zombie_writes = a.num("zombie-writes", 0);
    cfg.rounds = a.num("rounds", 0);
    cfg.op_timeout_ms = a.num("op-timeout-ms", 10000);
    cfg.seed = a.num("seed", 1);
    cfg.purge_ms = a.num("purge-ms", 0);
    cfg.pause_max_ms = a.num("pause-max-ms", 0);
    cfg.metadata = a.str("metadata");
    cfg.limit = a.num("limit", 0);
    cfg.count = a.num("count", 1);
    cfg.count_max = a.num("count-max", 1);
    cfg.fair_names = fault::split(a.str("fair-names"), ',');
    if (cfg.mode == "semaphore" && (cfg.limit < 1 || cfg.count < 0 || cfg.count_max < 1)) {
      std::cerr << "sqlock_fault_worker: semaphore mode needs --limit >= 1, --count >= 0, "
                   "--count-max >= 1\n";
      return 2;
    }
    if (cfg.mode != "semaphore" && cfg.mode != "late_renewal") cfg.limit = 0;
    if (cfg.url.empty() || cfg.names.empty() || cfg.hold_max_ms < cfg.hold_min_ms) {
      std::cerr << "sqlock_fault_worker: bad arguments (see the header of worker.cpp)\n";
      return 2;
    }
    fault::history h(a.str("history"));
    h.line("%s start %d", cfg.id.c_str(), static_cast<int>(::getpid()));
    const std::int64_t end_ns =
        cfg.duration_ms > 0 ? fault::mono_ns() + cfg.duration_ms * 1000000 : 0;

    if (cfg.mode == "migrate") {
      sqlock::client c(cfg.url, client_options(cfg, h));
      c.migrate();
    } else if (cfg.mode == "advisory") {
      std::vector<std::thread> ts;
      for (long t = 0; t < cfg.threads; ++t)
        ts.emplace_back([&, t] { advisory_thread(cfg, h, static_cast<int>(t), end_ns); });
      for (auto& t : ts) t.join();
    } else if (cfg.mode == "soak" || cfg.mode == "semaphore") {
      sqlock::client c(cfg.url, client_options(cfg, h));
      std::vector<std::thread> ts;
      for (long t = 0; t < cfg.threads; ++t)
        ts.emplace_back([&, t] { soak_thread(cfg, c, h, static_cast<int>(t), end_ns); });
      for (auto& t : ts) t.join();
      if (cfg.purge_ms > 0) {
        try {
          h.line("%s purged %zu", cfg.id.c_str(), c.purge(ms{cfg.purge_ms}));
        } catch (const sqlock::error& e) {
          h.line("%s error purge %s %s", cfg.id.c_str(), code_name(e.code()),
                 word(e.what()).c_str());
        }
      }
    } else if (cfg.mode == "late_renewal") {
      if (cfg.barrier_dir.empty()) {
        std::cerr << "sqlock_fault_worker: late_renewal mode needs --barrier-dir\n";
        return 2;
      }
      sqlock::client c(cfg.url, client_options(cfg, h));
      late_renewal(cfg, c, h, a.num("short-ttl-ms", 1000));
    } else if (cfg.mode == "herd") {
      sqlock::client c(cfg.url, client_options(cfg, h));
      std::vector<sqlock::lease> kept;
      std::mutex kept_mu;
      if (a.flag("prepare-expired")) {
        // Odd rounds run on names whose row exists with an expired lease (not released: let
        // lapse without keepalive), so the herd goes through the row-locked update path.
        sqlock::lock_options short_lease;
        short_lease.ttl = ms{100};
        short_lease.keepalive = false;
        std::vector<sqlock::lease> lapsing;
        for (long r = 1; r < cfg.rounds; r += 2)
          if (auto l = c.try_acquire(cfg.names[0] + "-" + std::to_string(r), short_lease))
            lapsing.push_back(std::move(*l));
        std::this_thread::sleep_for(250ms);
        for (auto& l : lapsing)
          if (!l.lost())
            h.line("%s error %s internal not_lapsed", cfg.id.c_str(), l.name().c_str());
      }
      std::vector<std::thread> ts;
      for (long t = 0; t < cfg.threads; ++t)
        ts.emplace_back([&, t] { herd_thread(cfg, c, h, static_cast<int>(t), kept, kept_mu); });
      for (auto& t : ts) t.join();
      wait_for_file(cfg.barrier_dir + "/end");
      for (auto& l : kept) {
        try {
          l.release();
        } catch (const sqlock::error& e) {
          h.line("%s release_err %s %lld - %s", cfg.id.c_str(), l.name().c_str(),
                 static_cast<long long>(l.token()), code_name(e.code()));
        }
      }
    } else {
      std::cerr << "sqlock_fault_worker: unknown mode " << cfg.mode << "\n";
      return 2;
    }
    h.line("%s done", cfg.id.c_str());
  } catch (const sqlock::error& e) {
    std::cerr << "sqlock_fault_worker " << cfg.id << ": " << code_name(e.code()) << ": " << e.what()
              << "\n";
    return 5;
  } catch (const std::exception& e) {
    std::cerr << "sqlock_fault_worker " << cfg.id << ": " << e.what() << "\n";
    return 5;
  }
  return 0;
}
