// RS001-RS005 and RS010 through LintSources, on Kubernetes YAML held in strings.
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

LintReport LintYaml(const std::string& yaml) {
    Source s;
    s.name = "t.yaml";
    s.text = yaml;
    return Lint({s});
}

/// "RS001:12" for each finding, in report order.
std::vector<std::string> Found(const LintReport& r) {
    std::vector<std::string> out;
    for (const auto& f : r.findings) out.push_back(f.rule + ":" + std::to_string(f.line));
    return out;
}

/// A Deployment that passes every rule; line numbers are stated where tests rely on them.
const std::string kGood = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  strategy:
    rollingUpdate:
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: api
        tier: web
    spec:
      terminationGracePeriodSeconds: 35
      containers:
        - name: sidecar
          image: envoy:1.30
        - name: api
          image: registry.example/rollsafe:1
          args: [serve]
          lifecycle:
            preStop:
              httpGet: {path: /lifecycle/prestop, port: 9090}
          readinessProbe:
            httpGet: {path: /readyz, port: 9090}
            periodSeconds: 1
            failureThreshold: 2
          livenessProbe:
            httpGet: {path: /livez, port: 9090}
          startupProbe:
            httpGet: {path: /livez, port: 9090}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: api}
)";

TEST(K8sRules, TheGoodDeploymentIsClean) {
    const LintReport r = LintYaml(kGood);
    EXPECT_TRUE(r.findings.empty()) << Dump(r);
    EXPECT_EQ(r.files, 1);
}

TEST(K8sRules, Rs001CountsDefaultsExactly) {
    // drain 5 + shutdown 25 + margin 5 = 35: 35 passes, 34 fails.
    std::string y = kGood;
    Replace(&y, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 34");
    const LintReport r = LintYaml(y);
    EXPECT_EQ(Found(r), std::vector<std::string>{"RS001:16"}) << Dump(r);
    EXPECT_EQ(r.Errors(), 1);
    EXPECT_NE(r.findings.at(0).message.find("35s"), std::string::npos) << Dump(r);
}

TEST(K8sRules, Rs001SeedNumbersNeedSixtySeconds) {
    std::string y = kGood;
    Replace(&y, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 45");
    Replace(&y, "args: [serve]", "args: [serve, --shutdown-timeout, 30s]");
    Replace(&y, "httpGet: {path: /lifecycle/prestop, port: 9090}",
            "exec: {command: [/bin/sh, -c, \"sleep 20\"]}");
    const LintReport r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS001:16"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("60s"), std::string::npos) << Dump(r);
    EXPECT_NE(r.findings[0].fix.find("terminationGracePeriodSeconds: 60"), std::string::npos);
}

TEST(K8sRules, Rs001SleepActionAndFlagForms) {
    std::string y = kGood;
    Replace(&y, "httpGet: {path: /lifecycle/prestop, port: 9090}", "sleep: {seconds: 5}");
    Replace(&y, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 39");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS001:16"});
    Replace(&y, "terminationGracePeriodSeconds: 39", "terminationGracePeriodSeconds: 40");
    EXPECT_TRUE(LintYaml(y).findings.empty()) << Dump(LintYaml(y));

    // --flag=value, and a shell command line naming the binary (image without "rollsafe").
    y = kGood;
    Replace(&y, "image: registry.example/rollsafe:1\n          args: [serve]",
            "image: example/api:1\n          command: [sh, -c, \"exec /usr/local/bin/rollsafe "
            "serve --drain-delay=10s\"]");
    const LintReport r = LintYaml(y);
    // 10 + 25 + 5 = 40 > 35.
    EXPECT_EQ(Found(r), std::vector<std::string>{"RS001:16"}) << Dump(r);
    EXPECT_NE(r.findings.at(0).message.find("--drain-delay 10s"), std::string::npos) << Dump(r);
}

TEST(K8sRules, Rs001AbsentGraceIsThirtyOnThePodSpecLine) {
    std::string y = kGood;
    Replace(&y, "      terminationGracePeriodSeconds: 35\n", "");
    const LintReport r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS001:15"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("30 (the default)"), std::string::npos);
}

TEST(K8sRules, SettingsFromEnvConfigMapsAndArgsPrecedence) {
    // ConfigMap via envFrom says 20s: 20 + 25 + 5 = 50 > 35.
    std::string y = kGood;
    Replace(&y, "args: [serve]",
            "args: [serve]\n          envFrom:\n            - configMapRef: "
            "{name: cfg}");
    y += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata:\n"
         "  ROLLSAFE_DRAIN_DELAY: 20s\n";
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS001:16"}) << Dump(LintYaml(y));

    // env overrides envFrom, and args override both.
    std::string y2 = y;
    Replace(&y2, "          envFrom:",
            "          env:\n            - {name: ROLLSAFE_DRAIN_DELAY, value: 5s}\n"
            "          envFrom:");
    EXPECT_TRUE(LintYaml(y2).findings.empty()) << Dump(LintYaml(y2));
    std::string y3 = y;
    Replace(&y3, "args: [serve]", "args: [serve, --drain-delay, 5s]");
    EXPECT_TRUE(LintYaml(y3).findings.empty()) << Dump(LintYaml(y3));

    // $(VAR) in args is expanded from the environment, configMapKeyRef included.
    std::string y4 = kGood;
    Replace(&y4, "args: [serve]",
            "args: [serve, --shutdown-timeout, $(T)]\n          env:\n            - name: T\n"
            "              valueFrom: {configMapKeyRef: {name: cfg, key: t}}");
    y4 += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {t: 40s}\n";
    const LintReport r4 = LintYaml(y4);
    ASSERT_EQ(Found(r4), std::vector<std::string>{"RS001:16"}) << Dump(r4);
    EXPECT_NE(r4.findings[0].message.find("40s"), std::string::npos) << Dump(r4);

    // A value from a Secret is unknown: the default is assumed, and said so.
    std::string y5 = kGood;
    Replace(&y5, "args: [serve]",
            "args: [serve]\n          env:\n            - name: ROLLSAFE_DRAIN_DELAY\n"
            "              valueFrom: {secretKeyRef: {name: s, key: k}}");
    Replace(&y5, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 30");
    const LintReport r5 = LintYaml(y5);
    ASSERT_EQ(Found(r5), std::vector<std::string>{"RS001:16"}) << Dump(r5);
    EXPECT_NE(r5.findings[0].message.find("not in the linted files"), std::string::npos)
        << Dump(r5);
}

TEST(K8sRules, KustomizeConfigMapGeneratorLiteralsAndEnvFiles) {
    std::string y = kGood;
    Replace(&y, "args: [serve]",
            "args: [serve]\n          envFrom:\n            - configMapRef: "
            "{name: gen}\n            - configMapRef: {name: gen2}");
    Source app = Src("app.yaml", y);
    Source k = Src("kustomization.yaml",
                   "resources: [app.yaml]\nconfigMapGenerator:\n  - name: gen\n    literals:\n"
                   "      - ROLLSAFE_DRAIN_DELAY=5s\n  - name: gen2\n    envs: [serve.env]\n");
    k.kustomization = true;
    k.env_files["serve.env"] = "# comment\nROLLSAFE_SHUTDOWN_TIMEOUT=26s\n";
    const LintReport r = Lint({app, k});
    // 5 + 26 + 5 = 36 > 35: the env file was read; the literal did not break anything.
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS001:16"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("ConfigMap gen2"), std::string::npos) << Dump(r);
}

TEST(K8sRules, Rs002ReadinessProbe) {
    std::string y = kGood;
    Replace(&y, "            periodSeconds: 1\n            failureThreshold: 2\n", "");
    // Defaults: 10 x 3 = 30s >= 5s.
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS002:26"});
    y = kGood;
    Replace(&y, "periodSeconds: 1", "periodSeconds: 2");
    Replace(&y, "failureThreshold: 2", "failureThreshold: 3");
    // 6s with a 7s drain delay passes.
    Replace(&y, "args: [serve]", "args: [serve, --drain-delay, 7s]");
    Replace(&y, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 37");
    EXPECT_TRUE(LintYaml(y).findings.empty()) << Dump(LintYaml(y));
    y = kGood;
    Replace(&y,
            "          readinessProbe:\n            httpGet: {path: /readyz, port: 9090}\n"
            "            periodSeconds: 1\n            failureThreshold: 2\n",
            "");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS002:20"});
}

TEST(K8sRules, Rs003NoPreStopOnTheContainerLine) {
    std::string y = kGood;
    Replace(&y,
            "          lifecycle:\n            preStop:\n              httpGet: {path: "
            "/lifecycle/prestop, port: 9090}\n",
            "");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS003:20"}) << Dump(LintYaml(y));
}

TEST(K8sRules, Rs004RollingUpdateAndPdb) {
    const std::string no_pdb = kGood.substr(0, kGood.find("---"));
    // maxUnavailable 0 without a PDB: a warning on the pod labels.
    LintReport r = LintYaml(no_pdb);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS004:12"}) << Dump(r);
    EXPECT_EQ(r.findings[0].severity, Severity::kWarning);
    EXPECT_EQ(r.Errors(), 0);

    // The default maxUnavailable (25%) without a PDB: an error on the spec line.
    std::string y = no_pdb;
    Replace(&y, "  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n", "");
    r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS004:5"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("25% (the default)"), std::string::npos);

    // ... which a PDB in another file satisfies (matchExpressions too).
    Source pdb =
        Src("pdb.yaml",
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec:\n"
            "  minAvailable: 1\n  selector:\n    matchExpressions:\n"
            "      - {key: app, operator: In, values: [api, other]}\n"
            "      - {key: tier, operator: Exists}\n");
    EXPECT_TRUE(Lint({Src("d.yaml", y), pdb}).findings.empty());

    // A PDB that selects other pods, or in another namespace, does not count.
    std::string other = pdb.text;
    Replace(&other, "operator: Exists", "operator: DoesNotExist");
    EXPECT_EQ(Found(Lint({Src("d.yaml", y), Src("pdb.yaml", other)})),
              std::vector<std::string>{"RS004:5"});
    std::string ns_y = y;
    Replace(&ns_y, "  name: api\n", "  name: api\n  namespace: a\n");
    std::string ns_pdb = pdb.text;
    Replace(&ns_pdb, "metadata: {name: p}", "metadata: {name: p, namespace: b}");
    EXPECT_EQ(Lint({Src("d.yaml", ns_y), Src("pdb.yaml", ns_pdb)}).Errors(), 1);

    // "0%" is zero; Recreate is an outage whatever the PDB.
    y = no_pdb;
    Replace(&y, "maxUnavailable: 0", "maxUnavailable: \"0%\"");
    EXPECT_EQ(LintYaml(y).Errors(), 0);
    y = kGood;
    Replace(&y, "  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n",
            "  strategy:\n    type: Recreate\n");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS004:8"});
}

TEST(K8sRules, Rs004StatefulSetNeedsAPdb) {
    std::string y = kGood.substr(0, kGood.find("---"));
    Replace(&y, "kind: Deployment", "kind: StatefulSet");
    Replace(&y, "  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n", "");
    const LintReport r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS004:9"}) << Dump(r);
    EXPECT_EQ(r.findings[0].severity, Severity::kError);
    std::string with_pdb = kGood;
    Replace(&with_pdb, "kind: Deployment", "kind: StatefulSet");
    EXPECT_TRUE(LintYaml(with_pdb).findings.empty()) << Dump(LintYaml(with_pdb));
}

TEST(K8sRules, Rs005Replicas) {
    std::string y = kGood;
    Replace(&y, "  replicas: 2\n", "");
    const LintReport r = LintYaml(y);
    ASSERT_EQ(Found(r), std::vector<std::string>{"RS005:5"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("(the default)"), std::string::npos);
    y = kGood;
    Replace(&y, "replicas: 2", "replicas: 1");
    EXPECT_EQ(Found(LintYaml(y)), std::vector<std::string>{"RS005:6"});
}

TEST(K8sRules, Rs010ProbesAreWarnings) {
    std::string y = kGood;
    Replace(&y, "httpGet: {path: /livez, port: 9090}\n          startupProbe",
            "httpGet: {path: /readyz, port: 9090}\n          startupProbe");
    LintReport r = LintYaml(y);
    EXPECT_EQ(Found(r), std::vector<std::string>{"RS010:30"}) << Dump(r);
    EXPECT_EQ(r.Errors(), 0);
    y = kGood;
    Replace(&y, "          startupProbe:\n            httpGet: {path: /livez, port: 9090}\n", "");
    Replace(&y, "          livenessProbe:\n            httpGet: {path: /livez, port: 9090}\n", "");
    r = LintYaml(y);
    EXPECT_EQ(Found(r), (std::vector<std::string>{"RS010:20", "RS010:20"})) << Dump(r);
    EXPECT_EQ(r.Warnings(), 2);
}

TEST(K8sRules, OnlyRollsafeWorkloadsAreChecked) {
    const LintReport r = LintYaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kong}\nspec:\n  template:\n"
        "    spec:\n      containers:\n        - name: kong\n          image: kong:3.6\n");
    EXPECT_TRUE(r.findings.empty()) << Dump(r);
}

TEST(K8sRules, ListItemsAreObjects) {
    std::string y = kGood.substr(0, kGood.find("---"));
    Replace(&y, "replicas: 2", "replicas: 1");
    std::string list = "apiVersion: v1\nkind: List\nitems:\n";
    // Indent the Deployment as the first item.
    std::string item = "- ";
    for (char c : y) {
        item += c;
        if (c == '\n') item += "  ";
    }
    const LintReport r = LintYaml(list + item);
    // RS005, and RS004 as a warning (maxUnavailable 0, no PDB in the list).
    EXPECT_EQ(Found(r), (std::vector<std::string>{"RS005:9", "RS004:15"})) << Dump(r);
}

TEST(K8sRules, WrongTypesAreFindingsNeverExceptions) {
    const std::vector<std::string> docs = {
        "kind: Deployment\nspec: 3\n",
        "kind: Deployment\nspec:\n  template: [1, 2]\n",
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers: nope\n",
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers: [1, [2], {image: "
        "rollsafe, lifecycle: 7, readinessProbe: x, args: {a: b}, env: 5, envFrom: [1]}]\n",
        "kind: Deployment\nspec:\n  replicas: three\n  strategy: {rollingUpdate: "
        "{maxUnavailable: [1]}}\n  template:\n    spec:\n      terminationGracePeriodSeconds: "
        "{a: 1}\n      containers:\n        - image: rollsafe\n          readinessProbe: "
        "{periodSeconds: x, failureThreshold: []}\n          lifecycle: {preStop: {sleep: "
        "{seconds: soon}}}\n",
        "kind: [Deployment]\n",
        "kind: PodDisruptionBudget\nspec: {selector: {matchLabels: 3, matchExpressions: [1]}}\n",
        "kind: ConfigMap\ndata: [1]\n",
        "kind: List\nitems: {a: 1}\n",
        "just a string\n",
        "- a list\n- of strings\n",
        "",
        "---\n---\n",
        "kind: Deployment\nspec: &a\n  template: *a\n",
    };
    for (const auto& d : docs) {
        LintReport r;
        ASSERT_NO_THROW(r = LintYaml(d)) << d;
        for (const auto& f : r.findings)
            EXPECT_EQ(f.message.find("internal error"), std::string::npos) << d << Dump(r);
    }
    // A wrong type that a rule needs is reported where it is.
    const LintReport r = LintYaml(docs[4]);
    bool replicas = false;
    bool grace = false;
    for (const auto& f : r.findings) {
        replicas = replicas || (f.rule == "parse" && f.line == 3 &&
                                f.message.find("spec.replicas") != std::string::npos);
        grace = grace || (f.rule == "parse" && f.line == 7);
    }
    EXPECT_TRUE(replicas) << Dump(r);
    EXPECT_TRUE(grace) << Dump(r);
}

TEST(K8sRules, LaterDocumentsKeepTheirLinesAndColumns) {
    std::string y = kGood.substr(0, kGood.find("---"));
    Replace(&y, "replicas: 2", "replicas: 1");
    const LintReport r = LintYaml("# leading comment\n---\nkind: Service\n---\n" + y);
    ASSERT_FALSE(r.findings.empty());
    EXPECT_EQ(r.findings[0].rule, "RS005");
    EXPECT_EQ(r.findings[0].line, 10);
    EXPECT_EQ(r.findings[0].column, 3);
}

TEST(K8sRules, StreamsYamlCpp07LoopsOnAreParseFindings) {
    // yaml-cpp 0.7's LoadAll allocates forever on these; each document is parsed alone.
    for (const std::string y : {",", ",'", "kind: Service\n---\n, x\n---\nkind: Service\n"}) {
        const LintReport r = LintYaml(y);
        ASSERT_EQ(r.findings.size(), 1u) << y << Dump(r);
        EXPECT_EQ(r.findings[0].rule, "parse");
    }
    EXPECT_EQ(LintYaml("kind: Service\n---\n, x\n").findings.at(0).line, 3);
    EXPECT_TRUE(LintYaml("---\n# only comments\n---\n~\n--- null\n...\n").findings.empty());
}

TEST(K8sRules, SelfReferencingVariablesExpandOnce) {
    std::string y = kGood;
    Replace(&y, "args: [serve]",
            "args: [serve, --drain-delay, $(D)]\n          env:\n"
            "            - {name: D, value: \"x$(D)\"}");
    Replace(&y, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 30");
    const LintReport r = LintYaml(y);
    ASSERT_EQ(r.findings.size(), 1u) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("'x$(D)' in args is not a duration"), std::string::npos)
        << Dump(r);
}

TEST(K8sRules, YamlSyntaxErrorIsAParseFindingWithLineAndColumn) {
    const LintReport r = LintYaml("kind: Deployment\nmetadata:\n  name: a: b\n");
    ASSERT_EQ(r.findings.size(), 1u);
    EXPECT_EQ(r.findings[0].rule, "parse");
    EXPECT_EQ(r.findings[0].line, 3);
    EXPECT_GT(r.findings[0].column, 0);
    EXPECT_EQ(r.Errors(), 1);
}

}  // namespace
}  // namespace rollsafe::lint
