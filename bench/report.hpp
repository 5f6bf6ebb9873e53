// SPDX-License-Identifier: Apache-2.0
#pragma once
// The results of one run: every figure with its repeated values (min/median/max), the way it
// was measured, the targets with verdicts, written as markdown, raw CSV and chart data.

#include <map>
#include <string>
#include <vector>

namespace bench {

struct figure {
  std::string section, metric, variant, unit, how;
  std::vector<double> values;  ///< one per repeat
};

struct verdict {
  std::string target, measured;
  int met = -1;  ///< 1 met, 0 missed, -1 not measured in this run
  std::string why;
};

class report {
 public:
  /// Declares a section (kept in declaration order) with a paragraph under its title.
  void section(const std::string& id, const std::string& title, const std::string& intro = {});
  /// Appends one repeat's value of a figure.
  void add(const std::string& section, const std::string& metric, const std::string& variant,
           const std::string& unit, const std::string& how, double value);
  /// Median of a figure's values; NaN when absent.
  double median(const std::string& section, const std::string& metric,
                const std::string& variant) const;
  void note(const std::string& section, const std::string& text);
  void target(verdict v) { verdicts_.push_back(std::move(v)); }
  /// A broken guarantee seen by a scenario (e.g. a semaphore's limit exceeded): listed first in
  /// the results, and the program exits non-zero.
  void violation(std::string text) { violations_.push_back(std::move(text)); }
  const std::vector<std::string>& violations() const { return violations_; }
  void set_preamble(std::string text) { preamble_ = std::move(text); }

  std::string markdown() const;
  void write(const std::string& dir) const;  ///< results.md and results.csv

  static std::string fmt(double v);

 private:
  struct sec {
    std::string id, title, intro;
    std::vector<std::string> notes;
  };
  std::vector<sec> sections_;
  std::vector<figure> figures_;
  std::vector<verdict> verdicts_;
  std::vector<std::string> violations_;
  std::string preamble_;
  figure* find(const std::string& section, const std::string& metric, const std::string& variant);
  const figure* find(const std::string& section, const std::string& metric,
                     const std::string& variant) const;
};

}  // namespace bench
