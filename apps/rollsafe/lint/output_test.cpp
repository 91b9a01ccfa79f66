#include "lint/output.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace rollsafe::lint {
namespace {

namespace json = boost::json;

LintReport Sample() {
    LintReport r;
    r.files = 2;
    r.findings = {
        {"deploy/app.yaml", 23, 7, Severity::kError, "RS001", "grace too short", "raise it"},
        {"deploy/nginx conf/a.conf", 4, 0, Severity::kWarning, "RS008", "no retry", ""},
        {"bad.yaml", 3, 9, Severity::kError, "parse", "YAML syntax: illegal map value", "fix"},
        {"unreadable.yaml", 0, 0, Severity::kError, "parse", "cannot open", ""},
    };
    return r;
}

TEST(LintOutput, TextIsOneLinePerFindingThenASummary) {
    EXPECT_EQ(FormatText(Sample()),
              "deploy/app.yaml:23: error RS001 grace-period: grace too short — fix: raise it\n"
              "deploy/nginx conf/a.conf:4: warning RS008 post-retry-off: no retry\n"
              "bad.yaml:3:9: error parse: YAML syntax: illegal map value — fix: fix\n"
              "unreadable.yaml: error parse: cannot open\n"
              "rollsafe lint: 3 errors, 1 warning in 2 files\n");
    EXPECT_EQ(FormatText(LintReport{}), "rollsafe lint: 0 errors, 0 warnings in 0 files\n");
}

TEST(LintOutput, JsonHasFindingsAndSummary) {
    const json::value v = json::parse(FormatJson(Sample()));
    const json::array& findings = v.at("findings").as_array();
    ASSERT_EQ(findings.size(), 4u);
    EXPECT_EQ(findings[0].at("file").as_string(), "deploy/app.yaml");
    EXPECT_EQ(findings[0].at("line").as_int64(), 23);
    EXPECT_EQ(findings[0].at("severity").as_string(), "error");
    EXPECT_EQ(findings[0].at("rule").as_string(), "RS001");
    EXPECT_EQ(findings[0].at("name").as_string(), "grace-period");
    EXPECT_EQ(findings[0].at("fix").as_string(), "raise it");
    EXPECT_EQ(v.at("summary").at("errors").as_int64(), 3);
    EXPECT_EQ(v.at("summary").at("warnings").as_int64(), 1);
    EXPECT_EQ(v.at("summary").at("files").as_int64(), 2);
}

TEST(LintOutput, SarifTwoOneOne) {
    const json::value v = json::parse(FormatSarif(Sample()));
    EXPECT_EQ(v.at("version").as_string(), "2.1.0");
    const json::array& runs = v.at("runs").as_array();
    ASSERT_EQ(runs.size(), 1u);
    const json::object& driver = runs[0].at("tool").at("driver").as_object();
    EXPECT_EQ(driver.at("name").as_string(), "rollsafe lint");
    const json::array& rules = driver.at("rules").as_array();
    ASSERT_EQ(rules.size(), RuleCatalogue().size());
    EXPECT_EQ(rules[0].at("id").as_string(), "RS001");
    EXPECT_EQ(rules[0].at("helpUri").as_string(), "docs/lint.md#rs001-grace-period");
    const json::array& results = runs[0].at("results").as_array();
    ASSERT_EQ(results.size(), 4u);
    EXPECT_EQ(results[0].at("ruleId").as_string(), "RS001");
    EXPECT_EQ(results[0].at("ruleIndex").to_number<int>(), 0);
    EXPECT_EQ(results[0].at("level").as_string(), "error");
    const auto& loc = results[0].at("locations").at(0).at("physicalLocation");
    EXPECT_EQ(loc.at("artifactLocation").at("uri").as_string(), "deploy/app.yaml");
    EXPECT_EQ(loc.at("region").at("startLine").as_int64(), 23);
    EXPECT_EQ(loc.at("region").at("startColumn").as_int64(), 7);
    EXPECT_EQ(results[1].at("level").as_string(), "warning");
    EXPECT_EQ(results[1]
                  .at("locations")
                  .at(0)
                  .at("physicalLocation")
                  .at("artifactLocation")
                  .at("uri")
                  .as_string(),
              "deploy/nginx%20conf/a.conf");
    // No line: no region (SARIF regions start at line 1).
    EXPECT_FALSE(
        results[3].at("locations").at(0).at("physicalLocation").as_object().contains("region"));
}

}  // namespace
}  // namespace rollsafe::lint
