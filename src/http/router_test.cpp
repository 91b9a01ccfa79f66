#include "rollsafe/http/router.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace rollsafe::http {
namespace {

class NullContext final : public RequestContext {
  public:
    bool Cancelled() const override { return false; }
    boost::asio::awaitable<bool> Sleep(std::chrono::milliseconds) override { co_return true; }
    const std::string& ReplicaName() const override { return name_; }

  private:
    std::string name_ = "test";
};

/// A handler that answers with `tag` as its body, so a test can tell which one matched.
Handler Tagged(std::string tag) {
    return [tag](Request&, RequestContext&) -> boost::asio::awaitable<Response> {
        co_return Response::Text(200, tag);
    };
}

/// Runs the matched handler to completion and returns its body. The handlers here complete
/// without waiting, so io_context::run() returns at once.
std::string RunMatched(const Router::Match& m, Request& req) {
    if (!m.handler) {
        ADD_FAILURE() << "no handler matched";
        return "<none>";
    }
    boost::asio::io_context ioc;
    NullContext ctx;
    std::optional<std::string> body;
    boost::asio::co_spawn(ioc, (*m.handler)(req, ctx), [&](std::exception_ptr e, Response r) {
        if (e) {
            ADD_FAILURE() << "handler threw";
        } else {
            body = r.body;
        }
    });
    ioc.run();
    if (!body) {
        ADD_FAILURE() << "handler did not complete";
    }
    return body.value_or("<incomplete>");
}

Request Req(std::string method, std::string path) {
    Request r;
    r.method = std::move(method);
    r.target = path;
    r.path = std::move(path);
    return r;
}

std::vector<std::string> SplitAllow(const std::string& allow) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i <= allow.size()) {
        const auto j = allow.find(", ", i);
        out.push_back(allow.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 2;
    }
    return out;
}

TEST(Router, MatchesALiteralRoute) {
    Router router;
    router.Add("GET", "/livez", Tagged("livez"));
    router.Add("GET", "/readyz", Tagged("readyz"));
    Request req = Req("GET", "/readyz");
    const auto m = router.Find(req);
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.route, "/readyz");
    EXPECT_EQ(RunMatched(m, req), "readyz");
    EXPECT_TRUE(req.params.empty());
}

TEST(Router, CapturesEachParamByName) {
    Router router;
    router.Add("GET", "/accounts/{account}/entries/{entry}", Tagged("entry"));
    Request req = Req("GET", "/accounts/a-1/entries/e_9");
    const auto m = router.Find(req);
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.route, "/accounts/{account}/entries/{entry}");
    EXPECT_EQ(req.Param("account"), "a-1");
    EXPECT_EQ(req.Param("entry"), "e_9");
    EXPECT_EQ(req.Param("missing"), "");
    const std::vector<std::pair<std::string, std::string>> expected{{"account", "a-1"},
                                                                    {"entry", "e_9"}};
    EXPECT_EQ(req.params, expected);
}

TEST(Router, ReplacesParamsLeftFromAnEarlierMatch) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    Request req = Req("GET", "/resources/new");
    req.params = {{"id", "old"}, {"stale", "x"}};
    ASSERT_NE(router.Find(req).handler, nullptr);
    const std::vector<std::pair<std::string, std::string>> expected{{"id", "new"}};
    EXPECT_EQ(req.params, expected);
}

TEST(Router, ParamsAreNotPercentDecoded) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    Request req = Req("GET", "/resources/a%2Fb%20c");
    ASSERT_NE(router.Find(req).handler, nullptr);
    EXPECT_EQ(req.Param("id"), "a%2Fb%20c");
}

TEST(Router, MatchesOnPathIgnoringTheQuery) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    Request req = Req("GET", "/resources/abc");
    req.target = "/resources/abc?verbose=1";
    const auto m = router.Find(req);
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(req.Param("id"), "abc");
}

TEST(Router, ChoosesTheHandlerByMethod) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    router.Add("DELETE", "/resources/{id}", Tagged("delete"));
    router.Add("POST", "/resources", Tagged("post"));
    Request get = Req("GET", "/resources/1");
    Request del = Req("DELETE", "/resources/1");
    Request post = Req("POST", "/resources");
    EXPECT_EQ(RunMatched(router.Find(get), get), "get");
    EXPECT_EQ(RunMatched(router.Find(del), del), "delete");
    EXPECT_EQ(RunMatched(router.Find(post), post), "post");
}

TEST(Router, UnknownPathIs404WithoutAllowOrRawPathAsRoute) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    router.Add("POST", "/resources", Tagged("post"));
    Request req = Req("GET", "/nothing/here");
    const auto m = router.Find(req);
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_EQ(m.status, 404);
    EXPECT_TRUE(m.allow.empty());
    // The route is a metrics label: never the raw path (unbounded cardinality), never a
    // pattern that did not match.
    EXPECT_NE(m.route, req.path);
    EXPECT_NE(m.route, "/resources/{id}");
    EXPECT_NE(m.route, "/resources");
}

TEST(Router, KnownPathWithOtherMethodIs405AllowingEveryMethodOfThatPath) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    router.Add("PUT", "/resources/{id}", Tagged("put"));
    router.Add("DELETE", "/resources/{id}", Tagged("delete"));
    router.Add("PATCH", "/other", Tagged("patch"));
    router.Add("POST", "/resources", Tagged("post"));
    Request req = Req("POST", "/resources/1");
    const auto m = router.Find(req);
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_EQ(m.status, 405);
    const auto allow = SplitAllow(m.allow);
    EXPECT_EQ(std::set<std::string>(allow.begin(), allow.end()),
              (std::set<std::string>{"GET", "PUT", "DELETE"}))
        << "Allow: " << m.allow;
    EXPECT_EQ(allow.size(), 3u) << "Allow: " << m.allow;
}

TEST(Router, AllowCombinesMethodsOfEveryPatternMatchingThePath) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    router.Add("DELETE", "/resources/stats", Tagged("reset"));
    Request req = Req("PUT", "/resources/stats");
    const auto m = router.Find(req);
    EXPECT_EQ(m.status, 405);
    const auto allow = SplitAllow(m.allow);
    EXPECT_EQ(std::set<std::string>(allow.begin(), allow.end()),
              (std::set<std::string>{"GET", "DELETE"}))
        << "Allow: " << m.allow;
}

TEST(Router, AllowListsEachMethodOnce) {
    // Two patterns match /resources/stats under GET; Allow must still say GET once.
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    router.Add("GET", "/resources/stats", Tagged("stats"));
    Request req = Req("DELETE", "/resources/stats");
    const auto m = router.Find(req);
    EXPECT_EQ(m.status, 405);
    EXPECT_EQ(SplitAllow(m.allow), std::vector<std::string>{"GET"}) << "Allow: " << m.allow;
}

TEST(Router, MethodsAreCaseSensitive) {
    Router router;
    router.Add("GET", "/livez", Tagged("livez"));
    Request req = Req("get", "/livez");
    const auto m = router.Find(req);
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_EQ(m.status, 405);
    EXPECT_EQ(m.allow, "GET");
}

TEST(Router, TrailingSlashIsADifferentPathAndGives404) {
    Router router;
    router.Add("POST", "/resources", Tagged("post"));
    router.Add("GET", "/resources/{id}", Tagged("get"));
    for (const char* path : {"/resources/", "/resources/abc/"}) {
        Request req = Req("GET", path);
        const auto m = router.Find(req);
        EXPECT_EQ(m.handler, nullptr) << path;
        EXPECT_EQ(m.status, 404) << path;
    }
    Request post = Req("POST", "/resources/");
    EXPECT_EQ(router.Find(post).status, 404);
}

TEST(Router, EmptySegmentNeverFillsAParamAndGives404) {
    Router router;
    router.Add("GET", "/accounts/{account}/entries", Tagged("entries"));
    router.Add("GET", "/resources", Tagged("list"));
    for (const char* path : {"/accounts//entries", "//resources", "/resources//"}) {
        Request req = Req("GET", path);
        const auto m = router.Find(req);
        EXPECT_EQ(m.handler, nullptr) << path;
        EXPECT_EQ(m.status, 404) << path;
    }
}

TEST(Router, SegmentCountMustMatchExactly) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("get"));
    for (const char* path : {"/resources", "/resources/a/b", "/"}) {
        Request req = Req("GET", path);
        EXPECT_EQ(router.Find(req).status, 404) << path;
    }
}

TEST(Router, RootPatternMatchesOnlyTheRoot) {
    Router router;
    router.Add("GET", "/", Tagged("root"));
    Request root = Req("GET", "/");
    EXPECT_EQ(RunMatched(router.Find(root), root), "root");
    Request other = Req("GET", "/x");
    EXPECT_EQ(router.Find(other).status, 404);
}

TEST(Router, LiteralSegmentsCompareExactlyIncludingCase) {
    Router router;
    router.Add("GET", "/resources", Tagged("list"));
    for (const char* path : {"/Resources", "/resource", "/resourcesx"}) {
        Request req = Req("GET", path);
        EXPECT_EQ(router.Find(req).status, 404) << path;
    }
}

TEST(Router, FirstRegisteredRouteWinsWhenSeveralMatch) {
    Router router;
    router.Add("GET", "/resources/{id}", Tagged("by-id"));
    router.Add("GET", "/resources/stats", Tagged("stats"));
    Request req = Req("GET", "/resources/stats");
    const auto m = router.Find(req);
    EXPECT_EQ(m.route, "/resources/{id}");
    EXPECT_EQ(RunMatched(m, req), "by-id");
}

}  // namespace
}  // namespace rollsafe::http
