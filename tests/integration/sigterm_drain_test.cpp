// SIGTERM with a request in flight: readiness drops at once, the drain delay serves new
// connections with `Connection: close`, then the listeners close, the in-flight request
// finishes and is stored, and the process exits 0.

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

constexpr double kReadyzBoundMs = 100;                      // contract: readyz 503 within 100 ms
constexpr std::chrono::milliseconds kExitAfterDrain{3500};  // acceptance: exit within drain + 3.5 s

void ExpectDrainingResponse(const HttpResponse& r, std::string_view what) {
    EXPECT_TRUE(r.HasToken("Connection", "close"))
        << what << ": every response while terminating must carry Connection: close\n"
        << r.Describe();
    const auto envoy = r.Header("x-envoy-immediate-health-check-fail");
    EXPECT_TRUE(envoy && *envoy == "true")
        << what << ": missing x-envoy-immediate-health-check-fail: true\n"
        << r.Describe();
}

/// Asserts that exactly one row with `id` is stored, with `key` as its idempotency key.
void ExpectStored(const std::string& db, const std::string& id, const std::string& key) {
    const auto q =
        SqliteQuery(db, "SELECT id, idempotency_key FROM resources WHERE id = " + SqlQuote(id));
    ASSERT_TRUE(q.ok) << q.error;
    ASSERT_EQ(q.rows.size(), 1u) << "rows for id " << id;
    EXPECT_EQ(q.rows[0], id + "|" + key);
}

/// Checks the lifecycle log: ready → draining reported the in-flight POST.
void ExpectDrainingLoggedWithInFlight(const ServeProcess& server) {
    bool seen = false;
    for (const auto& e : server.Events("lifecycle")) {
        if (e.GetString("from") == "ready" && e.GetString("to") == "draining") {
            seen = true;
            const auto in_flight = e.GetNumber("in_flight");
            EXPECT_TRUE(in_flight && *in_flight >= 1)
                << "the POST sent " << kLetRequestArrive.count()
                << " ms before SIGTERM should be in flight: " << e.Dump();
        }
    }
    EXPECT_TRUE(seen) << "no lifecycle line ready -> draining";
}

TEST(SigtermDrain, InFlightPostCompletesAndNewConnectsAreRefusedAfterDrain) {
    // work (4 s) outlasts the drain delay (2 s), so there is a window in which the listener
    // must be closed while the process is still alive, finishing the POST.
    constexpr auto kDrain = 2000ms;
    constexpr long long kWorkMs = 4000;
    ServeProcess server({"--drain-delay", "2s"});

    HttpConnection post = StartPost(server.ApiPort(), kWorkMs, "drain-key-1");
    ASSERT_TRUE(post.IsOpen()) << "POST could not be sent";
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));

    HttpResponse last;
    const auto readyz = PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 2s, &last);
    ASSERT_TRUE(readyz) << "/readyz never answered 503 after SIGTERM; last: " << last.Describe();
    EXPECT_LE(MsBetween(t0, readyz->received_at), kReadyzBoundMs);

    // A new connection during the drain delay is served, and told to go away.
    const HttpResponse during = Fetch(server.ApiPort(), "GET", "/livez");
    ASSERT_LT(MsBetween(t0, SteadyClock::now()), Ms(kDrain))
        << "test too slow to probe inside the drain delay";
    ASSERT_TRUE(during.complete) << during.Describe();
    EXPECT_EQ(during.status, 200) << during.Describe();
    ExpectDrainingResponse(during, "new connection during the drain delay");

    // After the drain delay the listeners are closed while the POST is still running.
    std::this_thread::sleep_until(t0 + kDrain);
    int last_error = 0;
    const auto refused = PollUntilRefused(server.ApiPort(), t0 + kDrain + 1s, &last_error);
    ASSERT_TRUE(refused) << "API connects still accepted 1 s after the drain delay (last errno "
                         << last_error << ")";
    EXPECT_LE(MsBetween(t0, *refused), Ms(kDrain) + 500);
    EXPECT_TRUE(server.Running()) << "the process had already exited; the POST (work_ms=" << kWorkMs
                                  << ") should have kept it alive past the drain delay";
    const auto admin_refused = PollUntilRefused(server.AdminPort(), t0 + kDrain + 1s);
    EXPECT_TRUE(admin_refused) << "admin listener still accepting after the drain delay";

    const HttpResponse created = post.ReadResponse(t0 + 10s);
    ASSERT_TRUE(created.complete) << created.Describe();
    ASSERT_EQ(created.status, 201) << created.Describe();
    EXPECT_TRUE(created.Header("Location").has_value()) << created.Describe();
    EXPECT_TRUE(created.HasToken("Connection", "close")) << created.Describe();
    EXPECT_FALSE(created.reset);
    const auto resource = ParseResource(created);
    ASSERT_TRUE(resource) << created.Describe();

    const auto code = server.WaitExit(t0 + kDrain + kExitAfterDrain);
    ASSERT_TRUE(code) << "no exit within drain delay + 3.5 s";
    EXPECT_EQ(*code, 0);
    const auto exit_event = server.WaitForEvent("exit", DeadlineIn(1s));
    ASSERT_TRUE(exit_event) << "no exit line";
    EXPECT_EQ(exit_event->GetNumber("code"), 0.0) << exit_event->Dump();

    ExpectDrainingLoggedWithInFlight(server);
    ExpectStored(server.DbPath(), resource->id, "drain-key-1");
}

TEST(SigtermDrain, DefaultDrainDelayKeepsServingForFiveSecondsThenExitsZero) {
    // The acceptance wording, with the default --drain-delay (5 s): a 3 s POST in flight.
    constexpr auto kDefaultDrain = 5000ms;
    ServeProcess server;

    HttpConnection post = StartPost(server.ApiPort(), 3000, "default-drain-key");
    ASSERT_TRUE(post.IsOpen());
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGTERM));

    HttpResponse last;
    const auto readyz = PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 2s, &last);
    ASSERT_TRUE(readyz) << "/readyz never answered 503 after SIGTERM; last: " << last.Describe();
    EXPECT_LE(MsBetween(t0, readyz->received_at), kReadyzBoundMs);
    ExpectDrainingResponse(*readyz, "/readyz while draining");

    const HttpResponse early = Fetch(server.ApiPort(), "GET", "/livez");
    ASSERT_TRUE(early.complete) << early.Describe();
    EXPECT_EQ(early.status, 200);
    ExpectDrainingResponse(early, "new connection early in the drain");

    const HttpResponse created = post.ReadResponse(t0 + 5s);
    ASSERT_TRUE(created.complete) << created.Describe();
    ASSERT_EQ(created.status, 201) << created.Describe();
    ExpectDrainingResponse(created, "in-flight POST completing during the drain");
    const auto resource = ParseResource(created);
    ASSERT_TRUE(resource) << created.Describe();

    // Nothing is in flight any more, yet the drain delay is honoured: still served at 4 s.
    std::this_thread::sleep_until(t0 + 4s);
    const HttpResponse late = Fetch(server.ApiPort(), "GET", "/livez", {}, {}, t0 + 4900ms);
    ASSERT_LT(MsBetween(t0, SteadyClock::now()), 5000.0);
    ASSERT_TRUE(late.complete) << "new connection 4 s into a 5 s drain delay: " << late.Describe();
    EXPECT_EQ(late.status, 200);
    ExpectDrainingResponse(late, "new connection late in the drain");

    const auto code = server.WaitExit(t0 + kDefaultDrain + kExitAfterDrain);
    ASSERT_TRUE(code) << "no exit within 5 s + 3.5 s";
    EXPECT_EQ(*code, 0);
    ASSERT_TRUE(server.ExitedAt());
    EXPECT_GE(MsBetween(t0, *server.ExitedAt()), 5000.0 - 10)
        << "exited before the drain delay was over";
    EXPECT_TRUE(PollUntilRefused(server.ApiPort(), DeadlineIn(1s)));

    ExpectDrainingLoggedWithInFlight(server);
    ExpectStored(server.DbPath(), resource->id, "default-drain-key");
}

TEST(SigtermDrain, SigintDrainsLikeSigterm) {
    ServeProcess server({"--drain-delay", "300ms"});
    HttpConnection post = StartPost(server.ApiPort(), 1000, "sigint-key");
    ASSERT_TRUE(post.IsOpen());
    std::this_thread::sleep_for(kLetRequestArrive);

    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(server.Signal(SIGINT));
    const auto readyz = PollUntilStatus(server.AdminPort(), "/readyz", 503, t0 + 2s);
    ASSERT_TRUE(readyz) << "/readyz never answered 503 after SIGINT";
    EXPECT_LE(MsBetween(t0, readyz->received_at), kReadyzBoundMs);

    const HttpResponse created = post.ReadResponse(t0 + 5s);
    ASSERT_EQ(created.status, 201) << created.Describe();
    const auto resource = ParseResource(created);
    ASSERT_TRUE(resource) << created.Describe();
    const auto code = server.WaitExit(t0 + 300ms + kExitAfterDrain);
    ASSERT_TRUE(code) << "no exit after SIGINT";
    EXPECT_EQ(*code, 0);
    ExpectStored(server.DbPath(), resource->id, "sigint-key");
}

}  // namespace
}  // namespace rollsafe::testing
