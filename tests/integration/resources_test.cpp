// POST /resources then GET /resources/{id}: the stored representation round-trips.

#include <signal.h>

#include <chrono>
#include <regex>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

TEST(Resources, PostThenGetRoundTripsWithLocationAndStoresIdempotencyKey) {
    ServeProcess server({"--drain-delay", "100ms"});
    const std::string data = R"({"n":42,"s":"h\u00e9llo \"q\"","list":[1,2.5,null,true],"o":{}})";
    const auto sent = ParseJson(data);
    ASSERT_TRUE(sent);

    const HttpResponse created =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders("rt-key-1"), ResourceBody(data));
    ASSERT_EQ(created.status, 201) << created.Describe();
    const auto ct = created.Header("Content-Type");
    EXPECT_TRUE(ct && ct->rfind("application/json", 0) == 0) << created.Describe();
    const auto res = ParseResource(created);
    ASSERT_TRUE(res) << created.Describe();
    EXPECT_EQ(res->data, *sent) << "got " << res->data.Dump();
    EXPECT_TRUE(std::regex_search(res->created_at, std::regex(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2})")))
        << "created_at is not RFC 3339: " << res->created_at;
    const auto location = created.Header("Location");
    ASSERT_TRUE(location) << created.Describe();
    EXPECT_EQ(*location, "/resources/" + res->id);

    const HttpResponse got = Fetch(server.ApiPort(), "GET", *location);
    ASSERT_EQ(got.status, 200) << got.Describe();
    const auto again = ParseResource(got);
    ASSERT_TRUE(again) << got.Describe();
    EXPECT_EQ(again->id, res->id);
    EXPECT_EQ(again->data, *sent);
    EXPECT_EQ(again->created_at, res->created_at);

    // Two POSTs make two resources.
    const HttpResponse other =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), ResourceBody("1"));
    const auto other_res = ParseResource(other);
    ASSERT_TRUE(other_res) << other.Describe();
    EXPECT_NE(other_res->id, res->id);

    // The access log carries the key of the request that sent one.
    EXPECT_TRUE(server.WaitForLine("\"idempotency_key\":\"rt-key-1\"", DeadlineIn(2s)))
        << "no request log line with the idempotency key";

    ASSERT_TRUE(server.Signal(SIGTERM));
    const auto code = server.WaitExit(DeadlineIn(5s));
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 0);
    const auto q =
        SqliteQuery(server.DbPath(),
                    "SELECT idempotency_key, data FROM resources WHERE id = " + SqlQuote(res->id));
    ASSERT_TRUE(q.ok) << q.error;
    ASSERT_EQ(q.rows.size(), 1u);
    const auto bar = q.rows[0].find('|');
    ASSERT_NE(bar, std::string::npos);
    EXPECT_EQ(q.rows[0].substr(0, bar), "rt-key-1");
    const auto stored = ParseJson(q.rows[0].substr(bar + 1));
    ASSERT_TRUE(stored) << q.rows[0];
    EXPECT_EQ(*stored, *sent);

    // The second POST's own key is stored with its row, not the first one's.
    const auto other_key =
        SqliteQuery(server.DbPath(),
                    "SELECT idempotency_key FROM resources WHERE id = " + SqlQuote(other_res->id));
    ASSERT_TRUE(other_key.ok) << other_key.error;
    ASSERT_EQ(other_key.rows.size(), 1u);
    EXPECT_NE(other_key.rows[0], "rt-key-1");
    EXPECT_FALSE(other_key.rows[0].empty());
}

}  // namespace
}  // namespace rollsafe::testing
