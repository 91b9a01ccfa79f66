#include "lint/cmd_lint.hpp"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "lint/lint.hpp"
#include "lint/output.hpp"

namespace rollsafe::lint {
namespace {

constexpr std::string_view kPrefix = "rollsafe lint: ";

struct Flags {
    std::string format = "text";
    std::vector<std::string> paths;
};

int Run(const Flags& f) {
    // Checked here rather than by CLI11's required(), so that the message says what a PATH is.
    if (f.paths.empty()) {
        std::cerr << kPrefix
                  << "no PATH given: name files or directories of Kubernetes YAML, Kong "
                     "declarative YAML or nginx *.conf, or - for YAML on standard input\n";
        return 2;
    }
    std::vector<Source> sources;
    std::string error;
    if (!CollectSources(f.paths, std::cin, &sources, &error)) {
        std::cerr << kPrefix << error << "\n";
        return 2;
    }
    if (sources.empty())
        std::cerr << kPrefix << "no *.yaml, *.yml or *.conf file found under the given paths\n";
    const LintReport report = LintSources(sources);
    if (f.format == "json") {
        std::cout << FormatJson(report);
    } else if (f.format == "sarif") {
        std::cout << FormatSarif(report);
    } else {
        std::cout << FormatText(report);
    }
    std::cout << std::flush;
    return report.Errors() > 0 ? 1 : 0;
}

}  // namespace

void AddLintCommand(CLI::App& app, std::function<int()>* run) {
    auto flags = std::make_shared<Flags>();
    auto* cmd = app.add_subcommand(
        "lint",
        "Check Kubernetes manifests, Kong and nginx configs for what breaks graceful rollouts "
        "(rules RS001-RS010, docs/lint.md)");
    cmd->add_option("--format", flags->format, "Output: text, json or sarif (SARIF 2.1.0)")
        ->check(CLI::IsMember({"text", "json", "sarif"}))
        ->capture_default_str();
    cmd->add_option("paths", flags->paths,
                    "Files or directories (*.yaml, *.yml, *.conf, recursively); - reads YAML "
                    "from standard input")
        ->type_name("PATH");
    cmd->callback([flags, run] { *run = [flags] { return Run(*flags); }; });
}

}  // namespace rollsafe::lint
