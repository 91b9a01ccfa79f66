/// @file
/// @brief The three output formats of `rollsafe lint`.
///
/// text: one line per finding, `file:line: error|warning RSxxx rule-name: what is wrong — fix:
/// how to fix` (parse findings also carry the column: `file:line:col: error parse: ...`), then
/// one summary line `rollsafe lint: N errors, M warnings in K files`.
/// json: one object `{"findings": [{file, line, column, severity, rule, name, message, fix}],
/// "summary": {errors, warnings, files}}`.
/// sarif: SARIF 2.1.0, one run whose tool.driver is "rollsafe lint" with every rule of the
/// catalogue (helpUri docs/lint.md#<id>-<name>), one result per finding with its
/// physicalLocation (artifactLocation.uri, region.startLine when the line is known).
/// Every format ends with a newline. Findings are printed in the report's order.
#pragma once

#include <string>

#include "lint/lint.hpp"

namespace rollsafe::lint {

std::string FormatText(const LintReport& report);
std::string FormatJson(const LintReport& report);
std::string FormatSarif(const LintReport& report);

}  // namespace rollsafe::lint
