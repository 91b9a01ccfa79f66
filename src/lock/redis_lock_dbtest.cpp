// The Redis lock service against a real redis-server: the shared one in ROLLSAFE_TEST_REDIS
// (scripts/services.sh starts it; scripts/test.sh exports it), and for the outage case one
// this test starts and kills itself. Every test uses its own key prefix.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "rollsafe/lock/lock.hpp"
#include "testing/own_redis.hpp"
#include "testing/temp_dir.hpp"

namespace rollsafe::lock {
namespace {

using namespace std::chrono_literals;

std::string RedisUrl() {
    const char* u = std::getenv("ROLLSAFE_TEST_REDIS");
    return u && *u ? u : "";
}

RedisOptions Prefixed() {
    static std::atomic<int> n{0};
    RedisOptions o;
    // Unique across runs on the long-lived shared Redis (a pid may come back).
    o.key_prefix = "test:" + std::to_string(::getpid()) + ":" +
                   std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) +
                   ":" + std::to_string(n++) + ":";
    return o;
}

Attempt Acquire(LockService& l, const std::string& name, std::chrono::milliseconds ttl) {
    std::promise<Attempt> p;
    auto f = p.get_future();
    l.TryAcquire(name, ttl, [&p](Attempt a) { p.set_value(std::move(a)); });
    if (f.wait_for(10s) != std::future_status::ready) {
        ADD_FAILURE() << "no answer within 10 s";
        return {};
    }
    return f.get();
}

/// Retries while the service answers kUnavailable (at most 5 s), as the server's clients would.
Attempt AcquireOnceUp(LockService& l, const std::string& name) {
    Attempt a;
    const auto until = std::chrono::steady_clock::now() + 5s;
    do {
        a = Acquire(l, name, 10s);
        if (a.result == Attempt::Result::kUnavailable) std::this_thread::sleep_for(50ms);
    } while (a.result == Attempt::Result::kUnavailable && std::chrono::steady_clock::now() < until);
    return a;
}

bool Release(LockService& l, const std::string& name, const std::string& token) {
    std::promise<bool> p;
    auto f = p.get_future();
    l.Release(name, token, [&p](bool r) { p.set_value(r); });
    if (f.wait_for(10s) != std::future_status::ready) {
        ADD_FAILURE() << "no answer within 10 s";
        return false;
    }
    return f.get();
}

class RedisLockTest : public ::testing::Test {
  protected:
    void SetUp() override {
        url_ = RedisUrl();
        ASSERT_FALSE(url_.empty()) << "ROLLSAFE_TEST_REDIS is not set: run eval "
                                      "\"$(scripts/services.sh start)\" (scripts/test.sh does)";
        lock_ = OpenRedisLock(url_, Prefixed());
    }
    std::string url_;
    std::unique_ptr<LockService> lock_;
};

TEST_F(RedisLockTest, GrantsCarryRisingFencesAndALockIsExclusiveUntilReleased) {
    const Attempt a = Acquire(*lock_, "acct", 10s);
    ASSERT_EQ(a.result, Attempt::Result::kAcquired) << a.error;
    EXPECT_GT(a.fence, 0);
    EXPECT_EQ(Acquire(*lock_, "acct", 10s).result, Attempt::Result::kBusy);
    EXPECT_EQ(Acquire(*lock_, "other", 10s).result, Attempt::Result::kAcquired)
        << "locks of different names are independent";
    EXPECT_FALSE(Release(*lock_, "acct", "not-the-token"));
    EXPECT_EQ(Acquire(*lock_, "acct", 10s).result, Attempt::Result::kBusy)
        << "a wrong token must not release";
    EXPECT_TRUE(Release(*lock_, "acct", a.token));
    const Attempt b = Acquire(*lock_, "acct", 10s);
    ASSERT_EQ(b.result, Attempt::Result::kAcquired);
    EXPECT_GT(b.fence, a.fence);
    EXPECT_NE(b.token, a.token);
    EXPECT_TRUE(lock_->Healthy());
}

// The case fencing exists for: a holder outlives its lock, a successor takes it; the old
// holder can neither release the successor's lock nor get the successor's token.
TEST_F(RedisLockTest, AnExpiredLockGoesToTheNextCallerAndTheOldHolderCannotReleaseIt) {
    const Attempt old = Acquire(*lock_, "acct", 150ms);
    ASSERT_EQ(old.result, Attempt::Result::kAcquired);
    Attempt next;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
        std::this_thread::sleep_for(50ms);
        next = Acquire(*lock_, "acct", 10s);
    } while (next.result == Attempt::Result::kBusy && std::chrono::steady_clock::now() < deadline);
    ASSERT_EQ(next.result, Attempt::Result::kAcquired) << "the lock never expired";
    EXPECT_GT(next.fence, old.fence);
    EXPECT_FALSE(Release(*lock_, "acct", old.token));
    EXPECT_EQ(Acquire(*lock_, "acct", 10s).result, Attempt::Result::kBusy);
}

TEST_F(RedisLockTest, RaiseFenceLiftsLaterTokensAboveWhatAStoreHasSeenAndNeverLowersThem) {
    std::promise<bool> p;
    lock_->RaiseFence("acct", 1000, [&p](bool ok) { p.set_value(ok); });
    ASSERT_TRUE(p.get_future().get());
    const Attempt a = Acquire(*lock_, "acct", 10s);
    ASSERT_EQ(a.result, Attempt::Result::kAcquired);
    EXPECT_EQ(a.fence, 1001);
    ASSERT_TRUE(Release(*lock_, "acct", a.token));
    std::promise<bool> q;
    lock_->RaiseFence("acct", 5, [&q](bool ok) { q.set_value(ok); });
    ASSERT_TRUE(q.get_future().get());
    EXPECT_EQ(Acquire(*lock_, "acct", 10s).fence, 1002);
}

TEST(RedisLockUrl, BadUrlsAreRefusedNamingTheProblemAndADeadServerAtStartIsAnError) {
    for (const char* bad :
         {"http://127.0.0.1:6379", "redis://", "redis://127.0.0.1:0", "redis://127.0.0.1:99999",
          "redis://127.0.0.1:x", "redis://[::1", "redis://127.0.0.1:6379/abc"}) {
        EXPECT_THROW(OpenRedisLock(bad), std::invalid_argument) << bad;
    }
    RedisOptions o;
    o.connect_timeout = 300ms;
    try {
        OpenRedisLock("redis://127.0.0.1:1", o);
        ADD_FAILURE() << "opened a lock service on a closed port";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot connect to redis 127.0.0.1:1"),
                  std::string::npos)
            << e.what();
    }
}

// Redis killed: attempts fail fast as kUnavailable (never hang); Redis back, empty (no
// persistence): the next attempt reconnects, and its token restarts low — which is what
// RaiseFence is for.
/// A redis-server of the test's own (the shared one must keep running), and a lock service on
/// it with short timeouts.
class RedisLockOutage : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(redis.Start()) << "cannot start redis-server (apt-get install redis-server)";
        RedisOptions o = Prefixed();
        o.connect_timeout = 300ms;
        o.command_timeout = 300ms;
        lock = OpenRedisLock(redis.Url(), o);
    }
    rollsafe::testing::TempDir dir;
    rollsafe::testing::OwnRedis redis{dir.Path()};
    std::unique_ptr<LockService> lock;
};

TEST_F(RedisLockOutage, UnreachableRedisFailsAttemptsFastAndTheServiceReconnects) {
    const Attempt first = Acquire(*lock, "acct", 10s);
    ASSERT_EQ(first.result, Attempt::Result::kAcquired) << first.error;
    redis.Stop();
    const auto t0 = std::chrono::steady_clock::now();
    const Attempt down = Acquire(*lock, "acct", 10s);
    EXPECT_EQ(down.result, Attempt::Result::kUnavailable);
    EXPECT_FALSE(down.error.empty());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "an attempt must not hang";
    EXPECT_FALSE(lock->Healthy());
    // Right after a failure, calls fail at once for a moment instead of waiting out timeouts
    // again; a caller retries, as the server's clients do.
    Attempt fast = Acquire(*lock, "acct", 10s);
    EXPECT_EQ(fast.result, Attempt::Result::kUnavailable);
    ASSERT_TRUE(redis.Start());
    const Attempt back = AcquireOnceUp(*lock, "acct");
    ASSERT_EQ(back.result, Attempt::Result::kAcquired) << back.error;
    EXPECT_TRUE(lock->Healthy());
    EXPECT_EQ(back.fence, 1) << "a Redis without persistence restarts its counter";
    lock->Shutdown();
    Attempt after = Acquire(*lock, "acct", 10s);
    EXPECT_EQ(after.result, Attempt::Result::kUnavailable) << "calls after Shutdown fail";
}

// A Redis that stops answering (SIGSTOP: connections still accepted): every call queued behind
// the stuck ones is answered within about one command timeout, not one timeout each in turn.
TEST_F(RedisLockOutage, ASilentRedisAnswersEveryQueuedCallWithinAboutOneCommandTimeout) {
    ASSERT_EQ(Acquire(*lock, "warm", 10s).result, Attempt::Result::kAcquired);
    redis.Pause();
    constexpr int kCalls = 24;  // one timeout each, in turn on 2 threads, would take 3.6 s
    std::vector<std::promise<Attempt>> answers(kCalls);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i)
        lock->TryAcquire("acct-" + std::to_string(i), 500ms,
                         [&answers, i](Attempt a) { answers[i].set_value(std::move(a)); });
    for (int i = 0; i < kCalls; ++i) {
        auto f = answers[i].get_future();
        ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "call " << i << " hung";
        EXPECT_EQ(f.get().result, Attempt::Result::kUnavailable) << "call " << i;
    }
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(took, 2500ms) << "queued calls waited out timeouts one after another";
    EXPECT_FALSE(lock->Healthy());
    redis.Resume();
    const Attempt back = AcquireOnceUp(*lock, "after");
    EXPECT_EQ(back.result, Attempt::Result::kAcquired) << back.error;
    EXPECT_TRUE(lock->Healthy());
}

}  // namespace
}  // namespace rollsafe::lock
