// `rollsafe lint` on the fixtures in tests/lint/: every file in broken/ breaks one rule, named
// with its line in its first line (`# expect: RS001 line 25`, `... warning` for a warning
// rule); adding a file adds a case. good/ must lint clean.

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/process.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

const std::string kLintDir = std::string(ROLLSAFE_SOURCE_DIR) + "/tests/lint";

struct Expectation {
    std::string file;  ///< absolute path
    std::string rule;  ///< "RS001" ... or "parse"
    int line = 0;
    bool warning = false;
};

std::optional<Expectation> ReadExpectation(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    static const std::regex kHeader(R"(^# expect: (RS\d{3}|parse) line (\d+)( warning)?\s*$)");
    std::smatch m;
    if (!std::regex_match(first, m, kHeader)) return std::nullopt;
    return Expectation{path.string(), m[1], std::stoi(m[2]), m[3].matched};
}

std::vector<std::filesystem::path> BrokenFixtures() {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(kLintDir + "/broken", ec))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

ProcessResult Lint(std::vector<std::string> args) {
    args.insert(args.begin(), {RollsafeBinary(), "lint"});
    return RunProcess(args, 20s);
}

class BrokenFixture : public ::testing::TestWithParam<std::filesystem::path> {};

TEST_P(BrokenFixture, ReportsItsRuleOnItsLineAndNothingElse) {
    const auto expect = ReadExpectation(GetParam());
    ASSERT_TRUE(expect) << GetParam()
                        << ": the first line must be `# expect: RSxxx line N` (or `parse`), "
                           "optionally followed by ` warning`";
    const ProcessResult r = Lint({expect->file});
    ASSERT_EQ(r.spawn_errno, 0);
    ASSERT_TRUE(r.exit_code) << "rollsafe lint did not exit";
    EXPECT_EQ(*r.exit_code, expect->warning ? 0 : 1) << r.out << r.err;

    const std::string at = expect->file + ":" + std::to_string(expect->line) + ":";
    const std::string what =
        std::string(expect->warning ? " warning " : " error ") + expect->rule + " ";
    const std::string what_parse = std::string(" error parse:");
    bool found = false;
    int findings = 0;
    for (const auto& line : Lines(r.out)) {
        if (!line.starts_with(expect->file)) continue;  // the summary line
        ++findings;
        const bool right_rule =
            line.find(expect->rule == "parse" ? what_parse : what) != std::string::npos;
        EXPECT_TRUE(right_rule) << "another rule fired (a fixture must break exactly one): "
                                << line;
        found = found || (right_rule && line.starts_with(at));
    }
    EXPECT_TRUE(found) << "expected " << expect->rule << " at " << at << "\noutput:\n" << r.out;
    EXPECT_GE(findings, 1);
}

std::string FixtureName(const ::testing::TestParamInfo<std::filesystem::path>& info) {
    std::string name = info.param.filename().string();
    for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    return name;
}

INSTANTIATE_TEST_SUITE_P(Lint, BrokenFixture, ::testing::ValuesIn(BrokenFixtures()), FixtureName);

TEST(Lint, FixturesCoverEveryRuleAndBothSyntaxes) {
    std::vector<std::string> rules;
    bool yaml_parse = false;
    bool conf_parse = false;
    for (const auto& f : BrokenFixtures()) {
        const auto e = ReadExpectation(f);
        ASSERT_TRUE(e) << f;
        rules.push_back(e->rule);
        yaml_parse = yaml_parse || (e->rule == "parse" && f.extension() == ".yaml");
        conf_parse = conf_parse || (e->rule == "parse" && f.extension() == ".conf");
    }
    for (const char* id :
         {"RS001", "RS002", "RS003", "RS004", "RS005", "RS006", "RS007", "RS008", "RS009", "RS010"})
        EXPECT_NE(std::find(rules.begin(), rules.end(), id), rules.end())
            << "no fixture for " << id;
    EXPECT_TRUE(yaml_parse) << "no malformed .yaml fixture";
    EXPECT_TRUE(conf_parse) << "no malformed .conf fixture";
}

TEST(Lint, GoodFixturesLintClean) {
    const ProcessResult r = Lint({kLintDir + "/good"});
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("rollsafe lint: 0 errors, 0 warnings in 4 files"), std::string::npos)
        << r.out;
}

TEST(Lint, JsonOutputParses) {
    const ProcessResult r =
        Lint({"--format", "json", kLintDir + "/broken/rs001-seed-numbers.yaml"});
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 1) << r.err;
    std::string error;
    const auto v = ParseJson(r.out, &error);
    ASSERT_TRUE(v) << error << "\n" << r.out;
    const JsonValue* findings = v->Find("findings");
    ASSERT_TRUE(findings != nullptr && findings->IsArray()) << r.out;
    ASSERT_EQ(findings->AsArray().size(), 1u) << r.out;
    const JsonValue& f = findings->AsArray()[0];
    EXPECT_EQ(f.GetString("rule"), "RS001");
    EXPECT_EQ(f.GetString("severity"), "error");
    EXPECT_EQ(f.GetNumber("line"), 25);
    EXPECT_NE(f.GetString("message").value_or("").find("60s"), std::string::npos);
    const JsonValue* summary = v->Find("summary");
    ASSERT_NE(summary, nullptr);
    EXPECT_EQ(summary->GetNumber("errors"), 1);
    EXPECT_EQ(summary->GetNumber("warnings"), 0);
}

TEST(Lint, SarifOutputIsTwoOneOneWithRuleIdsAndLines) {
    const ProcessResult r = Lint({"--format=sarif", kLintDir + "/broken"});
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 1) << r.err;
    std::string error;
    const auto v = ParseJson(r.out, &error);
    ASSERT_TRUE(v) << error;
    EXPECT_EQ(v->GetString("version"), "2.1.0");
    const JsonValue* runs = v->Find("runs");
    ASSERT_TRUE(runs != nullptr && runs->IsArray() && runs->AsArray().size() == 1u);
    const JsonValue& run = runs->AsArray()[0];
    const JsonValue* driver = run.Find("tool") ? run.Find("tool")->Find("driver") : nullptr;
    ASSERT_NE(driver, nullptr);
    EXPECT_EQ(driver->GetString("name"), "rollsafe lint");
    const JsonValue* results = run.Find("results");
    ASSERT_TRUE(results != nullptr && results->IsArray());
    // Linted as one set, fixtures satisfy each other's cross-file rules (a PDB in one file
    // selects the pods of another): fewer results than files, but never none.
    EXPECT_GE(results->AsArray().size(), 10u) << r.out;
    for (const auto& res : results->AsArray()) {
        EXPECT_TRUE(res.GetString("ruleId").has_value()) << res.Dump();
        const JsonValue* locations = res.Find("locations");
        ASSERT_TRUE(locations != nullptr && locations->IsArray() && !locations->AsArray().empty())
            << res.Dump();
        const JsonValue* physical = locations->AsArray()[0].Find("physicalLocation");
        ASSERT_NE(physical, nullptr) << res.Dump();
        ASSERT_NE(physical->Find("artifactLocation"), nullptr) << res.Dump();
        EXPECT_TRUE(physical->Find("artifactLocation")->GetString("uri")) << res.Dump();
        ASSERT_NE(physical->Find("region"), nullptr) << res.Dump();
        EXPECT_GE(physical->Find("region")->GetNumber("startLine").value_or(0), 1) << res.Dump();
    }
}

TEST(Lint, StdinIsYaml) {
    const std::string file = kLintDir + "/broken/rs005-single-replica.yaml";
    const ProcessResult r =
        RunProcess({"sh", "-c", "exec \"$0\" lint - < \"$1\"", RollsafeBinary(), file}, 20s);
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("<stdin>:10: error RS005"), std::string::npos) << r.out;
}

TEST(Lint, UsageErrorsExitTwoWithAMessage) {
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::vector<Case> cases = {
        {{}, "no PATH given"},
        {{kLintDir + "/no-such-file.yaml"}, "no such file or directory"},
        {{kLintDir + "/good", kLintDir + "/missing-dir"}, "missing-dir"},
        {{"--format", "xml", kLintDir + "/good"}, "--format"},
        {{"--no-such-flag", kLintDir + "/good"}, "--no-such-flag"},
    };
    for (const auto& c : cases) {
        std::string shown;
        for (const auto& a : c.args) shown += a + " ";
        const ProcessResult r = Lint(c.args);
        ASSERT_TRUE(r.exit_code) << shown;
        EXPECT_EQ(*r.exit_code, 2) << shown << "\nstderr: " << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << shown << "\nstderr: " << r.err;
        EXPECT_EQ(r.out, "") << shown;
    }
}

TEST(Lint, ShippedDeployDirectoryLintsClean) {
    const std::string deploy = std::string(ROLLSAFE_SOURCE_DIR) + "/deploy";
    ASSERT_TRUE(std::filesystem::is_directory(deploy)) << deploy;
    const ProcessResult r = Lint({deploy});
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.out.find(" error "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(" warning "), std::string::npos) << r.out;
}

}  // namespace
}  // namespace rollsafe::testing
