#include "rollsafe/client/retry_policy.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>

namespace rollsafe::client {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

/// A random source that always returns `value` and counts how often it was asked.
struct FakeRandom {
    std::uint64_t value = 0;
    int calls = 0;
    util::RandomSource Source() {
        return [this] {
            ++calls;
            return value;
        };
    }
};

RetryOptions Options() {
    RetryOptions o;
    o.max_retries = 10;
    o.deadline = 60s;
    o.backoff_base = 100ms;
    o.backoff_cap = 5s;
    o.retry_after_cap = 10s;
    return o;
}

TEST(RetryPolicy, SuccessStopsWithoutDrawingRandomness) {
    FakeRandom r;
    for (int status : {200, 201, 204, 299}) {
        const Decision d = Decide(Options(), 1, Outcome::Response(status), 0ms, r.Source());
        EXPECT_FALSE(d.retry) << status;
        EXPECT_EQ(d.reason, StopReason::kSucceeded) << status;
    }
    EXPECT_EQ(r.calls, 0);
}

TEST(RetryPolicy, RetriesOnlyGatewayErrorsConflictTimeoutAndTooManyRequests) {
    FakeRandom r;
    for (int status : {408, 409, 429, 502, 503, 504}) {
        EXPECT_TRUE(IsRetryableStatus(status)) << status;
        EXPECT_TRUE(Decide(Options(), 1, Outcome::Response(status), 0ms, r.Source()).retry)
            << status;
    }
    for (int status :
         {100, 301, 304, 400, 401, 403, 404, 405, 410, 411, 413, 415, 422, 431, 500, 501, 505}) {
        EXPECT_FALSE(IsRetryableStatus(status)) << status;
        const Decision d = Decide(Options(), 1, Outcome::Response(status), 0ms, r.Source());
        EXPECT_FALSE(d.retry) << status;
        EXPECT_EQ(d.reason, StopReason::kFinalResponse) << status;
        EXPECT_NE(d.why.find(std::to_string(status)), std::string::npos) << d.why;
    }
}

TEST(RetryPolicy, RetriesConnectTimeoutAndLostConnectionButNotProtocolErrors) {
    FakeRandom r;
    for (auto e :
         {TransportError::kConnect, TransportError::kTimeout, TransportError::kConnectionLost}) {
        EXPECT_TRUE(Decide(Options(), 1, Outcome::Transport(e), 0ms, r.Source()).retry)
            << ToString(e);
    }
    const Decision d =
        Decide(Options(), 1, Outcome::Transport(TransportError::kProtocol), 0ms, r.Source());
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.reason, StopReason::kNotRetryable);
}

TEST(RetryPolicy, FullJitterCeilingDoublesPerAttemptUpToTheCap) {
    // The ceiling is inclusive: a draw equal to it gives it, one more wraps to 0.
    const milliseconds ceilings[] = {100ms,  200ms,  400ms,  800ms, 1600ms,
                                     3200ms, 5000ms, 5000ms, 5000ms};
    RetryOptions o = Options();
    o.max_retries = 1000;
    for (int attempt = 1; attempt <= 9; ++attempt) {
        const milliseconds ceiling = ceilings[attempt - 1];
        FakeRandom top{static_cast<std::uint64_t>(ceiling.count())};
        const Decision d = Decide(o, attempt, Outcome::Response(503), 0ms, top.Source());
        ASSERT_TRUE(d.retry) << attempt;
        EXPECT_EQ(d.delay, ceiling) << "attempt " << attempt;
        EXPECT_FALSE(d.from_retry_after);
        EXPECT_EQ(top.calls, 1);

        FakeRandom wrap{static_cast<std::uint64_t>(ceiling.count()) + 1};
        EXPECT_EQ(Decide(o, attempt, Outcome::Response(503), 0ms, wrap.Source()).delay, 0ms)
            << "attempt " << attempt;
    }
    // Far past 2^63: still the cap, no overflow.
    FakeRandom top{5000};
    EXPECT_EQ(Decide(o, 900, Outcome::Response(503), 0ms, top.Source()).delay, 5000ms);
    FakeRandom max{std::numeric_limits<std::uint64_t>::max()};
    const milliseconds d = Decide(o, 900, Outcome::Response(503), 0ms, max.Source()).delay;
    EXPECT_GE(d, 0ms);
    EXPECT_LE(d, 5000ms);
}

TEST(RetryPolicy, JitterStaysWithinZeroAndTheCeilingForAnyDraw) {
    std::mt19937_64 gen(42);  // fixed seed: the same draws every run
    util::RandomSource source = [&gen] { return gen(); };
    RetryOptions o = Options();
    o.max_retries = 100;
    milliseconds lowest = 1h, highest = 0ms;
    for (int i = 0; i < 10'000; ++i) {
        const Decision d = Decide(o, 3, Outcome::Response(502), 0ms, source);
        ASSERT_TRUE(d.retry);
        lowest = std::min(lowest, d.delay);
        highest = std::max(highest, d.delay);
    }
    EXPECT_GE(lowest, 0ms);
    EXPECT_LE(highest, 400ms);
    // Full jitter uses the whole range, not just its top.
    EXPECT_LT(lowest, 20ms);
    EXPECT_GT(highest, 380ms);
}

TEST(RetryPolicy, ZeroBaseRetriesAtOnce) {
    RetryOptions o = Options();
    o.backoff_base = 0ms;
    FakeRandom r{12345};
    const Decision d = Decide(o, 4, Outcome::Transport(TransportError::kConnect), 0ms, r.Source());
    ASSERT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 0ms);
}

TEST(RetryPolicy, RetryAfterIsAFloorOverTheJitter) {
    FakeRandom low{0};
    Decision d = Decide(Options(), 1, Outcome::Response(503, "2"), 0ms, low.Source());
    ASSERT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 2000ms);
    EXPECT_TRUE(d.from_retry_after);
    EXPECT_NE(d.why.find("Retry-After"), std::string::npos) << d.why;

    // A jitter above the floor is kept (attempt 6: ceiling 3200 ms).
    FakeRandom high{3000};
    d = Decide(Options(), 6, Outcome::Response(503, "1"), 0ms, high.Source());
    ASSERT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 3000ms);
    EXPECT_FALSE(d.from_retry_after);

    // 409 (still running) and 429 carry it too.
    for (int status : {409, 429}) {
        FakeRandom r{0};
        d = Decide(Options(), 1, Outcome::Response(status, "3"), 0ms, r.Source());
        EXPECT_EQ(d.delay, 3000ms) << status;
    }
}

TEST(RetryPolicy, RetryAfterIsCapped) {
    FakeRandom r{0};
    const Decision d = Decide(Options(), 1, Outcome::Response(503, "3600"), 0ms, r.Source());
    ASSERT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 10s);
    EXPECT_TRUE(d.from_retry_after);

    FakeRandom r2{0};
    const Decision huge =
        Decide(Options(), 1, Outcome::Response(503, "99999999999999999999999"), 0ms, r2.Source());
    ASSERT_TRUE(huge.retry);
    EXPECT_EQ(huge.delay, 10s);
}

TEST(RetryPolicy, UnparseableRetryAfterIsIgnored) {
    for (const char* v : {"Wed, 21 Oct 2015 07:28:00 GMT", "", "-1", "1.5", "5s", "abc"}) {
        FakeRandom r{50};
        const Decision d = Decide(Options(), 1, Outcome::Response(503, v), 0ms, r.Source());
        ASSERT_TRUE(d.retry) << v;
        EXPECT_EQ(d.delay, 50ms) << v;
        EXPECT_FALSE(d.from_retry_after) << v;
    }
}

TEST(RetryPolicy, ParsesRetryAfterDeltaSeconds) {
    EXPECT_EQ(ParseRetryAfter("0"), 0s);
    EXPECT_EQ(ParseRetryAfter("120"), 120s);
    EXPECT_EQ(ParseRetryAfter(" \t5 "), 5s);
    EXPECT_EQ(ParseRetryAfter(""), std::nullopt);
    EXPECT_EQ(ParseRetryAfter("  "), std::nullopt);
    EXPECT_EQ(ParseRetryAfter("-1"), std::nullopt);
    EXPECT_EQ(ParseRetryAfter("+1"), std::nullopt);
    EXPECT_EQ(ParseRetryAfter("1 2"), std::nullopt);
    EXPECT_EQ(ParseRetryAfter("Fri, 31 Dec 1999 23:59:59 GMT"), std::nullopt);
    const auto huge = ParseRetryAfter("123456789012345678901234567890");
    ASSERT_TRUE(huge);
    EXPECT_GT(*huge, 24h * 365 * 1000);
}

TEST(RetryPolicy, StopsAfterMaxRetries) {
    RetryOptions o = Options();
    o.max_retries = 2;
    FakeRandom r{0};
    EXPECT_TRUE(Decide(o, 1, Outcome::Response(503), 0ms, r.Source()).retry);
    EXPECT_TRUE(Decide(o, 2, Outcome::Response(503), 0ms, r.Source()).retry);
    const Decision d = Decide(o, 3, Outcome::Response(503), 0ms, r.Source());
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.reason, StopReason::kRetriesExhausted);
    EXPECT_NE(d.why.find("3 attempts"), std::string::npos) << d.why;

    o.max_retries = 0;
    const Decision none =
        Decide(o, 1, Outcome::Transport(TransportError::kConnect), 0ms, r.Source());
    EXPECT_FALSE(none.retry);
    EXPECT_EQ(none.reason, StopReason::kRetriesExhausted);
}

TEST(RetryPolicy, NeverWaitsPastTheDeadline) {
    RetryOptions o = Options();
    o.deadline = 2s;
    // 1500 + 400 < 2000: retry.
    FakeRandom r{400};
    EXPECT_TRUE(Decide(o, 3, Outcome::Response(503), 1500ms, r.Source()).retry);
    // 1600 + 400 = 2000: the next attempt would start at the deadline.
    Decision d = Decide(o, 3, Outcome::Response(503), 1600ms, r.Source());
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.reason, StopReason::kDeadline);
    // Already past it, even with no wait at all.
    FakeRandom zero{0};
    d = Decide(o, 1, Outcome::Transport(TransportError::kTimeout), 2500ms, zero.Source());
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.reason, StopReason::kDeadline);
}

TEST(RetryPolicy, RetryAfterThatWouldEndPastTheDeadlineGivesUpAtOnce) {
    RetryOptions o = Options();
    o.deadline = 5s;
    FakeRandom r{0};  // the jitter alone (0 ms) would fit
    const Decision d = Decide(o, 1, Outcome::Response(503, "6"), 0ms, r.Source());
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.reason, StopReason::kDeadline);
    EXPECT_NE(d.why.find("Retry-After"), std::string::npos) << d.why;
}

TEST(RetryPolicy, AFinalAnswerWinsOverExhaustionAndDeadline) {
    RetryOptions o = Options();
    o.max_retries = 0;
    o.deadline = 1s;
    FakeRandom r;
    EXPECT_EQ(Decide(o, 1, Outcome::Response(201), 5s, r.Source()).reason, StopReason::kSucceeded);
    EXPECT_EQ(Decide(o, 1, Outcome::Response(400), 5s, r.Source()).reason,
              StopReason::kFinalResponse);
    EXPECT_EQ(Decide(o, 1, Outcome::Transport(TransportError::kProtocol), 5s, r.Source()).reason,
              StopReason::kNotRetryable);
    EXPECT_EQ(r.calls, 0);
}

}  // namespace
}  // namespace rollsafe::client
