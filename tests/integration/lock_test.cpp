// `--lock redis://`: ledger entries written under a Redis lock whose fencing token the store
// checks. A holder paused (SIGSTOP) past its lock's expiry must not write after its successor:
// its write is refused (or, if it notices first, never sent) and retried under a new lock; the
// account still adds up. Redis going away turns entries into 503 + Retry-After, and a Redis that
// comes back empty (its token counter lost) is caught up by the store's highest token.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/own_redis.hpp"
#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/temp_dir.hpp"
#include "testing/test_store.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

std::string EnvOrFail(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) {
        ADD_FAILURE() << name << " is not set: run eval \"$(scripts/services.sh start)\" "
                      << "(scripts/test.sh does)";
        return "";
    }
    return v;
}

Headers EntryHeaders(const std::string& key) {
    return {{"Content-Type", "application/json"}, {"Idempotency-Key", key}};
}

std::string EntryBody(long long amount, const std::string& memo) {
    return R"({"amount":)" + std::to_string(amount) + R"(,"memo":")" + memo + R"("})";
}

std::optional<long long> Int(const JsonValue& v, std::string_view k) {
    const auto n = v.GetNumber(k);
    if (!n || *n != std::floor(*n)) return std::nullopt;
    return static_cast<long long>(*n);
}

/// `rollsafe_account_lock_total{outcome="<outcome>"}` from the replica's /metrics (0 if absent).
long long LockEvents(const ServeProcess& p, const std::string& outcome) {
    const HttpResponse m = Fetch(p.AdminPort(), "GET", "/metrics");
    const std::string needle = "rollsafe_account_lock_total{outcome=\"" + outcome + "\"} ";
    const auto at = m.body.find(needle);
    if (at == std::string::npos) return 0;
    return std::atoll(m.body.c_str() + at + needle.size());
}

/// State letter of /proc/<pid>/stat ('T' when stopped), or '?'.
char ProcState(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(f, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '?';
}

/// Where the paused holder stops: right after taking the lock ("locked": it notices on waking
/// that the lock is too old and takes a new one), or right before its write goes to the store
/// ("writing": the store refuses the stale token).
/// With work (work_ms 300) the entry is claimed without the lock and runs reserve → work →
/// finalize; only the last phase takes the lock (RunOperation's path, which the recovery
/// worker shares); without work, claim and write are one commit under the lock.
class Fencing : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(Fencing, APausedLockHolderNeverWritesAfterItsSuccessorAndTheAccountAddsUp) {
    const std::string point = std::get<0>(GetParam());
    const int work_ms = std::get<1>(GetParam());
    TestStore schema("postgres");
    const std::string redis = EnvOrFail("ROLLSAFE_TEST_REDIS");
    ASSERT_TRUE(schema.ok() && !redis.empty());
    const std::string lock = redis + "/1";
    const std::string account =
        "fenced-" + point + std::to_string(work_ms) + "-" + std::to_string(::getpid());
    auto replica = [&](const std::string& name, bool paused) {
        ServeOptions o;
        o.store_url = schema.Url();
        o.threads = 1;
        o.extra_args = {"--name",     name, "--lock",        lock,
                        "--lock-ttl", "1s", "--drain-delay", "100ms"};
        if (paused) o.env = {{"ROLLSAFE_TEST_STOP_AFTER", point}};
        return std::make_unique<ServeProcess>(std::move(o));
    };
    auto a = replica("a", true);
    auto b = replica("b", false);

    // A takes the account's lock for its entry and freezes.
    HttpConnection to_a = HttpConnection::Connect(a->ApiPort());
    ASSERT_TRUE(to_a.IsOpen());
    ASSERT_EQ(to_a.SendRaw(BuildRequest(
                  "POST", "/accounts/" + account + "/entries", EntryHeaders("from-a"),
                  work_ms ? R"({"amount":10,"memo":"a","work_ms":)" + std::to_string(work_ms) + "}"
                          : EntryBody(10, "a"))),
              0);
    ASSERT_TRUE(a->WaitForLine("\"event\":\"test_stop\"", DeadlineIn(10s)))
        << "replica a never reached '" << point << "'";
    const Deadline stopped_by = DeadlineIn(5s);
    while (ProcState(a->Pid()) != 'T' && SteadyClock::now() < stopped_by)
        std::this_thread::sleep_for(5ms);
    ASSERT_EQ(ProcState(a->Pid()), 'T') << "replica a is not stopped";

    // Its lock expires (1 s); B takes the next one and writes first.
    const HttpResponse from_b = Fetch(b->ApiPort(), "POST", "/accounts/" + account + "/entries",
                                      EntryHeaders("from-b"), EntryBody(5, "b"), DeadlineIn(10s));
    ASSERT_EQ(from_b.status, 201) << from_b.Describe();
    const auto vb = ParseJson(from_b.body);
    ASSERT_TRUE(vb);
    EXPECT_EQ(Int(*vb, "seq"), 1);
    EXPECT_EQ(Int(*vb, "balance"), 5);

    // A wakes up holding a lock that is no longer its own.
    ASSERT_TRUE(a->Signal(SIGCONT));
    const HttpResponse from_a = to_a.ReadResponse(DeadlineIn(10s));
    ASSERT_EQ(from_a.status, 201) << from_a.Describe();
    const auto va = ParseJson(from_a.body);
    ASSERT_TRUE(va);
    EXPECT_EQ(Int(*va, "seq"), 2) << "the paused holder wrote before its successor";
    EXPECT_EQ(Int(*va, "balance"), 15);
    if (point == "writing") {
        EXPECT_EQ(LockEvents(*a, "fenced"), 1) << "the store did not refuse the stale token";
        const auto line = a->WaitForLine("\"event\":\"lock_fenced\"", DeadlineIn(1s));
        ASSERT_TRUE(line);
        EXPECT_NE(line->find("\"account\":\"" + account + "\""), std::string::npos) << *line;
    } else {
        EXPECT_EQ(LockEvents(*a, "expired"), 1) << "the stale lock was not noticed";
        EXPECT_EQ(LockEvents(*a, "fenced"), 0);
    }
    EXPECT_EQ(LockEvents(*a, "acquired"), 2);

    const HttpResponse acct = Fetch(b->ApiPort(), "GET", "/accounts/" + account);
    ASSERT_EQ(acct.status, 200) << acct.Describe();
    const auto v = ParseJson(acct.body);
    ASSERT_TRUE(v && v->Find("entries") && v->Find("entries")->IsArray());
    EXPECT_EQ(Int(*v, "balance"), 15);
    const auto& entries = v->Find("entries")->AsArray();
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].GetString("memo"), "b");
    EXPECT_EQ(entries[1].GetString("memo"), "a");

    for (auto* p : {a.get(), b.get()}) {
        ASSERT_TRUE(p->Signal(SIGTERM));
        EXPECT_EQ(p->WaitExit(DeadlineIn(10s)), 0);
    }
    const ProcessResult audit = RunAudit(schema.Url());
    ASSERT_TRUE(audit.exit_code);
    EXPECT_EQ(*audit.exit_code, 0) << audit.err;
}

INSTANTIATE_TEST_SUITE_P(PausePoint, Fencing,
                         ::testing::Combine(::testing::Values("locked", "writing"),
                                            ::testing::Values(0, 300)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, int>>& p) {
                             return std::get<0>(p.param) +
                                    (std::get<1>(p.param) ? "_with_work" : "");
                         });

// Redis killed: entries answer 503 + Retry-After, naming the lock service, and store nothing;
// resources (no lock) keep working and readiness stays 200 (every replica shares the one
// Redis: an unready fleet would refuse resources too). Redis back, empty: its counter restarts
// below the store's highest token; the first write is refused, the counter raised, the retry
// lands, and the same key's earlier 503 does not stop it.
TEST(LockOutage, RedisDownAnswers503ForEntriesOnlyAndAnEmptyRedisIsCaughtUpByTheStore) {
    TempDir dir;
    OwnRedis redis(dir.Path());
    ASSERT_TRUE(redis.Start()) << "cannot start redis-server";
    ServeOptions o;
    o.db_path = dir.File("t.db");
    o.extra_args = {"--lock", redis.Url(), "--lock-ttl", "1s", "--drain-delay", "100ms"};
    ServeProcess p(std::move(o));
    const std::string path = "/accounts/outage/entries";
    for (int i = 0; i < 3; ++i) {
        const HttpResponse r =
            Fetch(p.ApiPort(), "POST", path, EntryHeaders("before-" + std::to_string(i)),
                  EntryBody(1, "before"));
        ASSERT_EQ(r.status, 201) << r.Describe();
    }
    redis.Stop();
    const auto t0 = SteadyClock::now();
    const HttpResponse down =
        Fetch(p.ApiPort(), "POST", path, EntryHeaders("during"), EntryBody(7, "during"));
    EXPECT_LT(SteadyClock::now() - t0, 5s) << "an entry waited on a dead Redis";
    ASSERT_TRUE(IsProblem(down, 503)) << down.Describe();
    EXPECT_TRUE(down.Header("Retry-After")) << down.Describe();
    EXPECT_NE(down.body.find("lock service is unavailable"), std::string::npos) << down.body;
    EXPECT_EQ(LockEvents(p, "unavailable"), 1);
    const HttpResponse res =
        Fetch(p.ApiPort(), "POST", "/resources", JsonHeaders(), ResourceBody(R"({"x":1})"));
    EXPECT_EQ(res.status, 201) << res.Describe();
    EXPECT_EQ(Fetch(p.AdminPort(), "GET", "/readyz").status, 200);

    ASSERT_TRUE(redis.Start());
    // Right after a failure the lock service fails calls at once for a moment (no pile-up of
    // timeouts): a 503 + Retry-After is still a right answer then, and the client retries.
    HttpResponse retry;
    const Deadline retry_until = DeadlineIn(5s);
    do {
        retry = Fetch(p.ApiPort(), "POST", path, EntryHeaders("during"), EntryBody(7, "during"));
        if (retry.status == 503) std::this_thread::sleep_for(100ms);
    } while (retry.status == 503 && SteadyClock::now() < retry_until);
    ASSERT_EQ(retry.status, 201) << retry.Describe();
    const auto v = ParseJson(retry.body);
    ASSERT_TRUE(v);
    EXPECT_EQ(Int(*v, "seq"), 4);
    EXPECT_EQ(Int(*v, "balance"), 10);
    EXPECT_EQ(LockEvents(p, "fenced"), 1) << "token 1 from the empty Redis should be refused";
    const HttpResponse again =
        Fetch(p.ApiPort(), "POST", path, EntryHeaders("after"), EntryBody(1, "after"));
    EXPECT_EQ(again.status, 201) << again.Describe();
    EXPECT_EQ(LockEvents(p, "fenced"), 1) << "the counter was not raised past the store's";

    ASSERT_TRUE(p.Signal(SIGTERM));
    EXPECT_EQ(p.WaitExit(DeadlineIn(10s)), 0);
    const ProcessResult audit = RunAudit(dir.File("t.db"));
    ASSERT_TRUE(audit.exit_code);
    EXPECT_EQ(*audit.exit_code, 0) << audit.err;
}

// Lock settings that cannot work are refused at start with a message, exit 2 (usage) or 1
// (the lock service is unreachable).
TEST(LockFlags, ImpossibleCombinationsAndAnUnreachableRedisAreRefusedAtStart) {
    TempDir dir;
    const std::string sqlite = "sqlite:" + dir.File("t.db");
    struct Case {
        std::vector<std::string> args;
        int code;
        std::string message;
    };
    const std::vector<Case> cases = {
        {{"--store", sqlite, "--lock", "postgres"}, 2, "--lock postgres needs a PostgreSQL store"},
        {{"--store", "postgres://nobody@127.0.0.1:1/x", "--lock", "local"},
         2,
         "--lock local orders entries within one process only"},
        {{"--store", sqlite, "--lock", "zookeeper"}, 2, "--lock must be local, postgres or redis"},
        {{"--store", sqlite, "--lock", "redis://127.0.0.1:1"},
         1,
         "cannot reach the lock service: cannot connect to redis 127.0.0.1:1"},
        {{"--store", sqlite, "--lock", "redis://127.0.0.1:99999"}, 2, "port must be 1-65535"},
        {{"--store", sqlite, "--lock", "redis://127.0.0.1:1", "--lock-ttl", "50ms"},
         2,
         "--lock-ttl must be at least 100ms"},
    };
    for (const auto& c : cases) {
        std::vector<std::string> argv = {RollsafeBinary(), "serve",          "--listen",
                                         "127.0.0.1:0",    "--admin-listen", "127.0.0.1:0"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        const ProcessResult r = RunProcess(argv, 20s);
        ASSERT_TRUE(r.exit_code) << c.args.back() << ": did not exit";
        EXPECT_EQ(*r.exit_code, c.code) << c.args.back() << "\n" << r.err;
        EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args.back() << "\n" << r.err;
    }
}

}  // namespace
}  // namespace rollsafe::testing
