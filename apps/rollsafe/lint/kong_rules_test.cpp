// RS006-RS009 for Kong (declarative YAML, kong.conf, KongUpstreamPolicy) through LintSources.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "lint/lint.hpp"
#include "lint/rules_test_util.hpp"

namespace rollsafe::lint {
namespace {

using testing::Dump;
using testing::Lint;
using testing::Replace;
using testing::Src;

LintReport LintYaml(const std::string& yaml) { return Lint({Src("kong.yaml", yaml)}); }

std::vector<std::string> Found(const LintReport& r) {
    std::vector<std::string> out;
    for (const auto& f : r.findings) out.push_back(f.rule + ":" + std::to_string(f.line));
    return out;
}

const std::string kGood = R"(_format_version: "3.0"
services:
  - name: api
    tags: [idempotency-keys]
    host: api-upstream
    retries: 3
    routes:
      - name: write
        paths: [/resources]
upstreams:
  - name: api-upstream
    healthchecks:
      active:
        http_path: /readyz
        healthy: {interval: 1}
        unhealthy: {interval: 1, http_failures: 1}
)";

TEST(KongRules, TheGoodConfigIsClean) {
    const LintReport r = LintYaml(kGood);
    EXPECT_TRUE(r.findings.empty()) << Dump(r);
}

TEST(KongRules, Rs006KeepaliveAgainstTheServiceIdleTimeout) {
    std::string y = kGood;
    Replace(&y, "    retries: 3\n", "    retries: 3\n    upstream_keepalive_idle_timeout: 75\n");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS006:7"});
    // The idle timeout comes from the rollsafe container in the linted files: Kong's default
    // 60 s is too long for --idle-timeout 60s.
    const Source deployment =
        Src("d.yaml",
            "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
            "        - image: rollsafe\n          args: [serve, --idle-timeout, 60s]\n");
    const LintReport r = Lint({Src("kong.yaml", kGood), deployment});
    bool rs006 = false;
    for (const auto& f : r.findings)
        if (f.rule == "RS006") {
            rs006 = true;
            EXPECT_EQ(f.file, "kong.yaml");
            EXPECT_EQ(f.line, 1);
            EXPECT_NE(f.message.find("--idle-timeout 60s"), std::string::npos) << f.message;
        }
    EXPECT_TRUE(rs006) << Dump(r);
}

TEST(KongRules, Rs007And008Retries) {
    std::string untagged = kGood;
    Replace(&untagged, "    tags: [idempotency-keys]\n", "");
    EXPECT_EQ(Found(LintYaml(untagged)), std::vector<std::string>{"RS007:5"});

    // Kong's default retries (5) count; GET-only routes do not.
    std::string y = untagged;
    Replace(&y, "    retries: 3\n", "");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS007:3"});
    y = untagged;
    Replace(&y, "paths: [/resources]", "paths: [/resources]\n        methods: [GET, head]");
    EXPECT_TRUE(LintYaml(y).findings.empty()) << Dump(LintYaml(y));
    y = untagged;
    Replace(&y, "paths: [/resources]", "paths: [/resources]\n        methods: [GET, post]");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS007:5"});

    // A tag on the route is enough; top-level routes naming the service count too.
    y = untagged;
    Replace(&y, "paths: [/resources]", "paths: [/resources]\n        tags: [idempotency-keys]");
    EXPECT_TRUE(LintYaml(y).findings.empty()) << Dump(LintYaml(y));
    y = untagged;
    Replace(&y, "    routes:\n      - name: write\n        paths: [/resources]\n", "");
    EXPECT_TRUE(LintYaml(y).findings.empty());
    y += "routes:\n  - name: top\n    service: {name: api}\n    paths: [/x]\n";
    const LintReport r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS007:5"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("top"), std::string::npos);

    // Tagged with retries 0: the warning.
    y = kGood;
    Replace(&y, "retries: 3", "retries: 0");
    const LintReport w = LintYaml(y);
    EXPECT_EQ(Found(w), std::vector<std::string>{"RS008:6"});
    EXPECT_EQ(w.Errors(), 0);
}

TEST(KongRules, Rs009HealthChecks) {
    std::string y = kGood;
    Replace(&y,
            "        healthy: {interval: 1}\n        unhealthy: {interval: 1, http_failures: 1}\n",
            "        healthy: {interval: 0}\n");
    // Active checks with interval 0 are off, and there are no passive ones.
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS009:12"});
    Replace(&y, "        healthy: {interval: 0}\n",
            "        healthy: {interval: 0}\n      passive:\n        unhealthy: {tcp_failures: "
            "2}\n");
    EXPECT_TRUE(LintYaml(y).findings.empty()) << Dump(LintYaml(y));

    y = kGood;
    Replace(&y, "http_path: /readyz", "http_path: /livez");
    const LintReport w = LintYaml(y);
    EXPECT_EQ(Found(w), std::vector<std::string>{"RS009:13"});
    EXPECT_EQ(w.findings.at(0).severity, Severity::kWarning);

    y = kGood.substr(0, kGood.find("    healthchecks:"));
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS009:11"});
}

TEST(KongRules, KongUpstreamPolicyUsesCamelCase) {
    const std::string policy = R"(apiVersion: configuration.konghq.com/v1beta1
kind: KongUpstreamPolicy
metadata:
  name: api
spec:
  healthchecks:
    passive:
      unhealthy:
        httpFailures: 2
)";
    EXPECT_TRUE(LintYaml(policy).findings.empty()) << Dump(LintYaml(policy));
    std::string active = policy;
    Replace(&active, "    passive:\n      unhealthy:\n        httpFailures: 2\n",
            "    active:\n      httpPath: /\n      healthy:\n        interval: 2\n");
    EXPECT_EQ(Found(LintYaml(active)), std::vector<std::string>{"RS009:7"});
    std::string none = policy.substr(0, policy.find("  healthchecks:"));
    EXPECT_EQ(Found(LintYaml(none)), std::vector<std::string>{"RS009:5"});
}

TEST(KongRules, KongConfIsRecognizedAndChecked) {
    Source conf =
        Src("kong.conf",
            "# kong.conf\ndatabase = off\nupstream_keepalive_idle_timeout = 80  # seconds\n",
            Source::Kind::kNginx);
    LintReport r = Lint({conf});
    EXPECT_EQ(Found(r), std::vector<std::string>{"RS006:3"}) << Dump(r);
    conf.text = "database = off\nnginx_upstream_keepalive_timeout = 30s\n";
    r = Lint({conf});
    EXPECT_TRUE(r.findings.empty()) << Dump(r);
}

TEST(KongRules, WrongTypesNeverThrow) {
    for (const std::string y : {
             "_format_version: '3.0'\nservices: 1\nupstreams: x\nroutes: {a: b}\n",
             "_format_version: '3.0'\nservices: [1, [2], {retries: many}, {routes: 3, tags: x}]\n",
             "_format_version: '3.0'\nservices: [{name: a, routes: [1, {methods: 3}]}]\n",
             "_format_version: '3.0'\nupstreams: [{healthchecks: 1}, {healthchecks: {active: "
             "[1], passive: x}}]\nupstream_keepalive_idle_timeout: [60]\n",
             "kind: KongUpstreamPolicy\nspec: 1\n",
         }) {
        LintReport r;
        ASSERT_NO_THROW(r = LintYaml(y)) << y;
        for (const auto& f : r.findings)
            EXPECT_EQ(f.message.find("internal error"), std::string::npos) << y << Dump(r);
    }
}

}  // namespace
}  // namespace rollsafe::lint
