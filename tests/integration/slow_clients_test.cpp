// Slow clients must not starve others: connections parked mid-request line hold no thread.

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

TEST(SlowClients, TwoHundredIdlePartialRequestsDoNotBlockOtherClients) {
    constexpr int kIdle = 200;
    constexpr int kProbes = 50;
    // A bound that only a blocked server misses (each probe normally takes well under 10 ms);
    // this is a correctness check, not a performance assertion.
    constexpr double kProbeBoundMs = 1000;
    ServeProcess server;  // default header timeout (10 s) keeps the idle ones open throughout

    std::vector<HttpConnection> idle;
    idle.reserve(kIdle);
    for (int i = 0; i < kIdle; ++i) {
        HttpConnection c = HttpConnection::Connect(server.ApiPort());
        ASSERT_TRUE(c.IsOpen()) << "idle connection " << i << ": errno " << c.ConnectError();
        ASSERT_EQ(c.SendRaw("GET /livez HT"), 0) << "idle connection " << i;
        idle.push_back(std::move(c));
    }

    for (int i = 0; i < kProbes; ++i) {
        const auto start = SteadyClock::now();
        const HttpResponse r = Fetch(server.ApiPort(), "GET", "/livez", {}, {}, start + 5s);
        const double took = MsBetween(start, SteadyClock::now());
        ASSERT_TRUE(r.complete) << "probe " << i << " with " << kIdle
                                << " slow connections open: " << r.Describe();
        EXPECT_EQ(r.status, 200) << r.Describe();
        EXPECT_LT(took, kProbeBoundMs) << "probe " << i;
    }

    // The slow connections were held, not dropped (otherwise this test proves nothing).
    int still_open = 0;
    for (auto& c : idle)
        if (c.WaitForPeerClose(SteadyClock::now()) == PeerClose::kTimeout) ++still_open;
    EXPECT_EQ(still_open, kIdle);

    // And each of them can still finish its request.
    HttpConnection& first = idle.front();
    ASSERT_EQ(first.SendRaw("TP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 0);
    const HttpResponse finished = first.ReadResponse(DeadlineIn(5s));
    EXPECT_EQ(finished.status, 200) << finished.Describe();
}

}  // namespace
}  // namespace rollsafe::testing
