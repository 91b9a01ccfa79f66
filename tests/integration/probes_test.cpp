// Health probes: liveness ignores draining, readiness (and /health) follows it, on both ports.

#include <signal.h>

#include <chrono>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

TEST(Probes, LivezStaysUpWhileReadyzAndHealthGoDownWhenDraining) {
    ServeProcess server({"--drain-delay", "2s"});
    for (const auto port : {server.ApiPort(), server.AdminPort()}) {
        EXPECT_EQ(Fetch(port, "GET", "/livez").status, 200) << "port " << port;
        EXPECT_EQ(Fetch(port, "GET", "/readyz").status, 200) << "port " << port;
    }
    EXPECT_EQ(Fetch(server.AdminPort(), "GET", "/health").status, 200);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    ASSERT_TRUE(PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 1s));

    const HttpResponse api_readyz = Fetch(server.ApiPort(), "GET", "/readyz");
    EXPECT_EQ(api_readyz.status, 503)
        << "API port /readyz while draining: " << api_readyz.Describe();
    const HttpResponse health = Fetch(server.AdminPort(), "GET", "/health");
    EXPECT_EQ(health.status, 503) << "/health is the same as /readyz: " << health.Describe();
    for (const auto port : {server.ApiPort(), server.AdminPort()}) {
        const HttpResponse livez = Fetch(port, "GET", "/livez");
        EXPECT_EQ(livez.status, 200)
            << "/livez must ignore draining (port " << port << "): " << livez.Describe();
    }
    ASSERT_LT(MsBetween(t0, SteadyClock::now()), 2000.0) << "probes must run inside the drain";
}

}  // namespace
}  // namespace rollsafe::testing
