// Journal retention (completed rows go after --retention, and a retry after that is a new
// request) and the ledger's edges (overflow answered 422 and replayed as such, validation).

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"
#include "testing/test_store.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

// Retention and the ledger's edges, on both stores.
class OnStore : public ::testing::TestWithParam<std::string> {};

TEST_P(OnStore, CompletedRowsAreDeletedAfterRetentionAndTheKeyIsThenNew) {
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    ServeProcess server(store.Replica({"--retention", "1s", "--recovery-interval", "200ms"}));
    const HttpResponse first =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders("keep-1"), ResourceBody("1"));
    ASSERT_EQ(first.status, 201) << first.Describe();
    // Replayed while within the retention.
    const HttpResponse again =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders("keep-1"), ResourceBody("1"));
    ASSERT_EQ(again.status, 201) << again.Describe();
    EXPECT_EQ(again.Header("Idempotent-Replayed").value_or(""), "true");
    EXPECT_EQ(again.body, first.body);

    std::string last;
    EXPECT_TRUE(SqlitePoll(store.Url(), "SELECT count(*) FROM journal WHERE key = 'keep-1'", "0",
                           DeadlineIn(10s), &last))
        << "the completed journal row was not deleted after the retention; last count " << last;
    EXPECT_TRUE(server.WaitForLine("\"event\":\"retention\"", DeadlineIn(2s)));

    // After the retention the key is unknown again: a new request, a new resource.
    const HttpResponse later =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders("keep-1"), ResourceBody("1"));
    ASSERT_EQ(later.status, 201) << later.Describe();
    EXPECT_FALSE(later.Header("Idempotent-Replayed").has_value());
    const auto a = ParseResource(first);
    const auto b = ParseResource(later);
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->id, b->id);
}

HttpResponse PostEntry(std::uint16_t port, const std::string& account, const std::string& key,
                       const std::string& body) {
    return Fetch(port, "POST", "/accounts/" + account + "/entries", JsonHeaders(key), body);
}

TEST_P(OnStore, LedgerOverflowIsAnswered422AndItsRetryReplaysThe422) {
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    ServeProcess server(store.Replica());
    const std::int64_t max = std::numeric_limits<std::int64_t>::max();
    const HttpResponse big =
        PostEntry(server.ApiPort(), "acc", "big", "{\"amount\":" + std::to_string(max) + "}");
    ASSERT_EQ(big.status, 201) << big.Describe();
    const HttpResponse over = PostEntry(server.ApiPort(), "acc", "over", R"({"amount":1})");
    EXPECT_EQ(over.status, 422) << over.Describe();
    EXPECT_TRUE(ProblemBody(over).has_value()) << over.Describe();
    const HttpResponse over_again = PostEntry(server.ApiPort(), "acc", "over", R"({"amount":1})");
    EXPECT_EQ(over_again.status, 422) << over_again.Describe();
    EXPECT_EQ(over_again.Header("Idempotent-Replayed").value_or(""), "true");

    // The balance is untouched by the refused entry, and a negative entry still applies.
    const HttpResponse down = PostEntry(server.ApiPort(), "acc", "down", R"({"amount":-5})");
    ASSERT_EQ(down.status, 201) << down.Describe();
    // Compared as text: the test's JSON reader keeps numbers as doubles.
    EXPECT_NE(down.body.find("\"seq\":2,"), std::string::npos) << down.body;
    EXPECT_NE(down.body.find("\"balance\":" + std::to_string(max - 5)), std::string::npos)
        << down.body;
    EXPECT_EQ(RunAudit(store.Url()).exit_code, 0);
}

TEST_P(OnStore, LedgerRejectsBadEntriesWithoutStoringAnything) {
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    ServeProcess server(store.Replica());
    for (const std::string& body : std::vector<std::string>{
             R"({"amount":0})", R"({"amount":1.5})", R"({"amount":"5"})", R"({})",
             R"({"amount":1,"memo":5})", R"({"amount":1,"extra":true})",
             "{\"amount\":1,\"memo\":\"" + std::string(257, 'm') + "\"}"}) {
        const HttpResponse r = PostEntry(server.ApiPort(), "acc", "", body);
        EXPECT_EQ(r.status, 400) << body << "\n" << r.Describe();
    }
    const HttpResponse bad_account =
        PostEntry(server.ApiPort(), "bad%20acc", "", R"({"amount":1})");
    EXPECT_EQ(bad_account.status, 400) << bad_account.Describe();
    EXPECT_EQ(Fetch(server.ApiPort(), "GET", "/accounts/acc").status, 404);
    EXPECT_EQ(SqliteOneRow(store.Url(), "SELECT count(*) FROM journal"), "0");
}

INSTANTIATE_TEST_SUITE_P(Stores, OnStore, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace rollsafe::testing
