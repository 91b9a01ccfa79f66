// The exactly-once journal behind every POST, seen from outside: replays of a completed key,
// concurrent requests with one key, key validation and principal scoping, a SIGKILL at each
// recovery point followed by a restart on the same store, and the shutdown deadline handing
// a running operation to another replica. Each case ends with `rollsafe audit` on the store.

#include <signal.h>

#include <chrono>
#include <iostream>
#include <latch>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"
#include "testing/test_store.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// The journal's acceptance cases run on both stores: SQLite and PostgreSQL (a fresh schema of
/// ROLLSAFE_TEST_PG per test).
class JournalOnStore : public ::testing::TestWithParam<std::string> {};

/// Headers for a JSON POST with exactly these extra headers (no automatic key).
Headers PostHeaders(std::initializer_list<std::pair<std::string, std::string>> extra) {
    Headers h{{"Content-Type", "application/json"}};
    for (const auto& e : extra) h.push_back(e);
    return h;
}

/// `r` is a complete 201 for a resource, with `Location: /resources/<id>`; returns the id.
std::optional<std::string> CreatedId(const HttpResponse& r) {
    if (!r.complete || r.status != 201) return std::nullopt;
    const auto res = ParseResource(r);
    const auto location = r.Header("Location");
    if (!res || !location || *location != "/resources/" + res->id) return std::nullopt;
    return res->id;
}

bool IsReplayed(const HttpResponse& r) {
    const auto h = r.Header("Idempotent-Replayed");
    return h && *h == "true";
}

/// Retry-After is present and is delta-seconds >= 1.
::testing::AssertionResult HasRetryAfter(const HttpResponse& r) {
    const auto v = r.Header("Retry-After");
    if (!v || v->empty() || v->find_first_not_of("0123456789") != std::string::npos ||
        std::stol(*v) < 1)
        return ::testing::AssertionFailure()
               << "expected Retry-After with delta-seconds >= 1: " << r.Describe();
    return ::testing::AssertionSuccess();
}

/// `row` split at the first `n - 1` '|' (the last field keeps any further '|').
std::vector<std::string> SplitRow(const std::string& row, std::size_t n) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (out.size() + 1 < n) {
        const auto bar = row.find('|', start);
        if (bar == std::string::npos) break;
        out.push_back(row.substr(start, bar - start));
        start = bar + 1;
    }
    out.push_back(row.substr(start));
    return out;
}

std::string ResourceCountForKey(const std::string& db, const std::string& key) {
    return SqliteOneRow(db,
                        "SELECT count(*) FROM resources WHERE idempotency_key = " + SqlQuote(key));
}

/// SIGTERM, then exit 0 within `bound`.
void StopGracefully(ServeProcess& server, SteadyClock::duration bound) {
    ASSERT_TRUE(server.Signal(SIGTERM));
    const auto code = server.WaitExit(DeadlineIn(bound));
    ASSERT_TRUE(code) << "no exit within " << Ms(bound) << " ms of SIGTERM";
    EXPECT_EQ(*code, 0);
}

/// `rollsafe audit` finds nothing wrong with the store at `db`.
void ExpectAuditClean(const std::string& db) {
    const ProcessResult audit = RunAudit(db);
    ASSERT_EQ(audit.spawn_errno, 0);
    ASSERT_TRUE(audit.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*audit.exit_code, 0) << "rollsafe audit found problems\nstderr:\n"
                                   << audit.err << "stdout:\n"
                                   << audit.out;
}

/// Sends `body` with `key` from 100 threads at once, each on its own connection, and checks
/// the outcome: every answer is 201 (one original, the rest replays, all of one resource) or
/// 409 + Retry-After, and one resource row exists. A later retry replays that resource.
void ExpectOneEffectForConcurrentKey(ServeProcess& server, const std::string& db,
                                     const std::string& key, const std::string& body) {
    constexpr int kClients = 100;
    std::vector<HttpConnection> conns;
    for (int i = 0; i < kClients; ++i) {
        conns.push_back(HttpConnection::Connect(server.ApiPort()));
        ASSERT_TRUE(conns.back().IsOpen())
            << "connect " << i << ": errno " << conns.back().ConnectError();
    }
    std::vector<HttpResponse> answers(kClients);
    {
        std::latch start(kClients);
        std::vector<std::jthread> threads;
        for (int i = 0; i < kClients; ++i) {
            threads.emplace_back([&, i] {
                start.arrive_and_wait();
                answers[i] =
                    conns[i].Request("POST", "/resources", PostHeaders({{"Idempotency-Key", key}}),
                                     body, DeadlineIn(kMaxTestWait));
            });
        }
    }

    int created = 0, originals = 0, conflicts = 0;
    std::set<std::string> ids;
    std::set<std::string> bodies;
    for (int i = 0; i < kClients; ++i) {
        const HttpResponse& r = answers[i];
        if (r.complete && r.status == 201) {
            const auto rid = CreatedId(r);
            EXPECT_TRUE(rid) << "client " << i << ": " << r.Describe();
            if (rid) ids.insert(*rid);
            bodies.insert(r.body);
            ++created;
            if (!IsReplayed(r)) ++originals;
        } else if (r.complete && r.status == 409) {
            EXPECT_TRUE(IsProblem(r, 409)) << "client " << i;
            EXPECT_TRUE(HasRetryAfter(r)) << "client " << i;
            ++conflicts;
        } else {
            ADD_FAILURE() << "client " << i << ": expected 201 or 409, got " << r.Describe();
        }
    }
    std::cerr << kClients << " concurrent requests with key " << key << ": " << created
              << " answered 201 (" << originals << " original), " << conflicts << " answered 409\n";
    EXPECT_GE(created, 1) << "no client got the 201";
    EXPECT_EQ(originals, 1) << "exactly one answer is the original execution (" << created
                            << " 201s, " << conflicts << " 409s)";
    EXPECT_EQ(ids.size(), 1u) << "201s name different resources";
    EXPECT_EQ(bodies.size(), 1u) << "201s differ in their bodies";
    EXPECT_EQ(ResourceCountForKey(db, key), "1");

    // Whoever retries after a 409 gets the one result.
    const HttpResponse late = Fetch(server.ApiPort(), "POST", "/resources",
                                    PostHeaders({{"Idempotency-Key", key}}), body);
    const auto late_id = CreatedId(late);
    ASSERT_TRUE(late_id) << late.Describe();
    EXPECT_TRUE(IsReplayed(late)) << late.Describe();
    if (!ids.empty()) {
        EXPECT_EQ(*late_id, *ids.begin());
    }
    EXPECT_EQ(ResourceCountForKey(db, key), "1");
}

// ---- 1. replay, and one effect under 100 concurrent requests with one key ----

TEST_P(JournalOnStore, SameKeyReplaysStoredResponseAndHundredConcurrentRequestsCreateOneResource) {
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    ServeProcess server(store.Replica({"--drain-delay", "100ms"}));
    const std::string body = ResourceBody(R"({"order":1})");

    const HttpResponse first = Fetch(server.ApiPort(), "POST", "/resources",
                                     PostHeaders({{"Idempotency-Key", "replay-1"}}), body);
    const auto id = CreatedId(first);
    ASSERT_TRUE(id) << first.Describe();
    EXPECT_FALSE(first.Header("Idempotent-Replayed")) << first.Describe();

    const HttpResponse second = Fetch(server.ApiPort(), "POST", "/resources",
                                      PostHeaders({{"Idempotency-Key", "replay-1"}}), body);
    ASSERT_EQ(second.status, 201) << second.Describe();
    EXPECT_TRUE(IsReplayed(second)) << second.Describe();
    EXPECT_EQ(second.body, first.body) << "a replay must be the stored body byte for byte";
    EXPECT_EQ(second.Header("Location"), first.Header("Location"));
    EXPECT_EQ(second.Header("Content-Type"), first.Header("Content-Type"));
    EXPECT_EQ(ResourceCountForKey(store.Url(), "replay-1"), "1");

    // 100 clients, each on its own connection, send one key at the same moment: once with
    // work (300 ms: the first is still running while the others arrive, so they see it in
    // progress, 409, or completed, replay), once without (claim, effect and completion in one
    // commit, so the others replay).
    for (const long long work_ms : {300LL, 0LL}) {
        SCOPED_TRACE("work_ms " + std::to_string(work_ms));
        ExpectOneEffectForConcurrentKey(server, store.Url(),
                                        "concurrent-" + std::to_string(work_ms),
                                        ResourceBody(R"({"order":2})", work_ms));
    }

    StopGracefully(server, 5s);
    ExpectAuditClean(store.Url());
}

// ---- 2. mismatch, key validation, principal scoping ----

TEST_P(JournalOnStore, RejectsBadKeysAndChangedRequestsAndScopesKeysByPrincipal) {
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    ServeProcess server(store.Replica({"--drain-delay", "100ms"}));
    const std::uint16_t port = server.ApiPort();

    const std::string body = ResourceBody(R"({"v":"original"})");
    const HttpResponse original =
        Fetch(port, "POST", "/resources", PostHeaders({{"Idempotency-Key", "mm-1"}}), body);
    const auto original_id = CreatedId(original);
    ASSERT_TRUE(original_id) << original.Describe();

    // Same key, different body; and same key, different path (a valid ledger entry).
    const HttpResponse other_body =
        Fetch(port, "POST", "/resources", PostHeaders({{"Idempotency-Key", "mm-1"}}),
              ResourceBody(R"({"v":"changed"})"));
    EXPECT_TRUE(IsProblem(other_body, 422));
    EXPECT_FALSE(other_body.Header("Idempotent-Replayed")) << other_body.Describe();
    const HttpResponse other_path =
        Fetch(port, "POST", "/accounts/mm/entries", PostHeaders({{"Idempotency-Key", "mm-1"}}),
              R"({"amount":5})");
    EXPECT_TRUE(IsProblem(other_path, 422));
    // The rejected requests changed nothing: the original still replays.
    const HttpResponse replay =
        Fetch(port, "POST", "/resources", PostHeaders({{"Idempotency-Key", "mm-1"}}), body);
    EXPECT_EQ(CreatedId(replay), original_id) << replay.Describe();
    EXPECT_TRUE(IsReplayed(replay)) << replay.Describe();
    EXPECT_EQ(replay.body, original.body);
    EXPECT_EQ(ResourceCountForKey(store.Url(), "mm-1"), "1");
    EXPECT_EQ(SqliteOneRow(store.Url(), "SELECT count(*) FROM entries"), "0");

    // Keys: missing, empty, 256 characters, a byte outside ASCII, a space, a control character.
    const std::string journal_before = SqliteOneRow(store.Url(), "SELECT count(*) FROM journal");
    struct BadKey {
        const char* what;
        std::optional<std::string> value;
    };
    const std::vector<BadKey> bad = {
        {"missing", std::nullopt},
        {"empty", ""},
        {"256 characters", std::string(256, 'k')},
        {"byte 0x80",
         "abc\x80"
         "def"},
        {"byte 0xFF", "\xFF"},
        {"inner space", "a b"},
        {"DEL", "a\x7f"},
        {"quoted empty", "\"\""},
    };
    for (const auto& b : bad) {
        Headers h = PostHeaders({});
        if (b.value) h.emplace_back("Idempotency-Key", *b.value);
        const HttpResponse r = Fetch(port, "POST", "/resources", h, ResourceBody("1"));
        EXPECT_TRUE(IsProblem(r, 400)) << "key " << b.what;
    }
    EXPECT_EQ(SqliteOneRow(store.Url(), "SELECT count(*) FROM journal"), journal_before)
        << "a rejected key must not reach the journal";
    // The limits themselves are accepted: 255 characters, and the whole visible range.
    const std::string longest(255, 'k');
    EXPECT_TRUE(CreatedId(Fetch(port, "POST", "/resources",
                                PostHeaders({{"Idempotency-Key", longest}}), ResourceBody("2"))));
    EXPECT_TRUE(
        CreatedId(Fetch(port, "POST", "/resources", PostHeaders({{"Idempotency-Key", "!~\"x{}|"}}),
                        ResourceBody("3"))));

    // One key under two tokens (and none): three principals, three resources, and nobody gets
    // another's answer, although the requests are identical.
    const std::string shared_body = ResourceBody(R"({"v":"shared"})");
    auto post_as = [&](std::optional<std::string> token) {
        Headers h = PostHeaders({{"Idempotency-Key", "shared-key"}});
        if (token) h.emplace_back("Authorization", "Bearer " + *token);
        return Fetch(port, "POST", "/resources", h, shared_body);
    };
    const HttpResponse alice = post_as("token-alice");
    const HttpResponse bob = post_as("token-bob");
    const HttpResponse anonymous = post_as(std::nullopt);
    const auto alice_id = CreatedId(alice);
    const auto bob_id = CreatedId(bob);
    const auto anonymous_id = CreatedId(anonymous);
    ASSERT_TRUE(alice_id) << alice.Describe();
    ASSERT_TRUE(bob_id) << bob.Describe();
    ASSERT_TRUE(anonymous_id) << anonymous.Describe();
    EXPECT_FALSE(IsReplayed(bob)) << "bob was answered with alice's response: " << bob.Describe();
    EXPECT_FALSE(IsReplayed(anonymous)) << anonymous.Describe();
    EXPECT_NE(*bob_id, *alice_id);
    EXPECT_NE(bob.body, alice.body);
    EXPECT_NE(*anonymous_id, *alice_id);
    EXPECT_NE(*anonymous_id, *bob_id);
    // Each principal's retry replays its own response.
    const HttpResponse alice_again = post_as("token-alice");
    const HttpResponse bob_again = post_as("token-bob");
    EXPECT_TRUE(IsReplayed(alice_again) && alice_again.body == alice.body)
        << alice_again.Describe();
    EXPECT_TRUE(IsReplayed(bob_again) && bob_again.body == bob.body) << bob_again.Describe();
    EXPECT_EQ(SqliteOneRow(store.Url(),
                           "SELECT count(*), count(DISTINCT principal) FROM resources"
                           " WHERE idempotency_key = 'shared-key'"),
              "3|3");
    EXPECT_EQ(
        SqliteOneRow(store.Url(), "SELECT count(*) FROM journal WHERE principal LIKE '%token-%'"),
        "0")
        << "the credential itself must not be stored as the principal";

    StopGracefully(server, 5s);
    ExpectAuditClean(store.Url());
}

// ---- 3. SIGKILL right after each recovery point, then a restart on the same store ----

struct CrashCase {
    const char* point;
    long long work_ms;
};

void PrintTo(const CrashCase& c, std::ostream* os) { *os << c.point << ", work_ms " << c.work_ms; }

class JournalCrash : public ::testing::TestWithParam<std::tuple<CrashCase, std::string>> {};

constexpr std::chrono::milliseconds kCrashLease{1000};
constexpr std::chrono::milliseconds kCrashRecoveryInterval{200};

TEST_P(JournalCrash, SigkillAfterRecoveryPointCompletesExactlyOnceOnRestart) {
    const CrashCase c = std::get<0>(GetParam());
    const std::string point = c.point;
    const std::string key = std::string("crash-") + c.point;
    const std::string body = ResourceBody(R"({"crash":")" + point + R"("})", c.work_ms);
    const std::string where = " WHERE principal = 'anonymous' AND key = " + SqlQuote(key);
    const std::vector<std::string> timing = {"--lease",
                                             std::to_string(kCrashLease.count()) + "ms",
                                             "--recovery-interval",
                                             std::to_string(kCrashRecoveryInterval.count()) + "ms",
                                             "--drain-delay",
                                             "100ms"};
    TestStore store(std::get<1>(GetParam()));
    ASSERT_TRUE(store.ok());
    const std::string db = store.Url();

    // Inject: the first replica kills itself right after `point` commits.
    std::string reserved_id;
    {
        std::vector<std::string> args = timing;
        args.insert(args.end(), {"--name", "crashing"});
        ServeProcess crashing(store.Replica(args, {{"ROLLSAFE_TEST_CRASH_AFTER", point}}));
        HttpConnection post = HttpConnection::Connect(crashing.ApiPort());
        ASSERT_TRUE(post.IsOpen());
        ASSERT_EQ(
            post.SendRequest("POST", "/resources", PostHeaders({{"Idempotency-Key", key}}), body),
            0);
        // Failure mode: the process dies by SIGKILL and the client gets no answer.
        const HttpResponse lost =
            post.ReadResponse(DeadlineIn(std::chrono::milliseconds(c.work_ms) + 10s));
        EXPECT_FALSE(lost.complete) << "the crashed request was answered: " << lost.Describe();
        const auto code = crashing.WaitExit(DeadlineIn(5s));
        ASSERT_TRUE(code) << "the replica did not die after " << point;
        EXPECT_EQ(*code, 128 + SIGKILL);
        const auto crash = crashing.WaitForEvent("test_crash", DeadlineIn(1s));
        ASSERT_TRUE(crash) << "no test_crash line";
        EXPECT_EQ(crash->GetString("after"), point) << crash->Dump();
    }

    // What the crash left on disk.
    const std::string resources_before = ResourceCountForKey(db, key);
    const auto row = SplitRow(
        SqliteOneRow(
            db, "SELECT state, recovery_point, response_body, recovery_state FROM journal" + where),
        4);
    ASSERT_EQ(row.size(), 4u) << "journal row: " << row[0];
    std::string stored_body;  // the completed response, for the `completed` point
    if (point == "completed") {
        EXPECT_EQ(row[0], "completed");
        EXPECT_EQ(resources_before, "1");
        stored_body = row[2];
    } else {
        EXPECT_EQ(row[0], "in_progress");
        EXPECT_EQ(row[1], point);
        EXPECT_EQ(resources_before, "0") << "the effect was stored before finalize";
        const auto state = ParseJson(row[3]);
        ASSERT_TRUE(state && state->GetString("id")) << "recovery_state: " << row[3];
        reserved_id = *state->GetString("id");
    }

    // Restore: a replica without the fault on the same file.
    std::vector<std::string> args = timing;
    args.insert(args.end(), {"--name", "restarted"});
    ServeProcess restarted(store.Replica(args));
    const auto t0 = SteadyClock::now();
    const auto bound =
        kCrashLease + kCrashRecoveryInterval + std::chrono::milliseconds(c.work_ms) + 3s;
    std::string state;
    ASSERT_TRUE(
        SqlitePoll(db, "SELECT state FROM journal" + where, "completed", t0 + bound, &state))
        << "not completed within " << Ms(bound) << " ms of the restart; state: " << state;
    EXPECT_EQ(ResourceCountForKey(db, key), "1") << "the operation took effect more than once";
    if (point != "completed") {
        const auto takeover = restarted.WaitForEvent("recovery_takeover", DeadlineIn(1s));
        ASSERT_TRUE(takeover) << "the recovery worker did not take the operation over";
        EXPECT_EQ(takeover->GetString("key"), key);
        EXPECT_EQ(takeover->GetString("recovery_point"), point) << takeover->Dump();
        const auto done = restarted.WaitForEvent("recovery_done", DeadlineIn(1s));
        ASSERT_TRUE(done);
        EXPECT_EQ(done->GetNumber("status"), 201.0) << done->Dump();
        const std::string owner = SqliteOneRow(
            db, "SELECT owner FROM resources WHERE idempotency_key = " + SqlQuote(key));
        EXPECT_EQ(owner, "restarted") << "the effect should be the recovering replica's";
    }

    // The client's retry is answered from the journal with the one effect.
    const HttpResponse retry = Fetch(restarted.ApiPort(), "POST", "/resources",
                                     PostHeaders({{"Idempotency-Key", key}}), body);
    const auto id = CreatedId(retry);
    ASSERT_TRUE(id) << retry.Describe();
    EXPECT_TRUE(IsReplayed(retry)) << retry.Describe();
    if (point == "completed") {
        EXPECT_EQ(retry.body, stored_body) << "the replay is not the response stored before";
    } else {
        EXPECT_EQ(*id, reserved_id) << "the resumed operation created a different id";
    }
    EXPECT_EQ(SqliteOneRow(db, "SELECT id FROM resources WHERE idempotency_key = " + SqlQuote(key)),
              *id);

    StopGracefully(restarted, 5s);
    EXPECT_EQ(ResourceCountForKey(db, key), "1");
    ExpectAuditClean(db);
}

INSTANTIATE_TEST_SUITE_P(RecoveryPoints, JournalCrash,
                         ::testing::Combine(::testing::Values(CrashCase{"reserved", 3000},
                                                              CrashCase{"worked", 1500},
                                                              CrashCase{"completed", 1500}),
                                            ::testing::Values("sqlite", "postgres")),
                         [](const ::testing::TestParamInfo<std::tuple<CrashCase, std::string>>& p) {
                             return std::string(std::get<0>(p.param).point) + "_" +
                                    std::get<1>(p.param);
                         });

// ---- 4. the shutdown deadline hands a running operation to another replica ----

TEST_P(JournalOnStore, ShutdownDeadlineReleasesLeaseSoRetryOnOtherReplicaTakesOverAtOnce) {
    constexpr long long kWorkMs = 10'000;  // far beyond A's shutdown deadline
    constexpr auto kLease = 10s;           // the default; the retry must not wait for it
    TestStore store(GetParam());
    ASSERT_TRUE(store.ok());
    const std::string db = store.Url();
    const std::string key = "deadline-handover";
    const std::string body = ResourceBody(R"({"handover":true})", kWorkMs);
    const std::string where = " WHERE principal = 'anonymous' AND key = " + SqlQuote(key);
    // No recovery scans during the test (1 h): the client's retry is what takes the released
    // operation over, instead of racing B's recovery worker for it.
    ServeProcess a(store.Replica({"--name", "A", "--drain-delay", "100ms", "--shutdown-timeout",
                                  "1s", "--recovery-interval", "1h"}));
    ServeProcess b(
        store.Replica({"--name", "B", "--drain-delay", "100ms", "--recovery-interval", "1h"}));

    HttpConnection post = HttpConnection::Connect(a.ApiPort());
    ASSERT_TRUE(post.IsOpen());
    ASSERT_EQ(post.SendRequest("POST", "/resources", PostHeaders({{"Idempotency-Key", key}}), body),
              0);
    std::string seen;
    ASSERT_TRUE(SqlitePoll(db,
                           "SELECT state, recovery_point, substr(owner, 1, 2) FROM journal" + where,
                           "in_progress|reserved|A/", DeadlineIn(5s), &seen))
        << "A never started the operation: " << seen;

    // Inject: SIGTERM; at the deadline (100 ms + 1 s) the running POST is cancelled.
    const auto t0 = SteadyClock::now();
    ASSERT_TRUE(a.Signal(SIGTERM));
    const HttpResponse cancelled = post.ReadResponse(t0 + 5s);
    ASSERT_TRUE(IsProblem(cancelled, 503));
    EXPECT_TRUE(HasRetryAfter(cancelled));
    EXPECT_LT(MsBetween(t0, cancelled.received_at), 3000.0) << "the deadline came late";

    // The lease was given back at once, not left to run out.
    const auto released =
        SplitRow(SqliteOneRow(db, "SELECT state, owner, lease_until_ms FROM journal" + where), 3);
    const long long now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    ASSERT_EQ(released.size(), 3u) << released[0];
    EXPECT_EQ(released[0], "in_progress");
    EXPECT_EQ(released[1], "") << "after the 503 the operation should have no owner";
    EXPECT_LE(std::stoll(released[2]), now_ms) << "after the 503 the lease should have ended";

    // Restore: retry at once on B. B takes the operation over within moments instead of
    // answering 409 until A's 10 s lease runs out, then does the work itself (all of it: the
    // work restarts from the "reserved" recovery point) and answers 201.
    const auto t1 = SteadyClock::now();
    HttpConnection retry_conn = HttpConnection::Connect(b.ApiPort());
    ASSERT_TRUE(retry_conn.IsOpen());
    ASSERT_EQ(
        retry_conn.SendRequest("POST", "/resources", PostHeaders({{"Idempotency-Key", key}}), body),
        0);
    ASSERT_TRUE(SqlitePoll(db, "SELECT state, substr(owner, 1, 2) FROM journal" + where,
                           "in_progress|B/", t1 + 5s, &seen))
        << "B did not take the operation over within 5 s: " << seen;
    const double takeover_ms = MsBetween(t1, SteadyClock::now());
    const HttpResponse retry =
        retry_conn.ReadResponse(t1 + std::chrono::milliseconds(kWorkMs) + kLease);
    const double retry_ms = MsBetween(t1, SteadyClock::now());
    std::cerr << "retry on B: taken over after " << takeover_ms << " ms, answered after "
              << retry_ms << " ms\n";
    const auto id = CreatedId(retry);
    ASSERT_TRUE(id) << "the retry on B was not answered 201 (a 409 means it saw A's lease): "
                    << retry.Describe();
    EXPECT_FALSE(IsReplayed(retry)) << "B should have run the operation, not replayed it";
    EXPECT_LT(retry_ms, static_cast<double>(kWorkMs) + 5000)
        << "the retry waited for more than the work itself (for the lease?)";
    EXPECT_EQ(
        SqliteOneRow(db, "SELECT owner FROM resources WHERE idempotency_key = " + SqlQuote(key)),
        "B")
        << "the work should have been done on B";
    EXPECT_EQ(SqliteOneRow(db, "SELECT state, substr(owner, 1, 2) FROM journal" + where),
              "completed|B/");
    EXPECT_EQ(ResourceCountForKey(db, key), "1");

    const auto a_code = a.WaitExit(DeadlineIn(2s));
    ASSERT_TRUE(a_code) << "A did not exit after its deadline";
    EXPECT_EQ(*a_code, 0);
    StopGracefully(b, 5s);
    ExpectAuditClean(db);
}

INSTANTIATE_TEST_SUITE_P(Stores, JournalOnStore, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace rollsafe::testing
