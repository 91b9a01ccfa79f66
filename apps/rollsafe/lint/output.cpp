#include "lint/output.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <string>

namespace rollsafe::lint {
namespace {

namespace json = boost::json;

std::string Plural(int n, std::string_view word) {
    return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

std::string MessageWithFix(const Finding& f) {
    return f.fix.empty() ? f.message : f.message + " — fix: " + f.fix;
}

/// SARIF wants a URI reference: a relative path, percent-encoded where needed.
std::string UriOf(const std::string& path) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : path) {
        if (std::isalnum(c) || c == '/' || c == '.' || c == '-' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::string HelpUri(const RuleInfo& r) {
    std::string anchor;
    for (char c : std::string(r.id) + "-" + std::string(r.name))
        anchor += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "docs/lint.md#" + (r.id == "parse" ? std::string("parse") : anchor);
}

}  // namespace

std::string FormatText(const LintReport& report) {
    std::string out;
    for (const auto& f : report.findings) {
        out += f.file;
        if (f.line > 0) {
            out += ":" + std::to_string(f.line);
            if (f.rule == "parse" && f.column > 0) out += ":" + std::to_string(f.column);
        }
        out += ": ";
        out += SeverityName(f.severity);
        out += " " + f.rule;
        if (f.rule != "parse") out += " " + std::string(RuleName(f));
        out += ": " + MessageWithFix(f) + "\n";
    }
    out += "rollsafe lint: " + Plural(report.Errors(), "error") + ", " +
           Plural(report.Warnings(), "warning") + " in " + Plural(report.files, "file") + "\n";
    return out;
}

std::string FormatJson(const LintReport& report) {
    json::array findings;
    for (const auto& f : report.findings) {
        findings.push_back(json::object{
            {"file", f.file},
            {"line", f.line},
            {"column", f.column},
            {"severity", SeverityName(f.severity)},
            {"rule", f.rule},
            {"name", RuleName(f)},
            {"message", f.message},
            {"fix", f.fix},
        });
    }
    json::object root{
        {"findings", std::move(findings)},
        {"summary", json::object{{"errors", report.Errors()},
                                 {"warnings", report.Warnings()},
                                 {"files", report.files}}},
    };
    return json::serialize(root) + "\n";
}

std::string FormatSarif(const LintReport& report) {
    json::array rules;
    const auto& catalogue = RuleCatalogue();
    for (const auto& r : catalogue) {
        rules.push_back(json::object{
            {"id", r.id},
            {"name", r.name},
            {"shortDescription", json::object{{"text", r.summary}}},
            {"helpUri", HelpUri(r)},
            {"defaultConfiguration", json::object{{"level", SeverityName(r.severity)}}},
        });
    }
    json::array results;
    for (const auto& f : report.findings) {
        json::object physical{{"artifactLocation", json::object{{"uri", UriOf(f.file)}}}};
        if (f.line > 0) {
            json::object region{{"startLine", f.line}};
            if (f.column > 0) region["startColumn"] = f.column;
            physical["region"] = std::move(region);
        }
        json::object result{
            {"ruleId", f.rule},
            {"level", SeverityName(f.severity)},
            {"message", json::object{{"text", MessageWithFix(f)}}},
            {"locations", json::array{json::object{{"physicalLocation", std::move(physical)}}}},
        };
        for (std::size_t i = 0; i < catalogue.size(); ++i)
            if (catalogue[i].id == f.rule) result["ruleIndex"] = i;
        results.push_back(std::move(result));
    }
    json::object root{
        {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
        {"version", "2.1.0"},
        {"runs", json::array{json::object{
                     {"tool", json::object{{"driver",
                                            json::object{
                                                {"name", "rollsafe lint"},
                                                {"informationUri", "docs/lint.md"},
                                                {"rules", std::move(rules)},
                                            }}}},
                     {"results", std::move(results)},
                 }}},
    };
    return json::serialize(root) + "\n";
}

}  // namespace rollsafe::lint
