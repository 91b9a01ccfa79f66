// HTTP/1.1 pipelining: requests written back to back are answered in order.

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

std::string CreateResource(std::uint16_t port, std::string_view data_json) {
    const HttpResponse r =
        Fetch(port, "POST", "/resources", JsonHeaders(), ResourceBody(data_json));
    EXPECT_EQ(r.status, 201) << r.Describe();
    const auto res = ParseResource(r);
    return res ? res->id : std::string();
}

TEST(Pipelining, TwoGetsInOneWriteGetTwoResponsesInOrder) {
    ServeProcess server;
    const std::string a = CreateResource(server.ApiPort(), R"({"which":"a"})");
    const std::string b = CreateResource(server.ApiPort(), R"({"which":"b"})");
    ASSERT_FALSE(a.empty());
    ASSERT_FALSE(b.empty());
    ASSERT_NE(a, b);

    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    ASSERT_EQ(conn.SendRaw(BuildRequest("GET", "/resources/" + a) +
                           BuildRequest("GET", "/resources/" + b)),
              0);
    const HttpResponse first = conn.ReadResponse();
    const HttpResponse second = conn.ReadResponse();
    ASSERT_EQ(first.status, 200) << first.Describe();
    ASSERT_EQ(second.status, 200) << second.Describe();
    const auto ra = ParseResource(first);
    const auto rb = ParseResource(second);
    ASSERT_TRUE(ra && rb);
    EXPECT_EQ(ra->id, a);
    EXPECT_EQ(rb->id, b);
}

TEST(Pipelining, PostWithBodyThenGetInOneWriteAreAnsweredInOrder) {
    ServeProcess server;
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    ASSERT_EQ(conn.SendRaw(BuildRequest("POST", "/resources", JsonHeaders(),
                                        ResourceBody(R"({"x":1})", 200)) +
                           BuildRequest("GET", "/resources/does-not-exist")),
              0);
    const HttpResponse first = conn.ReadResponse();
    const HttpResponse second = conn.ReadResponse();
    EXPECT_EQ(first.status, 201) << first.Describe();
    EXPECT_TRUE(IsProblem(second, 404));
}

}  // namespace
}  // namespace rollsafe::testing
