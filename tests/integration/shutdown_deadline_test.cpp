// The hard deadline: `--shutdown-timeout` after closing began, or a second signal at any time,
// cancels what is still in flight with 503 + Retry-After, stores nothing of it, and exits 0.

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

constexpr long long kLongWorkMs = 10'000;
constexpr double kExitAfterDeadlineMs = 1500;  // "exits 0 right after" the deadline

/// The cancelled request's answer: 503, Retry-After (delta-seconds), Connection: close,
/// as problem+json.
void ExpectCancelled(const HttpResponse& r) {
    ASSERT_TRUE(r.complete) << "the cancelled request got no response: " << r.Describe();
    EXPECT_FALSE(r.reset);
    EXPECT_EQ(r.status, 503) << r.Describe();
    const auto retry_after = r.Header("Retry-After");
    ASSERT_TRUE(retry_after) << r.Describe();
    EXPECT_FALSE(retry_after->empty());
    EXPECT_EQ(retry_after->find_first_not_of("0123456789"), std::string::npos)
        << "Retry-After should be delta-seconds: " << *retry_after;
    EXPECT_TRUE(r.HasToken("Connection", "close")) << r.Describe();
    EXPECT_TRUE(IsProblem(r, 503));
}

void ExpectNothingStored(const std::string& db) {
    const auto q = SqliteQuery(db, "SELECT count(*) FROM resources");
    ASSERT_TRUE(q.ok) << q.error;
    ASSERT_EQ(q.rows.size(), 1u);
    EXPECT_EQ(q.rows[0], "0") << "a cancelled request must not leave a row";
}

void ExpectExitLine(const ServeProcess& server) {
    const auto exit_event = server.WaitForEvent("exit", DeadlineIn(1s));
    ASSERT_TRUE(exit_event) << "no exit line";
    EXPECT_EQ(exit_event->GetNumber("code"), 0.0) << exit_event->Dump();
}

TEST(ShutdownDeadline, PostOutlastingShutdownTimeoutGets503RetryAfterAndIsNotStored) {
    // Closing begins 200 ms after SIGTERM; the deadline is 1 s after that.
    constexpr double kDeadlineMs = 200 + 1000;
    ServeProcess server({"--drain-delay", "200ms", "--shutdown-timeout", "1s"});
    HttpConnection post = StartPost(server.ApiPort(), kLongWorkMs, "deadline-key");
    ASSERT_TRUE(post.IsOpen());
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    const HttpResponse r = post.ReadResponse(t0 + 5s);
    ExpectCancelled(r);
    if (r.complete) {
        const double at = MsBetween(t0, r.received_at);
        EXPECT_GE(at, kDeadlineMs - 10) << "cancelled before the shutdown deadline";
        EXPECT_LE(at, kDeadlineMs + 1000) << "cancelled long after the shutdown deadline";
    }

    const auto code = server.WaitExit(
        t0 + std::chrono::milliseconds(static_cast<int>(kDeadlineMs + kExitAfterDeadlineMs)));
    ASSERT_TRUE(code) << "no exit within 1.5 s of the shutdown deadline";
    EXPECT_EQ(*code, 0);
    ExpectExitLine(server);
    ExpectNothingStored(server.DbPath());
}

TEST(ShutdownDeadline, SecondSigtermDuringDrainCancelsInFlightAtOnce) {
    // Default drain delay (5 s) and shutdown timeout (25 s): only the second signal can make
    // this finish within a second.
    ServeProcess server;
    HttpConnection post = StartPost(server.ApiPort(), kLongWorkMs, "second-signal-drain");
    ASSERT_TRUE(post.IsOpen());
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    ASSERT_TRUE(PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 1s))
        << "server did not start draining";

    const auto t1 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    const HttpResponse r = post.ReadResponse(t1 + 5s);
    ExpectCancelled(r);
    if (r.complete) {
        EXPECT_LE(MsBetween(t1, r.received_at), 1000.0);
    }

    const auto code = server.WaitExit(t1 + 1500ms);
    ASSERT_TRUE(code) << "no exit within 1.5 s of the second SIGTERM";
    EXPECT_EQ(*code, 0);
    ExpectExitLine(server);
    ExpectNothingStored(server.DbPath());
}

TEST(ShutdownDeadline, SecondSigtermDuringClosingCancelsInFlightAtOnce) {
    // Short drain, default 25 s shutdown timeout: the listener is closed and the POST is still
    // running when the second signal arrives.
    ServeProcess server({"--drain-delay", "200ms"});
    HttpConnection post = StartPost(server.ApiPort(), kLongWorkMs, "second-signal-closing");
    ASSERT_TRUE(post.IsOpen());
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    ASSERT_TRUE(PollUntilRefused(server.ApiPort(), t0 + 2s)) << "server did not reach closing";
    ASSERT_TRUE(server.Running()) << "exited although the POST was in flight";

    const auto t1 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    const HttpResponse r = post.ReadResponse(t1 + 5s);
    ExpectCancelled(r);
    if (r.complete) {
        EXPECT_LE(MsBetween(t1, r.received_at), 1000.0);
    }

    const auto code = server.WaitExit(t1 + 1500ms);
    ASSERT_TRUE(code) << "no exit within 1.5 s of the second SIGTERM";
    EXPECT_EQ(*code, 0);
    ExpectExitLine(server);
    ExpectNothingStored(server.DbPath());
}

// A request whose body is still arriving at the deadline is answered too (503 + Retry-After,
// Connection: close), rather than dropped with the connection.
TEST(ShutdownDeadline, RequestStillUploadingAtTheDeadlineGets503) {
    ServeProcess server;
    HttpConnection c = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(c.IsOpen());
    ASSERT_EQ(c.SendRaw("POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: application/json\r\nIdempotency-Key: uploading-1\r\n"
                        "Content-Length: 100\r\n\r\n{\"data\":"),
              0);
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));
    ASSERT_TRUE(PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 1s));
    ASSERT_TRUE(server.Signal(SIGTERM));  // straight to the deadline
    const HttpResponse r = c.ReadResponse(t0 + 5s);
    ASSERT_TRUE(r.complete) << r.Describe();
    EXPECT_EQ(r.status, 503) << r.Describe();
    EXPECT_TRUE(r.Header("Retry-After").has_value()) << r.Describe();
    EXPECT_TRUE(r.HasToken("Connection", "close")) << r.Describe();
    const auto code = server.WaitExit(t0 + 3s);
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 0);
    ExpectNothingStored(server.DbPath());
}

}  // namespace
}  // namespace rollsafe::testing
