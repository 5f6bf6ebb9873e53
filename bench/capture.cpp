// SPDX-License-Identifier: Apache-2.0
// Reading sqlock's statements back from the PostgreSQL server log (see capture.hpp).

#include "capture.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <sqlock/sqlock.hpp>

#include "util.hpp"

namespace bench {
namespace {

constexpr const char* detail_prefix = "DETAIL:  parameters: ";

std::streamoff log_end(const std::string& path) {
  std::ifstream probe(path, std::ios::ate);
  return probe ? static_cast<std::streamoff>(probe.tellg()) : 0;
}

bool is_nonce(const std::string& v) {
  return v.size() == 32 && std::all_of(v.begin(), v.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

// Runs one acquire/renew/release through a client whose role logs every statement
// (log_statement = all), then reads them back from the server log: the baselines send exactly
// what the server received from sqlock. The release's parameters give the notification channel
// ($1 name, $2 nonce, $3 token, $4 channel, $5 handoff channel: the order the bare loops bind
// them in).
statements capture(const config& cfg) {
  auto offset = log_end(cfg.pg_log);
  const std::string name = "bench-capture-" + random_hex(4);
  std::string token;
  {
    sqlock::client c(cfg.pg_capture_url);
    sqlock::lock_options o;
    o.keepalive = false;
    auto l = c.try_acquire(name, o);
    if (!l) throw failure("capture: acquire refused");
    token = std::to_string(l->token());
    l->renew();
    l->release();
  }
  auto grab = [](const std::string& line, const std::string& key) -> std::string {
    auto p = line.find("execute " + key);
    if (p == std::string::npos) return {};
    auto colon = line.find(": ", p);
    return colon == std::string::npos ? std::string() : line.substr(colon + 2);
  };
  for (int attempt = 0; attempt < 40; ++attempt) {
    std::ifstream log(cfg.pg_log);
    log.seekg(offset);
    statements s;
    std::string release_params;
    bool after_release = false;
    std::string line;
    while (std::getline(log, line)) {
      if (auto d = line.find(detail_prefix); d != std::string::npos) {
        if (after_release) release_params = line.substr(d + std::string(detail_prefix).size());
        after_release = false;
        continue;
      }
      if (line.find(" execute ") != std::string::npos) after_release = false;
      if (auto t = grab(line, "sqlock_acquire_"); !t.empty()) s.acquire = t;
      if (auto t = grab(line, "sqlock_release_"); !t.empty()) {
        s.release = t;
        after_release = true;
      }
      if (auto t = grab(line, "sqlock_renew_"); !t.empty()) s.renew = t;
    }
    if (s.acquire.empty() || s.release.empty() || s.renew.empty() || release_params.empty()) {
      std::this_thread::sleep_for(milliseconds{50});
      continue;
    }
    auto v = parse_log_params(release_params);
    if (v.size() != 5 || !v[0] || *v[0] != name || !v[2] || *v[2] != token || !v[3] ||
        v[3]->empty() || !v[4] || v[4]->empty())
      throw failure(
          "capture: the release's parameters are not (name, nonce, token, channel, handoff "
          "channel): " +
          release_params);
    s.channel = *v[3];
    s.handoff_channel = *v[4];
    return s;
  }
  throw failure("capture: sqlock's statements not found in " + cfg.pg_log +
                " (is log_statement=all set for the capture role?)");
}

// "$1 = 'a', $2 = NULL, ..." -> values (NULL as an empty optional).
std::vector<std::optional<std::string>> parse_log_params(const std::string& detail) {
  std::vector<std::optional<std::string>> out;
  std::size_t i = 0;
  while ((i = detail.find('$', i)) != std::string::npos) {
    auto eq = detail.find(" = ", i);
    if (eq == std::string::npos) break;
    i = eq + 3;
    if (detail.compare(i, 4, "NULL") == 0) {
      out.emplace_back();
      i += 4;
      continue;
    }
    if (i >= detail.size() || detail[i] != '\'') break;
    std::string v;
    for (++i; i < detail.size(); ++i) {
      if (detail[i] == '\'') {
        if (i + 1 < detail.size() && detail[i + 1] == '\'') {
          v.push_back('\'');
          ++i;
          continue;
        }
        break;
      }
      v.push_back(detail[i]);
    }
    out.emplace_back(std::move(v));
    ++i;
  }
  return out;
}

sem_statements capture_semaphore(const config& cfg, const std::string& chan, std::int64_t limit) {
  auto offset = log_end(cfg.pg_log);
  const std::string name = "bench-capture-sem-" + random_hex(4);
  std::string owner, token;
  {
    sqlock::client c(cfg.pg_capture_url);
    sqlock::semaphore_options o;
    o.keepalive = false;
    o.limit = limit;
    o.count = 1;
    auto l = c.try_acquire_semaphore(name, o);
    if (!l) throw failure("capture: semaphore acquire refused");
    owner = c.owner();
    token = std::to_string(l->token());
    l->release();
  }
  for (int attempt = 0; attempt < 40; ++attempt) {
    std::ifstream log(cfg.pg_log);
    log.seekg(offset);
    sem_statements s;
    sem_statements::stmt* pending = nullptr;
    std::string line;
    while (std::getline(log, line)) {
      auto d = line.find(detail_prefix);
      if (d != std::string::npos) {
        if (pending) pending->params = line.substr(d + std::string(detail_prefix).size());
        pending = nullptr;
        continue;
      }
      auto e = line.find(" execute ");
      if (e == std::string::npos) continue;
      auto colon = line.find(": ", e);
      if (colon == std::string::npos) continue;
      std::string stmt_name = line.substr(e + 9, colon - e - 9);
      std::string text = line.substr(colon + 2);
      pending = nullptr;
      if (text.find("sqlock_semaphore_attempt(") != std::string::npos) {
        s.acquire.sql = text;
        pending = &s.acquire;
      } else if (stmt_name.find("release") != std::string::npos &&
                 text.find("sqlock_semaphore_release(") != std::string::npos) {
        s.release.sql = text;
        pending = &s.release;
      }
    }
    if (s.acquire.sql.empty() || s.release.sql.empty() || s.acquire.params.empty() ||
        s.release.params.empty()) {
      std::this_thread::sleep_for(milliseconds{50});
      continue;
    }
    // The nonce: the 32-hex value both statements carry.
    auto av = parse_log_params(s.acquire.params), rv = parse_log_params(s.release.params);
    std::string nonce;
    for (auto& a : av)
      for (auto& r : rv)
        if (a && r && *a == *r && is_nonce(*a)) nonce = *a;
    if (nonce.empty()) throw failure("capture: no nonce shared by the semaphore statements");
    auto classify = [&](sem_statements::stmt& st,
                        const std::vector<std::optional<std::string>>& vals, bool release) {
      for (auto& v : vals) {
        using k = sem_statements::slot;
        k slot = k::literal;
        if (v && *v == name)
          slot = k::name;
        else if (v && *v == nonce)
          slot = k::nonce;
        else if (v && *v == owner)
          slot = k::owner;
        else if (v && *v == chan)
          slot = k::channel;
        else if (v && release && *v == token)
          slot = k::token;
        else if (v && !release && *v == std::to_string(limit))
          slot = k::limit;
        if (!v) throw failure("capture: a NULL parameter in " + st.sql.substr(0, 80));
        st.slots.push_back(slot);
        st.literals.push_back(*v);
      }
    };
    classify(s.acquire, av, false);
    classify(s.release, rv, true);
    if (std::count(s.acquire.slots.begin(), s.acquire.slots.end(), sem_statements::slot::limit) !=
        1)
      throw failure("capture: the semaphore acquire's limit is not exactly one parameter: " +
                    s.acquire.params);
    return s;
  }
  throw failure("capture: sqlock's semaphore statements not found in " + cfg.pg_log);
}

std::string describe_slots(const sem_statements::stmt& st) {
  std::ostringstream o;
  for (std::size_t i = 0; i < st.slots.size(); ++i) {
    using k = sem_statements::slot;
    o << (i ? ", " : "") << "$" << i + 1 << " = ";
    switch (st.slots[i]) {
      case k::name:
        o << "<name>";
        break;
      case k::nonce:
        o << "<random nonce>";
        break;
      case k::owner:
        o << "<owner>";
        break;
      case k::token:
        o << "<token>";
        break;
      case k::channel:
        o << "<channel>";
        break;
      case k::limit:
        o << "<limit>";
        break;
      case k::literal:
        o << "'" << st.literals[i] << "'";
        break;
    }
  }
  return o.str();
}

}  // namespace bench
