// CollectSources: which files a run reads.
#include "lint/lint.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "testing/temp_dir.hpp"

namespace rollsafe::lint {
namespace {

using rollsafe::testing::TempDir;

void Write(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
}

std::vector<std::string> Names(const std::vector<Source>& sources, const std::string& strip) {
    std::vector<std::string> out;
    for (const auto& s : sources) {
        std::string n = s.name;
        if (n.starts_with(strip)) n = n.substr(strip.size());
        out.push_back(n + (s.kind == Source::Kind::kNginx ? "[nginx]" : "") +
                      (s.kustomization ? "[k]" : ""));
    }
    return out;
}

TEST(LintCollect, DirectoriesRecursivelyInNameOrderSkippingPatchesAndHiddenDirs) {
    TempDir dir;
    const std::string d = dir.Path();
    Write(d + "/base/deployment.yaml", "kind: Deployment\n");
    Write(d + "/base/kustomization.yaml", "resources: [deployment.yaml]\n");
    Write(d + "/overlay/kustomization.yaml",
          "resources: [../base]\npatches:\n  - path: patch.yaml\npatchesStrategicMerge:\n"
          "  - sub/old-patch.yml\nconfigMapGenerator:\n  - name: env\n    envs: [serve.env]\n");
    Write(d + "/overlay/patch.yaml", "kind: Deployment\n");
    Write(d + "/overlay/sub/old-patch.yml", "kind: Deployment\n");
    Write(d + "/overlay/serve.env", "ROLLSAFE_DRAIN_DELAY=9s\n");
    Write(d + "/overlay/pvc.yaml", "kind: PersistentVolumeClaim\n");
    Write(d + "/nginx/site.conf", "server {}\n");
    Write(d + "/nginx/README.md", "# not linted\n");
    Write(d + "/.git/config.yaml", "x: 1\n");
    Write(d + "/data.json", "{}\n");

    std::vector<Source> sources;
    std::string error;
    std::istringstream no_stdin;
    ASSERT_TRUE(CollectSources({d}, no_stdin, &sources, &error)) << error;
    EXPECT_EQ(Names(sources, d + "/"),
              (std::vector<std::string>{"base/deployment.yaml", "base/kustomization.yaml[k]",
                                        "nginx/site.conf[nginx]", "overlay/kustomization.yaml[k]",
                                        "overlay/pvc.yaml"}));
    EXPECT_EQ(sources.at(3).env_files.at("serve.env"), "ROLLSAFE_DRAIN_DELAY=9s\n");

    // A file named explicitly is linted whatever its name, and once even if named twice.
    sources.clear();
    ASSERT_TRUE(CollectSources(
        {d + "/overlay/patch.yaml", d + "/overlay/patch.yaml", d + "/nginx/README.md"}, no_stdin,
        &sources, &error));
    EXPECT_EQ(Names(sources, d + "/"),
              (std::vector<std::string>{"overlay/patch.yaml", "nginx/README.md"}));
}

TEST(LintCollect, StdinAndMissingPaths) {
    std::istringstream in("kind: Deployment\n");
    std::vector<Source> sources;
    std::string error;
    ASSERT_TRUE(CollectSources({"-"}, in, &sources, &error));
    ASSERT_EQ(sources.size(), 1u);
    EXPECT_EQ(sources[0].name, "<stdin>");
    EXPECT_EQ(sources[0].text, "kind: Deployment\n");

    TempDir dir;
    sources.clear();
    EXPECT_FALSE(CollectSources({dir.Path(), dir.File("missing.yaml")}, in, &sources, &error));
    EXPECT_NE(error.find("missing.yaml"), std::string::npos) << error;
}

TEST(LintCollect, UnreadableFileIsAParseFinding) {
    Source s;
    s.name = "x.yaml";
    s.read_error = "cannot open x.yaml";
    const LintReport r = LintSources({s});
    ASSERT_EQ(r.findings.size(), 1u);
    EXPECT_EQ(r.findings[0].rule, "parse");
    EXPECT_EQ(r.Errors(), 1);
}

}  // namespace
}  // namespace rollsafe::lint
