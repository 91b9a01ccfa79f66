// Kubernetes order: the preStop hook (`GET /lifecycle/prestop` on the admin port) drains and
// blocks for the drain delay; the SIGTERM that follows goes straight to closing.

#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

TEST(PreStop, BlocksForDrainDelayThenSigtermGoesStraightToClosing) {
    constexpr double kDrainMs = 2000;
    ServeProcess server({"--drain-delay", "2s"});

    HttpConnection prestop = HttpConnection::Connect(server.AdminPort());
    ASSERT_TRUE(prestop.IsOpen());
    const auto t0 = SteadyClock::now();
    ASSERT_EQ(prestop.SendRequest("GET", "/lifecycle/prestop"), 0);

    // Meanwhile: not ready, but still serving (with Connection: close).
    const auto readyz = PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 1s);
    ASSERT_TRUE(readyz) << "/readyz did not turn 503 during preStop";
    EXPECT_LE(MsBetween(t0, readyz->received_at), 100.0);
    const HttpResponse during = Fetch(server.ApiPort(), "GET", "/livez");
    EXPECT_EQ(during.status, 200) << during.Describe();
    EXPECT_TRUE(during.HasToken("Connection", "close")) << during.Describe();
    std::this_thread::sleep_until(t0 + 1s);
    const HttpResponse readyz_later = Fetch(server.AdminPort(), "GET", "/readyz");
    EXPECT_EQ(readyz_later.status, 503) << "1 s into preStop: " << readyz_later.Describe();

    const HttpResponse done = prestop.ReadResponse(t0 + 5s);
    ASSERT_TRUE(done.complete) << done.Describe();
    EXPECT_EQ(done.status, 200) << done.Describe();
    const double blocked_ms = MsBetween(t0, done.received_at);
    EXPECT_GE(blocked_ms, kDrainMs - 10) << "preStop returned before the drain delay";
    EXPECT_LE(blocked_ms, kDrainMs + 1000) << "preStop blocked well past the drain delay";

    // Between preStop and SIGTERM: still not ready, still accepting.
    const HttpResponse readyz_after = Fetch(server.AdminPort(), "GET", "/readyz");
    EXPECT_EQ(readyz_after.status, 503) << readyz_after.Describe();
    ASSERT_TRUE(server.Running()) << "preStop alone must not stop the process";

    HttpConnection post = StartPost(server.ApiPort(), 1500, "prestop-key");
    ASSERT_TRUE(post.IsOpen()) << "connect refused after preStop but before SIGTERM";
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t1 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    int last_error = 0;
    const auto refused = PollUntilRefused(server.ApiPort(), t1 + 2s, &last_error);
    ASSERT_TRUE(refused) << "connects still accepted after SIGTERM following preStop (errno "
                         << last_error << ")";
    EXPECT_LE(MsBetween(t1, *refused), 500.0)
        << "SIGTERM after preStop should close the listeners at once, not drain again";
    EXPECT_TRUE(server.Running()) << "exited before the in-flight POST finished";

    const HttpResponse created = post.ReadResponse(t1 + 5s);
    ASSERT_TRUE(created.complete) << created.Describe();
    ASSERT_EQ(created.status, 201) << created.Describe();
    const auto resource = ParseResource(created);
    ASSERT_TRUE(resource) << created.Describe();

    const auto code = server.WaitExit(t1 + 1200ms + 1500ms);
    ASSERT_TRUE(code) << "no exit after the in-flight POST finished";
    EXPECT_EQ(*code, 0);

    const auto q =
        SqliteQuery(server.DbPath(),
                    "SELECT idempotency_key FROM resources WHERE id = " + SqlQuote(resource->id));
    ASSERT_TRUE(q.ok) << q.error;
    ASSERT_EQ(q.rows.size(), 1u);
    EXPECT_EQ(q.rows[0], "prestop-key");
}

}  // namespace
}  // namespace rollsafe::testing
