#include "rollsafe/http/message.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <set>
#include <string>

namespace rollsafe::http {
namespace {

/// The text of a JSON string value, or a marker that makes a comparison fail visibly.
std::string Str(const boost::json::value& v) {
    if (!v.is_string())
        return "<not a string: " + std::string(boost::json::to_string(v.kind())) + ">";
    return std::string(v.as_string());
}

// ---- header lookup ----

TEST(Request, HeaderLookupIgnoresCase) {
    Request req;
    req.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", "r1"}};
    for (const char* name : {"Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe"}) {
        const auto v = req.Header(name);
        ASSERT_TRUE(v.has_value()) << name;
        EXPECT_EQ(*v, "application/json") << name;
    }
    EXPECT_EQ(req.Header("x-request-id"), "r1");
}

TEST(Request, HeaderLookupGivesNulloptWhenAbsent) {
    Request req;
    req.headers = {{"Content-Type", "application/json"}};
    EXPECT_EQ(req.Header("Content-Length"), std::nullopt);
    EXPECT_EQ(req.Header("Content-Typ"), std::nullopt);
    EXPECT_EQ(req.Header("Content-Type "), std::nullopt);
    EXPECT_EQ(req.Header(""), std::nullopt);
}

TEST(Request, HeaderWithEmptyValueIsPresent) {
    Request req;
    req.headers = {{"Idempotency-Key", ""}};
    const auto v = req.Header("idempotency-key");
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, "");
}

TEST(Request, HeaderLookupReturnsTheFirstOfRepeatedHeaders) {
    Request req;
    req.headers = {{"accept", "text/plain"}, {"Accept", "application/json"}};
    EXPECT_EQ(req.Header("ACCEPT"), "text/plain");
}

TEST(Request, HeaderCaseFoldingIsAsciiOnly) {
    // '[' is 'Z' + 1 and '{' is 'z' + 1: a sloppy fold (c | 0x20) would equate them.
    Request req;
    req.headers = {{"X-[", "1"}, {"\xC3\x89", "2"}};
    EXPECT_EQ(req.Header("x-{"), std::nullopt);
    EXPECT_EQ(req.Header("X-["), "1");
    EXPECT_EQ(req.Header("\xC3\xA9"), std::nullopt);  // U+00C9 vs U+00E9
}

TEST(IEquals, ComparesAsciiCaseInsensitively) {
    EXPECT_TRUE(IEquals("Connection", "connection"));
    EXPECT_TRUE(IEquals("", ""));
    EXPECT_FALSE(IEquals("Connection", "Connectio"));
    EXPECT_FALSE(IEquals("a", "b"));
    EXPECT_FALSE(IEquals("@", "`"));  // 0x40 vs 0x60
}

TEST(Request, ParamIsEmptyWhenAbsent) {
    Request req;
    req.params = {{"id", "abc"}};
    EXPECT_EQ(req.Param("id"), "abc");
    EXPECT_EQ(req.Param("ID"), "");
    EXPECT_EQ(req.Param("other"), "");
}

// ---- responses ----

TEST(Response, HeaderLookupIgnoresCase) {
    Response r;
    r.With("Retry-After", "1").With("Location", "/x");
    EXPECT_EQ(r.Header("retry-after"), "1");
    EXPECT_EQ(r.Header("LOCATION"), "/x");
    EXPECT_EQ(r.Header("Content-Type"), std::nullopt);
}

TEST(Response, WithAppendsWithoutDeduplication) {
    Response r;
    r.With("Set-Cookie", "a=1").With("Set-Cookie", "b=2");
    ASSERT_EQ(r.headers.size(), 2u);
    EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Set-Cookie", "a=1"}));
    EXPECT_EQ(r.headers[1], (std::pair<std::string, std::string>{"Set-Cookie", "b=2"}));
}

TEST(Response, JsonSetsStatusBodyAndContentType) {
    const Response r = Response::Json(201, R"({"id":"x"})");
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.body, R"({"id":"x"})");
    EXPECT_EQ(r.Header("Content-Type"), "application/json");
}

TEST(Response, TextSetsStatusBodyAndContentType) {
    const Response r = Response::Text(200, "ok\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok\n");
    EXPECT_EQ(r.Header("Content-Type"), "text/plain; charset=utf-8");
}

TEST(Response, ProblemIsRfc9457JsonWithTheFourMembers) {
    const Response r = Response::Problem(422, "work_ms must be an integer");
    EXPECT_EQ(r.status, 422);
    EXPECT_EQ(r.Header("Content-Type"), "application/problem+json");
    const boost::json::value v = boost::json::parse(r.body);
    ASSERT_TRUE(v.is_object()) << r.body;
    const auto& o = v.as_object();
    std::set<std::string> keys;
    for (const auto& kv : o) keys.emplace(kv.key());
    EXPECT_EQ(keys, (std::set<std::string>{"type", "title", "status", "detail"})) << r.body;
    ASSERT_TRUE(o.at("type").is_string());
    EXPECT_FALSE(o.at("type").as_string().empty());
    ASSERT_TRUE(o.at("status").is_int64()) << "status must be a JSON number: " << r.body;
    EXPECT_EQ(o.at("status").as_int64(), 422);
    EXPECT_EQ(Str(o.at("title")), "Unprocessable Content");
    EXPECT_EQ(Str(o.at("detail")), "work_ms must be an integer");
}

TEST(Response, ProblemWithoutTitleIsAboutBlankWithTheReasonPhrase) {
    // RFC 9457 4.2.1: with type "about:blank" the title should be the status's phrase.
    const Response r = Response::Problem(404, "no resource with id 'x'");
    const auto o = boost::json::parse(r.body).as_object();
    EXPECT_EQ(Str(o.at("type")), "about:blank");
    EXPECT_EQ(Str(o.at("title")), "Not Found");
}

TEST(Response, ProblemUsesAGivenTitle) {
    const Response r = Response::Problem(503, "draining", "Shutting Down");
    const auto o = boost::json::parse(r.body).as_object();
    EXPECT_EQ(Str(o.at("title")), "Shutting Down");
    EXPECT_EQ(o.at("status").as_int64(), 503);
}

TEST(Response, ProblemEscapesDetailSoAnyTextRoundTrips) {
    const std::string detail = "bad \"key\" \\ here\nnext line\ttab \x01 caf\xC3\xA9 </script>";
    const Response r = Response::Problem(400, detail);
    boost::json::value v;
    ASSERT_NO_THROW(v = boost::json::parse(r.body)) << r.body;
    EXPECT_EQ(v.as_object().at("detail").as_string(), detail);
    EXPECT_EQ(r.body.find('\n'), std::string::npos) << "raw newline in JSON: " << r.body;
}

// ---- reason phrases ----

TEST(ReasonPhrase, GivesTheRfc9110PhraseForEveryStatusRollsafeSends) {
    const std::map<int, std::string> expected = {
        {200, "OK"},
        {201, "Created"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Content"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
    };
    for (const auto& [status, phrase] : expected) EXPECT_EQ(ReasonPhrase(status), phrase) << status;
}

TEST(ReasonPhrase, GivesTheStandardPhraseForEveryRegisteredStatus) {
    // RFC 9110 section 15, plus RFC 6585 (428, 429, 431, 511).
    const std::map<int, std::string> expected = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {511, "Network Authentication Required"},
    };
    for (const auto& [status, phrase] : expected) EXPECT_EQ(ReasonPhrase(status), phrase) << status;
}

}  // namespace
}  // namespace rollsafe::http
