// RS006-RS008 for nginx files, ingress-nginx objects and configs embedded in ConfigMaps.
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

Source Conf(const std::string& name, const std::string& text) {
    return Src(name, text, Source::Kind::kNginx);
}

std::vector<std::string> Found(const LintReport& r) {
    std::vector<std::string> out;
    for (const auto& f : r.findings)
        out.push_back(f.file + ":" + std::to_string(f.line) + ":" + f.rule);
    return out;
}

const std::string kGood = R"(upstream app {
    # rollsafe: idempotency-keys
    server 10.0.0.1:8080;
    keepalive 16;
    keepalive_timeout 60s;
}
server {
    listen 80;
    proxy_next_upstream error timeout non_idempotent;
    location / {
        proxy_pass http://app/;
    }
    location /static/ {
        root /srv;
    }
}
)";

TEST(NginxRules, TheGoodConfigIsClean) {
    const LintReport r = Lint({Conf("a.conf", kGood)});
    EXPECT_TRUE(r.findings.empty()) << Dump(r);
}

TEST(NginxRules, Rs006KeepaliveTimeout) {
    std::string c = kGood;
    Replace(&c, "keepalive_timeout 60s;", "keepalive_timeout 2m;");
    EXPECT_EQ(Found(Lint({Conf("a.conf", c)})), std::vector<std::string>{"a.conf:5:RS006"});
    // nginx's default is 60s when `keepalive` is set: too long for --idle-timeout 45s.
    Replace(&c, "    keepalive_timeout 2m;\n", "");
    EXPECT_TRUE(Lint({Conf("a.conf", c)}).findings.empty());
    const Source d = Src("d.yaml",
                         "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
                         "        - image: rollsafe\n          env:\n"
                         "            - {name: ROLLSAFE_IDLE_TIMEOUT, value: 45s}\n");
    const LintReport r = Lint({Conf("a.conf", c), d});
    bool found = false;
    for (const auto& f : r.findings)
        found = found || (f.rule == "RS006" && f.file == "a.conf" && f.line == 4);
    EXPECT_TRUE(found) << Dump(r);
    // Without `keepalive` nothing is pooled: no check.
    Replace(&c, "    keepalive 16;\n", "");
    for (const auto& f : Lint({Conf("a.conf", c), d}).findings)
        EXPECT_NE(f.file, "a.conf") << f.message;
    c = kGood;
    Replace(&c, "keepalive_timeout 60s;", "keepalive_timeout soon;");
    EXPECT_EQ(Found(Lint({Conf("a.conf", c)})), std::vector<std::string>{"a.conf:5:parse"});
}

TEST(NginxRules, Rs007InheritedRetryTowardAnUnmarkedUpstream) {
    std::string c = kGood;
    Replace(&c, "    # rollsafe: idempotency-keys\n", "");
    const LintReport r = Lint({Conf("a.conf", c)});
    // Inherited from the server block: reported on the location.
    ASSERT_EQ(Found(r), std::vector<std::string>{"a.conf:9:RS007"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("(from a.conf:8)"), std::string::npos) << Dump(r);
}

TEST(NginxRules, MarkerOnTheLocationItsLineOrTheLineAbove) {
    std::string base = kGood;
    Replace(&base, "    # rollsafe: idempotency-keys\n", "");
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"    location / {\n", "    location / { # rollsafe: idempotency-keys\n"},
             {"    location / {\n", "    location / {\n        #rollsafe:idempotency-keys\n"},
             {"    location / {\n", "    # rollsafe: idempotency-keys\n    location / {\n"},
             {"upstream app {\n", "upstream app { # rollsafe: idempotency-keys\n"},
         }) {
        std::string c = base;
        Replace(&c, from, to);
        EXPECT_TRUE(Lint({Conf("a.conf", c)}).findings.empty()) << c;
    }
    // A marker two lines above does not count.
    std::string c = base;
    Replace(&c, "    location / {\n", "    # rollsafe: idempotency-keys\n\n    location / {\n");
    EXPECT_EQ(Lint({Conf("a.conf", c)}).Errors(), 1);
}

TEST(NginxRules, Rs008MarkedButNotRetryingPosts) {
    std::string c = kGood;
    Replace(&c, "    proxy_next_upstream error timeout non_idempotent;\n", "");
    // nginx's default (error timeout): reported on the location.
    EXPECT_EQ(Found(Lint({Conf("a.conf", c)})), std::vector<std::string>{"a.conf:9:RS008"});
    Replace(&c, "        proxy_pass http://app/;\n",
            "        proxy_pass http://app/;\n        proxy_next_upstream off;\n");
    const LintReport r = Lint({Conf("a.conf", c)});
    EXPECT_EQ(Found(r), std::vector<std::string>{"a.conf:11:RS008"});
    EXPECT_EQ(r.Errors(), 0);
}

TEST(NginxRules, IncludesOfLintedFilesCountOthersMakeTheRetryPolicyUnknown) {
    // Like deploy/nginx: the location includes the retry policy from a separate file.
    const std::string main_conf = R"(upstream app {
    # rollsafe: idempotency-keys
    server 10.0.0.1:8080;
}
server {
    location / {
        include snippets/retry.conf;
        proxy_pass http://app;
    }
}
)";
    const Source retry = Conf("deploy/retry.conf",
                              "# rollsafe: idempotency-keys\n"
                              "proxy_next_upstream error timeout non_idempotent;\n");
    EXPECT_TRUE(Lint({Conf("main.conf", main_conf), retry}).findings.empty());
    // Alone, main.conf's retry policy is unknown: no finding either way.
    EXPECT_TRUE(Lint({Conf("main.conf", main_conf)}).findings.empty());
    // The marker comment inside the included file does not mark the including location.
    std::string unmarked = main_conf;
    Replace(&unmarked, "    # rollsafe: idempotency-keys\n", "");
    const LintReport r = Lint({Conf("main.conf", unmarked), retry});
    ASSERT_EQ(Found(r), std::vector<std::string>{"main.conf:5:RS007"}) << Dump(r);
    EXPECT_NE(r.findings[0].message.find("deploy/retry.conf:2"), std::string::npos);
    // An include that includes itself does not loop.
    const Source loop = Conf("loop.conf", "include loop.conf;\n");
    std::string looping = unmarked;
    Replace(&looping, "snippets/retry.conf", "*.conf");
    EXPECT_NO_THROW(Lint({Conf("main.conf", looping), loop}));
    // Nor does a set of files that all include each other explode.
    std::vector<Source> all;
    for (int i = 0; i < 20; ++i)
        all.push_back(Conf("f" + std::to_string(i) + ".conf", "include *.conf;\n"));
    all.push_back(Conf("main.conf", looping));
    EXPECT_NO_THROW(Lint(all));
}

TEST(NginxRules, UpstreamsInAnotherFileAndInsideHttp) {
    const Source upstreams = Conf("up.conf",
                                  "http {\n  upstream app {\n    # rollsafe: idempotency-keys\n"
                                  "    server a:1;\n  }\n}\n");
    const Source site = Conf("site.conf",
                             "server {\n  location /api/ {\n    proxy_next_upstream error "
                             "non_idempotent;\n    proxy_pass http://app:8080/v1;\n  }\n}\n");
    EXPECT_TRUE(Lint({upstreams, site}).findings.empty());
    EXPECT_EQ(Found(Lint({site})), std::vector<std::string>{"site.conf:3:RS007"});
}

TEST(NginxRules, IngressAnnotations) {
    const std::string ingress = R"(apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  annotations:
    rollsafe.dev/idempotency-keys: "true"
    nginx.ingress.kubernetes.io/proxy-next-upstream: "error timeout non_idempotent"
spec:
  ingressClassName: nginx
)";
    EXPECT_TRUE(Lint({Src("i.yaml", ingress)}).findings.empty());
    std::string unmarked = ingress;
    Replace(&unmarked, "    rollsafe.dev/idempotency-keys: \"true\"\n", "");
    EXPECT_EQ(Found(Lint({Src("i.yaml", unmarked)})), std::vector<std::string>{"i.yaml:6:RS007"});
    std::string no_retry = ingress;
    Replace(&no_retry, " non_idempotent\"", "\"");
    EXPECT_EQ(Found(Lint({Src("i.yaml", no_retry)})), std::vector<std::string>{"i.yaml:7:RS008"});
    // A marked Ingress of another controller is not ingress-nginx's business.
    std::string kong = ingress;
    Replace(&kong,
            "    nginx.ingress.kubernetes.io/proxy-next-upstream: \"error timeout "
            "non_idempotent\"\n",
            "");
    Replace(&kong, "ingressClassName: nginx", "ingressClassName: kong");
    EXPECT_TRUE(Lint({Src("i.yaml", kong)}).findings.empty());
}

TEST(NginxRules, IngressNginxControllerConfigMapKeepalive) {
    const std::string cm =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ingress-nginx-controller}\ndata:\n"
        "  upstream-keepalive-timeout: \"80\"\n";
    EXPECT_EQ(Found(Lint({Src("cm.yaml", cm)})), std::vector<std::string>{"cm.yaml:5:RS006"});
    std::string ok = cm;
    Replace(&ok, "\"80\"", "\"60\"");
    EXPECT_TRUE(Lint({Src("cm.yaml", ok)}).findings.empty());
}

TEST(NginxRules, ConfigsEmbeddedInAConfigMapKeepTheirLines) {
    const std::string cm = R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: nginx
data:
  default.conf: |
    upstream app {
        server a:1;
        keepalive 8;
        keepalive_timeout 90s;
    }
  broken.conf: |
    server {
  other: value
)";
    const LintReport r = Lint({Src("cm.yaml", cm)});
    EXPECT_EQ(Found(r), (std::vector<std::string>{"cm.yaml:10:RS006", "cm.yaml:13:parse"}))
        << Dump(r);
}

}  // namespace
}  // namespace rollsafe::lint
