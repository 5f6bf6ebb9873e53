// SPDX-License-Identifier: Apache-2.0
#include "etcd_peer.hpp"

#include <cstdlib>
#include <vector>

#include "util.hpp"

namespace bench {
namespace {

// The value of a top-level field of the Go program's one-line JSON object (numbers and strings
// without escapes: all it prints).
std::string field(const std::string& json, const std::string& key) {
  auto k = json.find("\"" + key + "\":");
  if (k == std::string::npos) throw failure("etcd bench: no '" + key + "' in: " + json);
  auto v = k + key.size() + 3;
  if (v < json.size() && json[v] == '"') {
    auto end = json.find('"', v + 1);
    if (end == std::string::npos) throw failure("etcd bench: bad JSON: " + json);
    return json.substr(v + 1, end - v - 1);
  }
  auto end = json.find_first_of(",}", v);
  if (end == std::string::npos) throw failure("etcd bench: bad JSON: " + json);
  return json.substr(v, end - v);
}

double number(const std::string& json, const std::string& key) {
  return std::strtod(field(json, key).c_str(), nullptr);
}

std::vector<std::string> base_argv(const config& cfg, const char* mode) {
  return {cfg.etcd_bench, "-endpoint", cfg.etcd_endpoint, "-mode", mode};
}

etcd_run measure(const config& cfg, std::vector<std::string> argv, bool contended) {
  argv.insert(argv.end(), {"-duration-ms", std::to_string(cfg.run.count()), "-ttl", "30"});
  int status = 0;
  auto out = run_capture(argv, &status);
  // Exit 3: the run completed but saw two holders at once; its figures still come back.
  if (status != 0 && !(contended && status == 3))
    throw failure("etcd bench exited with " + std::to_string(status) + ": " + out);
  auto line = out.substr(0, out.find('\n'));
  etcd_run r;
  r.seconds = number(line, "seconds");
  r.ops = static_cast<std::uint64_t>(number(line, "ops"));
  r.ops_per_s = number(line, "ops_per_s");
  r.p50_ms = number(line, "p50_ms");
  r.p99_ms = number(line, "p99_ms");
  r.cpu_s = number(line, "cpu_s");
  r.ctx_switches = number(line, "ctx_switches");
  r.max_holders = static_cast<int>(number(line, "max_holders"));
  r.overlaps = static_cast<std::uint64_t>(number(line, "overlaps"));
  if (status == 3 && r.overlaps == 0) throw failure("etcd bench exited with 3: " + out);
  return r;
}

}  // namespace

std::string etcd_version(const config& cfg) {
  auto out = run_capture(base_argv(cfg, "version"));
  return field(out, "server") + " (client: clientv3 + concurrency.Mutex, " + field(out, "go") + ")";
}

etcd_run etcd_uncontended(const config& cfg, int clients) {
  auto argv = base_argv(cfg, "uncontended");
  argv.insert(argv.end(), {"-clients", std::to_string(clients)});
  return measure(cfg, std::move(argv), false);
}

etcd_run etcd_contended(const config& cfg, int clients, int hold_ms) {
  auto argv = base_argv(cfg, "contended");
  argv.insert(argv.end(),
              {"-clients", std::to_string(clients), "-hold-ms", std::to_string(hold_ms)});
  return measure(cfg, std::move(argv), true);
}

}  // namespace bench
