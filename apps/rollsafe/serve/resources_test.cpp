#include "serve/resources.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>

namespace rollsafe::serve {
namespace {

using http::ApiError;
using http::Request;

constexpr std::int64_t kMaxWork = 600'000;

Request Post(std::string body, std::optional<std::string> content_type = "application/json") {
    Request r;
    r.method = "POST";
    r.target = r.path = "/resources";
    if (content_type) r.headers.emplace_back("Content-Type", *content_type);
    r.body = std::move(body);
    return r;
}

struct Rejection {
    int status;
    std::string detail;
};

/// The ApiError that ParseCreateResource throws, or nullopt if it accepts the request.
std::optional<Rejection> Rejected(const Request& req, std::int64_t max_work_ms = kMaxWork) {
    try {
        (void)ParseCreateResource(req, max_work_ms);
        return std::nullopt;
    } catch (const ApiError& e) {
        return Rejection{e.status, e.what()};
    }
}

/// Parses and fails the test (returning nullopt) if the request is rejected.
std::optional<CreateResource> Accepted(const Request& req, std::int64_t max_work_ms = kMaxWork) {
    try {
        return ParseCreateResource(req, max_work_ms);
    } catch (const ApiError& e) {
        ADD_FAILURE() << "rejected with " << e.status << ": " << e.what();
        return std::nullopt;
    }
}

bool Contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

// ---- content type ----

TEST(ParseCreateResource, MissingContentTypeIs415) {
    const auto r = Rejected(Post(R"({"data":1})", std::nullopt));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 415);
}

TEST(ParseCreateResource, NonJsonContentTypeIs415) {
    for (const char* ct : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                           "application/jsonx", "application/json-seq", "text/json", "json", ""}) {
        const auto r = Rejected(Post(R"({"data":1})", std::string(ct)));
        ASSERT_TRUE(r) << "accepted Content-Type '" << ct << "'";
        EXPECT_EQ(r->status, 415) << ct;
    }
}

TEST(ParseCreateResource, Status415DetailNamesTheContentTypeSent) {
    const auto r = Rejected(Post(R"({"data":1})", "text/plain"));
    ASSERT_TRUE(r);
    EXPECT_TRUE(Contains(r->detail, "text/plain")) << r->detail;
}

TEST(ParseCreateResource, AcceptsJsonWithParameters) {
    for (const char* ct : {"application/json", "application/json; charset=utf-8",
                           "application/json;charset=UTF-8", "application/json ; charset=utf-8"}) {
        EXPECT_TRUE(Accepted(Post(R"({"data":1})", std::string(ct)))) << ct;
    }
}

TEST(ParseCreateResource, MediaTypeIsCaseInsensitive) {
    EXPECT_TRUE(Accepted(Post(R"({"data":1})", "Application/JSON")));
    EXPECT_TRUE(Accepted(Post(R"({"data":1})", "APPLICATION/VND.API+JSON")));
}

TEST(ParseCreateResource, AcceptsStructuredSyntaxPlusJsonTypes) {
    for (const char* ct : {"application/problem+json", "application/merge-patch+json",
                           "application/vnd.api+json; charset=utf-8"}) {
        EXPECT_TRUE(Accepted(Post(R"({"data":1})", std::string(ct)))) << ct;
    }
}

TEST(ParseCreateResource, HeaderNameIsMatchedCaseInsensitively) {
    Request req = Post(R"({"data":1})", std::nullopt);
    req.headers.emplace_back("content-type", "application/json");
    EXPECT_TRUE(Accepted(req));
}

// ---- malformed JSON ----

TEST(ParseCreateResource, InvalidJsonIs400WithADetailSayingSo) {
    for (const char* body :
         {"", "   ", "{", R"({"data": })", R"({"data":1,})", "{'data':1}", R"({"data":tru})",
          R"({"data":1} x)", R"({"data":1}{"data":2})", R"({"data":"unterminated})", "nul"}) {
        const auto r = Rejected(Post(body));
        ASSERT_TRUE(r) << "accepted body " << body;
        EXPECT_EQ(r->status, 400) << body;
        EXPECT_TRUE(Contains(r->detail, "JSON")) << body << " -> " << r->detail;
    }
}

TEST(ParseCreateResource, InvalidUtf8Is400) {
    const auto r = Rejected(Post("{\"data\":\"\xFF\xFE\"}"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
}

TEST(ParseCreateResource, InvalidJsonDetailGivesTheByteOffset) {
    // docs/http-api.md: "bad JSON (detail names it and the byte offset)". The bad byte is
    // the 'x' at offset 11.
    const std::string body = R"({"data":1} x)";
    ASSERT_EQ(body.find('x'), 11u);
    const auto r = Rejected(Post(body));
    ASSERT_TRUE(r);
    EXPECT_TRUE(Contains(r->detail, "byte 11")) << r->detail;
}

// ---- body shape ----

TEST(ParseCreateResource, NonObjectBodyIs400) {
    for (const char* body : {"[]", R"([{"data":1}])", R"("data")", "1", "null", "true"}) {
        const auto r = Rejected(Post(body));
        ASSERT_TRUE(r) << "accepted body " << body;
        EXPECT_EQ(r->status, 400) << body;
        EXPECT_TRUE(Contains(r->detail, "object")) << body << " -> " << r->detail;
    }
}

TEST(ParseCreateResource, MissingDataIs400NamingTheField) {
    for (const char* body : {"{}", R"({"work_ms":5})"}) {
        const auto r = Rejected(Post(body));
        ASSERT_TRUE(r) << "accepted body " << body;
        EXPECT_EQ(r->status, 400) << body;
        EXPECT_TRUE(Contains(r->detail, "data")) << body << " -> " << r->detail;
    }
}

TEST(ParseCreateResource, UnknownFieldIs400NamingIt) {
    const auto r = Rejected(Post(R"({"data":1,"wrok_ms":5})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(Contains(r->detail, "wrok_ms")) << r->detail;
}

TEST(ParseCreateResource, FieldNamesAreCaseSensitive) {
    const auto r = Rejected(Post(R"({"Data":1})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
}

// ---- work_ms ----

TEST(ParseCreateResource, WorkMsDefaultsToZero) {
    const auto c = Accepted(Post(R"({"data":1})"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->work_ms, 0);
}

TEST(ParseCreateResource, WorkMsAcceptsTheWholeRangeInclusive) {
    for (const std::int64_t ms : {std::int64_t{0}, std::int64_t{1}, std::int64_t{250}, kMaxWork}) {
        const auto c = Accepted(Post(R"({"data":1,"work_ms":)" + std::to_string(ms) + "}"));
        ASSERT_TRUE(c) << ms;
        EXPECT_EQ(c->work_ms, ms);
    }
}

TEST(ParseCreateResource, WorkMsHonoursTheGivenMaximum) {
    const auto c = Accepted(Post(R"({"data":1,"work_ms":100})"), 100);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->work_ms, 100);
    const auto r = Rejected(Post(R"({"data":1,"work_ms":101})"), 100);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
}

TEST(ParseCreateResource, WorkMsOutOfRangeIs400) {
    const std::string too_big = std::to_string(kMaxWork + 1);
    const std::string int64_max = std::to_string(std::numeric_limits<std::int64_t>::max());
    const std::string uint64_max = std::to_string(std::numeric_limits<std::uint64_t>::max());
    for (const std::string& v : {std::string("-1"), std::string("-600000"), too_big, int64_max,
                                 uint64_max, std::string("-9223372036854775808")}) {
        const auto r = Rejected(Post(R"({"data":1,"work_ms":)" + v + "}"));
        ASSERT_TRUE(r) << "accepted work_ms " << v;
        EXPECT_EQ(r->status, 400) << v;
        EXPECT_TRUE(Contains(r->detail, "work_ms")) << v << " -> " << r->detail;
    }
}

TEST(ParseCreateResource, WorkMsThatIsNotAnIntegerIs400) {
    for (const char* v :
         {"1.5", "0.5", "1e3", R"("100")", "null", "true", "[100]", R"({"ms":1})"}) {
        const auto r = Rejected(Post(std::string(R"({"data":1,"work_ms":)") + v + "}"));
        ASSERT_TRUE(r) << "accepted work_ms " << v;
        EXPECT_EQ(r->status, 400) << v;
        EXPECT_TRUE(Contains(r->detail, "work_ms")) << v << " -> " << r->detail;
    }
}

// ---- data ----

TEST(ParseCreateResource, PreservesDataOfEveryJsonKind) {
    const char* values[] = {
        "null",
        "true",
        "false",
        "0",
        "-17",
        "9223372036854775807",
        "18446744073709551615",
        "1.5",
        "-0.25",
        "1e-7",
        "0.1",
        "1.7976931348623157e308",
        "5e-324",
        R"("")",
        R"("caf\u00e9 \"quoted\" back\\slash\nline \u0000 nul \ud83d\ude00")",
        "[]",
        R"([1,"a",null,[{}],{"k":[true,false]}])",
        "{}",
        R"({"nested":{"k":[1,2,3]},"b":false,"s":"x","n":null})",
    };
    for (const char* text : values) {
        const auto c = Accepted(Post(std::string(R"({"data":)") + text + "}"));
        ASSERT_TRUE(c) << text;
        boost::json::value got;
        ASSERT_NO_THROW(got = boost::json::parse(c->data_json)) << c->data_json;
        EXPECT_EQ(got, boost::json::parse(text)) << text << " became " << c->data_json;
        EXPECT_EQ(got.kind(), boost::json::parse(text).kind()) << text;
    }
}

TEST(ParseCreateResource, ReserializesDataCompactly) {
    const auto c = Accepted(Post("{ \"data\" : { \"a\" : [ 1 , 2 ] ,\n \"b\" : \"x y\" } }"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->data_json, R"({"a":[1,2],"b":"x y"})");
}

TEST(ParseCreateResource, DataNullIsPresentNotMissing) {
    const auto c = Accepted(Post(R"({"data":null})"));
    ASSERT_TRUE(c);
    EXPECT_EQ(c->data_json, "null");
}

// ---- rendering ----

TEST(RenderResource, IsAJsonObjectWithExactlyIdDataAndCreatedAt) {
    store::Resource r;
    r.id = "0190a5c2-7b1e-7c3a-9d4e-5f6a7b8c9d0e";
    r.data_json = R"({"k":[1,2,{"z":null}]})";
    r.created_at = "2026-11-29T16:47:55.123Z";
    r.idempotency_key = "must-not-leak";
    r.owner = "replica-a";
    const std::string out = RenderResource(r);
    boost::json::value v;
    ASSERT_NO_THROW(v = boost::json::parse(out)) << out;
    ASSERT_TRUE(v.is_object()) << out;
    const auto& o = v.as_object();
    std::set<std::string> keys;
    for (const auto& kv : o) keys.emplace(kv.key());
    EXPECT_EQ(keys, (std::set<std::string>{"id", "data", "created_at"})) << out;
    EXPECT_EQ(o.at("id"), boost::json::value(r.id));
    EXPECT_EQ(o.at("created_at"), boost::json::value(r.created_at));
    EXPECT_EQ(o.at("data"), boost::json::parse(r.data_json));
}

TEST(RenderResource, EscapesIdAndCreatedAtSoTheOutputStaysValid) {
    store::Resource r;
    r.id = "we\"ird\\id\n\x01";
    r.data_json = "null";
    r.created_at = "\"2026\"";
    const std::string out = RenderResource(r);
    boost::json::value v;
    ASSERT_NO_THROW(v = boost::json::parse(out)) << out;
    EXPECT_EQ(v.as_object().at("id"), boost::json::value(r.id));
    EXPECT_EQ(v.as_object().at("created_at"), boost::json::value(r.created_at));
    EXPECT_TRUE(v.as_object().at("data").is_null());
}

TEST(RenderResource, RoundTripsDataParsedFromARequest) {
    const std::string data = R"({"list":[1,-2.5,"s",null,true],"o":{}})";
    const auto c = Accepted(Post(R"({"data":)" + data + "}"));
    ASSERT_TRUE(c);
    store::Resource r;
    r.id = "x";
    r.data_json = c->data_json;
    r.created_at = "2026-01-01T00:00:00.000Z";
    const auto v = boost::json::parse(RenderResource(r));
    EXPECT_EQ(v.as_object().at("data"), boost::json::parse(data));
}

}  // namespace
}  // namespace rollsafe::serve
