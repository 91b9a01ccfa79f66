// Keep-alive connections across SIGTERM: the server tells clients to go away with
// `Connection: close` on the next response and then closes in order (FIN), never by reset, so
// no request is lost to the keep-alive race.

#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// One keep-alive exchange before the signal; the server must keep the connection open.
void ExpectKeepAliveEstablished(HttpConnection& conn) {
    const HttpResponse r = conn.Request("GET", "/livez");
    ASSERT_TRUE(r.complete) << r.Describe();
    ASSERT_EQ(r.status, 200) << r.Describe();
    ASSERT_FALSE(r.HasToken("Connection", "close"))
        << "a ready server should keep HTTP/1.1 connections alive: " << r.Describe();
}

TEST(KeepAliveDrain, NextRequestAfterSigtermGetsConnectionCloseThenOrderlyClose) {
    constexpr auto kDrain = 2000ms;
    ServeProcess server({"--drain-delay", "2s"});
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    ExpectKeepAliveEstablished(conn);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    ASSERT_TRUE(PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 1s))
        << "server did not start draining";

    // Same connection, next request, inside the drain delay.
    const HttpResponse r = conn.Request("GET", "/livez", {}, {}, t0 + kDrain);
    ASSERT_LT(MsBetween(t0, SteadyClock::now()), 2000.0) << "probe must run inside the drain";
    ASSERT_TRUE(r.complete) << "keep-alive request during the drain got no response: "
                            << r.Describe();
    EXPECT_FALSE(r.reset);
    EXPECT_EQ(r.status, 200) << r.Describe();
    EXPECT_TRUE(r.HasToken("Connection", "close")) << r.Describe();

    const PeerClose closed = conn.WaitForPeerClose(DeadlineIn(1s));
    EXPECT_EQ(closed, PeerClose::kClosed) << "after Connection: close the server should close "
                                             "the connection in order, got "
                                          << ToString(closed);
}

TEST(KeepAliveDrain, ResponseToRequestInFlightAtSigtermCarriesConnectionClose) {
    ServeProcess server({"--drain-delay", "2s"});
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    ExpectKeepAliveEstablished(conn);

    ASSERT_EQ(conn.SendRequest("POST", "/resources", JsonHeaders("ka-inflight"),
                               ResourceBody(R"({"n":1})", 1000)),
              0);
    std::this_thread::sleep_for(kLetRequestArrive);
    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));

    const HttpResponse r = conn.ReadResponse(t0 + 5s);
    ASSERT_TRUE(r.complete) << r.Describe();
    EXPECT_FALSE(r.reset);
    EXPECT_EQ(r.status, 201) << r.Describe();
    EXPECT_TRUE(r.HasToken("Connection", "close"))
        << "the drain decision is made when the response headers are built: " << r.Describe();
    const PeerClose closed = conn.WaitForPeerClose(DeadlineIn(1s));
    EXPECT_EQ(closed, PeerClose::kClosed) << ToString(closed);
}

TEST(KeepAliveDrain, IdleKeepAliveConnectionIsClosedInOrderWhenClosingBegins) {
    constexpr auto kDrain = 1000ms;
    ServeProcess server({"--drain-delay", "1s"});
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    ExpectKeepAliveEstablished(conn);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    const PeerClose closed = conn.WaitForPeerClose(t0 + kDrain + 2s);
    const auto closed_at = SteadyClock::now();
    ASSERT_EQ(closed, PeerClose::kClosed) << ToString(closed);
    // During the drain everything is still served, so the idle connection must stay usable
    // until closing begins.
    EXPECT_GE(MsBetween(t0, closed_at), 1000.0 - 10)
        << "idle keep-alive connection closed before the drain delay ended";
    const auto code = server.WaitExit(t0 + kDrain + 3s);
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 0);
}

TEST(KeepAliveDrain, SeveralRequestsOnOneConnectionWhileReady) {
    ServeProcess server;
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    for (int i = 0; i < 5; ++i) {
        const HttpResponse r = conn.Request("GET", i % 2 == 0 ? "/livez" : "/readyz");
        ASSERT_TRUE(r.complete) << "request " << i << ": " << r.Describe();
        EXPECT_EQ(r.status, 200) << r.Describe();
        EXPECT_FALSE(r.HasToken("Connection", "close")) << r.Describe();
    }
}

}  // namespace
}  // namespace rollsafe::testing
