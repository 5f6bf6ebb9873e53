// `sqlock list`: the lock rows, by the database clock.

#include "common.hpp"

namespace sqlock::cli {

void print_locks(const globals& g, const std::vector<lock_record>& locks) {
  if (g.format() == output_format::json) {
    auto arr = nlohmann::json::array();
    for (const auto& r : locks) arr.push_back(to_json(r));
    print_json({{"locks", arr}});
    return;
  }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<const char*>> styles;
  for (const auto& r : locks) {
    rows.push_back({printable(r.name), printable(r.owner), std::to_string(r.token),
                    format_time(r.acquired_at), describe_expiry(r), r.held ? "held" : "free",
                    printable(r.metadata)});
    const char* state = r.held ? green : dim;
    styles.push_back({bold, nullptr, nullptr, nullptr, nullptr, state, dim});
  }
  print_table(stdout, {"NAME", "OWNER", "TOKEN", "ACQUIRED", "EXPIRES_IN", "STATE", "METADATA"},
              rows, styles, g.color_stdout());
}

namespace {

struct list_options {
  bool held = false;
  bool free = false;
  std::string prefix;
  std::size_t limit = 0;
};

int run_list(const globals& g, const list_options& o) {
  list_filter filter;
  filter.prefix = o.prefix;
  filter.limit = o.limit;
  if (o.held) filter.show = list_filter::which::held;
  if (o.free) filter.show = list_filter::which::free;
  auto c = open_client(g);
  print_locks(g, c->list(filter));
  return exit_code::ok;
}

}  // namespace

void add_list(CLI::App& app, globals& g) {
  auto o = std::make_shared<list_options>();
  auto* sub = app.add_subcommand("list", "List locks: holder, fencing token and expiry by the database clock");
  auto* held = sub->add_flag("--held", o->held, "Only locks that are held");
  auto* free = sub->add_flag("--free", o->free, "Only locks that are free (released or expired)");
  held->excludes(free);
  sub->add_option("--prefix", o->prefix, "Only names starting with these bytes")->type_name("P");
  sub->add_option("--limit", o->limit, "At most N rows (default: all)")->type_name("N");
  sub->footer(
      "Columns: NAME OWNER TOKEN ACQUIRED EXPIRES_IN STATE METADATA. ACQUIRED is UTC;\n"
      "EXPIRES_IN (\"expires in 12.3s\", \"free for 3m\") is computed by the database.\n"
      "\n"
      "Examples:\n"
      "  sqlock list\n"
      "  sqlock list --held --prefix nightly-\n"
      "  sqlock list -o json | jq '.locks[] | select(.held) | .name'");
  sub->callback([&g, o] { g.action = [&g, o] { return run_list(g, *o); }; });
}

}  // namespace sqlock::cli
