// SPDX-License-Identifier: Apache-2.0
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "util.hpp"

namespace bench {

void report::section(const std::string& id, const std::string& title, const std::string& intro) {
  for (auto& s : sections_)
    if (s.id == id) return;
  sections_.push_back({id, title, intro, {}});
}

figure* report::find(const std::string& section, const std::string& metric,
                     const std::string& variant) {
  for (auto& f : figures_)
    if (f.section == section && f.metric == metric && f.variant == variant) return &f;
  return nullptr;
}

const figure* report::find(const std::string& section, const std::string& metric,
                           const std::string& variant) const {
  for (auto& f : figures_)
    if (f.section == section && f.metric == metric && f.variant == variant) return &f;
  return nullptr;
}

void report::add(const std::string& section, const std::string& metric, const std::string& variant,
                 const std::string& unit, const std::string& how, double value) {
  auto* f = find(section, metric, variant);
  if (!f) {
    figures_.push_back({section, metric, variant, unit, how, {}});
    f = &figures_.back();
  }
  f->values.push_back(value);
}

double report::median(const std::string& section, const std::string& metric,
                      const std::string& variant) const {
  auto* f = find(section, metric, variant);
  if (!f || f->values.empty()) return std::numeric_limits<double>::quiet_NaN();
  return median_of(f->values);
}

void report::note(const std::string& section, const std::string& text) {
  for (auto& s : sections_)
    if (s.id == section) s.notes.push_back(text);
}

std::string report::fmt(double v) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  double a = std::fabs(v);
  if (a >= 100 || v == std::floor(v))
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (a >= 10)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else if (a >= 0.1)
    std::snprintf(buf, sizeof buf, "%.2f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  // Thousands separators for large integers, for legibility.
  std::string s = buf;
  if (a >= 10000 && s.find('.') == std::string::npos) {
    std::string out;
    int n = 0;
    for (auto it = s.rbegin(); it != s.rend(); ++it) {
      if (n && n % 3 == 0 && *it != '-') out.push_back(',');
      out.push_back(*it);
      ++n;
    }
    s.assign(out.rbegin(), out.rend());
  }
  return s;
}

std::string report::markdown() const {
  std::ostringstream md;
  md << preamble_;
  if (!violations_.empty()) {
    md << "\n## SAFETY VIOLATIONS\n\n";
    for (auto& v : violations_) md << "- " << v << "\n";
  }
  if (!verdicts_.empty()) {
    md << "\n## Targets\n\n| target | measured (medians of this run) | verdict |\n|---|---|---|\n";
    for (auto& v : verdicts_) {
      md << "| " << v.target << " | " << v.measured << " | "
         << (v.met == 1   ? "**met**"
             : v.met == 0 ? "**missed**"
                          : "not measured");
      if (!v.why.empty()) md << ": " << v.why;
      md << " |\n";
    }
  }
  for (auto& s : sections_) {
    md << "\n## " << s.title << "\n\n";
    if (!s.intro.empty()) md << s.intro << "\n\n";
    std::vector<std::string> hows;
    std::ostringstream table;
    table << "| figure | variant | median | min | max | unit | n | how |\n"
          << "|---|---|--:|--:|--:|---|--:|---|\n";
    bool any = false;
    for (auto& f : figures_) {
      if (f.section != s.id) continue;
      any = true;
      auto it = std::find(hows.begin(), hows.end(), f.how);
      std::size_t idx = static_cast<std::size_t>(it - hows.begin());
      if (it == hows.end()) hows.push_back(f.how);
      auto lo = *std::min_element(f.values.begin(), f.values.end());
      auto hi = *std::max_element(f.values.begin(), f.values.end());
      table << "| " << f.metric << " | " << f.variant << " | **" << fmt(median_of(f.values))
            << "** | " << fmt(lo) << " | " << fmt(hi) << " | " << f.unit << " | " << f.values.size()
            << " | [" << (idx + 1) << "] |\n";
    }
    if (any) {
      md << table.str() << "\n";
      for (std::size_t i = 0; i < hows.size(); ++i)
        md << "[" << (i + 1) << "] " << hows[i] << "  \n";
    }
    for (auto& n : s.notes) md << "\n" << n << "\n";
  }
  return md.str();
}

void report::write(const std::string& dir) const {
  std::ofstream(dir + "/results.md") << markdown();
  std::ofstream csv(dir + "/results.csv");
  csv << "section,metric,variant,unit,repeat,value\n";
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
      if (c == '"') o += '"';
      o += c;
    }
    return o + "\"";
  };
  for (auto& f : figures_)
    for (std::size_t i = 0; i < f.values.size(); ++i)
      csv << q(f.section) << ',' << q(f.metric) << ',' << q(f.variant) << ',' << q(f.unit) << ','
          << (i + 1) << ',' << f.values[i] << '\n';
}

}  // namespace bench
