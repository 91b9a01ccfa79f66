/// @file
/// @brief Helpers shared by the rule tests (k8s_rules_test, kong_rules_test,
/// nginx_rules_test): in-memory sources, lint them, and read the findings back.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "lint/lint.hpp"

namespace rollsafe::lint::testing {

/// A source named `name` holding `text`.
inline Source Src(std::string name, std::string text, Source::Kind kind = Source::Kind::kYaml) {
    Source s;
    s.name = std::move(name);
    s.text = std::move(text);
    s.kind = kind;
    return s;
}

inline LintReport Lint(std::vector<Source> sources) { return LintSources(sources); }

/// Every finding as "file:line rule message", one per line, for failure messages.
inline std::string Dump(const LintReport& r) {
    std::string s;
    for (const auto& f : r.findings)
        s += f.file + ":" + std::to_string(f.line) + " " + f.rule + " " + f.message + "\n";
    return s;
}

/// Replaces the first `from` in `*s` by `to`; fails the test when `from` is missing, so a
/// variant never silently equals the good file.
inline void Replace(std::string* s, const std::string& from, const std::string& to) {
    const auto at = s->find(from);
    ASSERT_NE(at, std::string::npos) << from;
    s->replace(at, from.size(), to);
}

}  // namespace rollsafe::lint::testing
