// The admin listener's Prometheus endpoint counts API requests.

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

constexpr std::string_view kRequestsTotal = "rollsafe_http_requests_total";

TEST(Metrics, RequestsTotalIsExportedAndCountsApiRequests) {
    ServeProcess server;
    ASSERT_EQ(Fetch(server.ApiPort(), "GET", "/livez").status, 200);

    const HttpResponse before = Fetch(server.AdminPort(), "GET", "/metrics");
    ASSERT_EQ(before.status, 200) << before.Describe();
    const auto ct = before.Header("Content-Type");
    EXPECT_TRUE(ct && ct->rfind("text/plain", 0) == 0)
        << "Prometheus text format: " << before.Describe();
    const auto count_before = SumMetric(before.body, kRequestsTotal);
    ASSERT_TRUE(count_before) << kRequestsTotal << " missing after a request:\n" << before.body;
    EXPECT_GE(*count_before, 1.0);

    constexpr int kMore = 3;
    for (int i = 0; i < kMore; ++i)
        ASSERT_EQ(Fetch(server.ApiPort(), "GET", "/no-such-path").status, 404);
    const HttpResponse after = Fetch(server.AdminPort(), "GET", "/metrics");
    ASSERT_EQ(after.status, 200) << after.Describe();
    const auto count_after = SumMetric(after.body, kRequestsTotal);
    ASSERT_TRUE(count_after) << after.body;
    EXPECT_GE(*count_after - *count_before, kMore)
        << "the counter did not grow by the " << kMore << " requests made in between";
}

}  // namespace
}  // namespace rollsafe::testing
