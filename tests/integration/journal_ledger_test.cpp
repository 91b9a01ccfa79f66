// The ledger under load across replicas: 8 clients post 1,600 entries to three replicas that
// share one store, retrying with the same key on connection errors, 409 and 503 and now and
// then re-sending an acknowledged request, while one replica is SIGKILLed mid-run. Afterwards
// every account equals the sum of what was acknowledged, each exactly once.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
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

constexpr int kReplicas = 3;
constexpr int kClients = 8;
constexpr int kEntriesPerClient = 200;
constexpr int kTotalEntries = kClients * kEntriesPerClient;
const std::vector<std::string> kAccounts = {"acct-a", "acct-b", "acct-c", "acct-d"};
constexpr std::uint32_t kSeed = 20'260'101;  // per client: kSeed + client index

/// One entry is sure to be in flight on replica 0 when it is killed: client 0 sends its entry
/// kSentinelIndex there with a long work_ms, and the kill waits until it is running. Its
/// retries then meet the dead replica's live lease (409) until a survivor takes it over.
constexpr int kSentinelIndex = 66;  // about a third into the run
constexpr long long kSentinelWorkMs = 2000;
const std::string kSentinelKey = "ledger-c0-" + std::to_string(kSentinelIndex);

/// The whole run (clients and the kill) must be over by then; the test stays under ~40 s.
constexpr auto kRunBudget = 30s;
/// One request, all its retries included.
constexpr auto kRequestBudget = 15s;
/// One attempt: the longest work_ms is the sentinel's 2 s; anything slower is a stuck replica.
constexpr auto kAttemptTimeout = 5s;
constexpr int kMaxAttempts = 60;

std::optional<long long> GetInt(const JsonValue& v, std::string_view key) {
    const auto n = v.GetNumber(key);
    if (!n || *n != std::floor(*n)) return std::nullopt;
    return static_cast<long long>(*n);
}

/// One request a client made and what it was finally told.
struct Ack {
    std::string key;
    std::string account;
    long long amount = 0;
    std::string memo;
    std::string path;
    std::string request_body;
    std::string body;  ///< the 201 body acknowledged first
    std::string entry_id;
    long long seq = 0;
    long long balance = 0;
};

/// What a client saw, for the assertions after the run.
struct ClientLog {
    std::vector<Ack> acks;
    std::vector<std::string> failures;  ///< requests never acknowledged, or wrong answers
    int retries = 0;                    ///< attempts after the first
    int replays_checked = 0;            ///< acknowledged requests sent again on purpose
    int conflicts = 0;                  ///< 409 answers
    int unavailable = 0;                ///< 503 answers
    int refused = 0;                    ///< connect refused (a dead replica's port)
    int lost = 0;                       ///< sent, but no complete answer came back
};

/// Sends `body` with `key` until a 201 comes, rotating to the next replica after a connection
/// error or a 503 and backing off (10 ms … 200 ms) after anything retryable. Returns the 201,
/// or an incomplete/other response once the budget or the attempts are used up, or at once on
/// a status that must not be retried (the caller reports it).
HttpResponse PostUntilCreated(const std::vector<std::uint16_t>& ports, std::size_t& replica,
                              const std::string& path, const std::string& key,
                              const std::string& body, Deadline deadline, ClientLog& log) {
    HttpResponse r;
    for (int attempt = 0; attempt < kMaxAttempts && SteadyClock::now() < deadline; ++attempt) {
        if (attempt > 0) {
            ++log.retries;
            std::this_thread::sleep_for(std::min(10ms * attempt, 200ms));
        }
        r = Fetch(ports[replica], "POST", path,
                  {{"Content-Type", "application/json"}, {"Idempotency-Key", key}}, body,
                  std::min(deadline, DeadlineIn(kAttemptTimeout)));
        if (!r.complete) {
            ++(r.error == ECONNREFUSED ? log.refused : log.lost);
            replica = (replica + 1) % ports.size();
            continue;
        }
        if (r.status == 201) return r;
        if (r.status == 409) {
            ++log.conflicts;
            continue;
        }
        if (r.status == 503) {
            ++log.unavailable;
            replica = (replica + 1) % ports.size();
            continue;
        }
        return r;
    }
    return r;
}

void RunClient(int index, const std::vector<std::uint16_t>& ports, Deadline run_deadline,
               std::atomic<int>& acknowledged, ClientLog& log) {
    std::mt19937 rng(kSeed + static_cast<std::uint32_t>(index));
    std::size_t replica = static_cast<std::size_t>(index) % ports.size();
    for (int i = 0; i < kEntriesPerClient; ++i) {
        Ack a;
        a.key = "ledger-c" + std::to_string(index) + "-" + std::to_string(i);
        a.account = kAccounts[rng() % kAccounts.size()];
        do {
            a.amount = std::uniform_int_distribution<long long>(-500, 1000)(rng);
        } while (a.amount == 0);
        a.memo = "client " + std::to_string(index) + " entry " + std::to_string(i);
        long long work_ms = rng() % 16 == 0 ? 10 + rng() % 31 : 0;
        if (a.key == kSentinelKey) {
            work_ms = kSentinelWorkMs;
            replica = 0;
        }
        a.path = "/accounts/" + a.account + "/entries";
        a.request_body = "{\"amount\":" + std::to_string(a.amount) + ",\"memo\":\"" + a.memo +
                         "\",\"work_ms\":" + std::to_string(work_ms) + "}";
        const Deadline deadline = std::min(run_deadline, DeadlineIn(kRequestBudget));

        const HttpResponse r =
            PostUntilCreated(ports, replica, a.path, a.key, a.request_body, deadline, log);
        if (!r.complete || r.status != 201) {
            log.failures.push_back(a.key + " never acknowledged; last answer: " + r.Describe());
            if (SteadyClock::now() >= run_deadline) return;
            continue;
        }
        const auto v = ParseJson(r.body);
        const auto entry_id = v ? v->GetString("entry_id") : std::nullopt;
        const auto seq = v ? GetInt(*v, "seq") : std::nullopt;
        const auto balance = v ? GetInt(*v, "balance") : std::nullopt;
        if (!entry_id || !seq || !balance || v->GetString("account") != a.account ||
            GetInt(*v, "amount") != a.amount) {
            log.failures.push_back(a.key + ": 201 body is not this entry: " + r.Describe());
            continue;
        }
        a.body = r.body;
        a.entry_id = *entry_id;
        a.seq = *seq;
        a.balance = *balance;
        log.acks.push_back(std::move(a));
        acknowledged.fetch_add(1);

        // A client that lost track re-sends an acknowledged request (this one or an earlier
        // one) to any replica: the answer is the stored one, replayed.
        if (rng() % 10 == 0) {
            const Ack& old = log.acks[rng() % log.acks.size()];
            std::size_t any_replica = rng() % ports.size();
            const HttpResponse again =
                PostUntilCreated(ports, any_replica, old.path, old.key, old.request_body,
                                 std::min(run_deadline, DeadlineIn(kRequestBudget)), log);
            if (!again.complete || again.status != 201 ||
                again.Header("Idempotent-Replayed") != "true" || again.body != old.body)
                log.failures.push_back(old.key +
                                       ": re-sent acknowledged request was not replayed byte for "
                                       "byte: " +
                                       again.Describe() + "\nfirst answer: " + old.body);
            ++log.replays_checked;
        }
    }
}

/// The scenario, on the store `db`: an SQLite file, or a `postgres://` URL (then the replicas
/// share it with `--store`, and the checks query it with psql). `lock_args` are added to every
/// replica's command line (`--lock ...`).
void RunLedgerScenario(const std::string& db, const std::vector<std::string>& lock_args = {}) {
    const bool postgres = db.starts_with("postgres://");
    std::vector<std::unique_ptr<ServeProcess>> replicas;
    std::vector<std::uint16_t> ports;
    for (int i = 0; i < kReplicas; ++i) {
        ServeOptions o;
        o.extra_args = {"--name", "r" + std::to_string(i), "--lease", "1s", "--recovery-interval",
                        "200ms",  "--drain-delay",         "100ms"};
        o.extra_args.insert(o.extra_args.end(), lock_args.begin(), lock_args.end());
        if (postgres)
            o.store_url = db;
        else
            o.db_path = db;
        o.threads = 1;  // three replicas and eight clients share two cores
        replicas.push_back(std::make_unique<ServeProcess>(std::move(o)));
        ports.push_back(replicas.back()->ApiPort());
    }

    const auto start = SteadyClock::now();
    const Deadline run_deadline = start + kRunBudget;
    std::atomic<int> acknowledged{0};
    std::vector<ClientLog> logs(kClients);
    std::vector<std::jthread> clients;  // joined on every way out, before what they use goes
    for (int i = 0; i < kClients; ++i)
        clients.emplace_back([&, i] { RunClient(i, ports, run_deadline, acknowledged, logs[i]); });

    // Inject: SIGKILL replica 0 while the sentinel entry is running there.
    std::string sentinel;
    EXPECT_TRUE(SqlitePoll(
        db, "SELECT state, substr(owner, 1, 3) FROM journal WHERE key = " + SqlQuote(kSentinelKey),
        "in_progress|r0/", start + 15s, &sentinel))
        << "the sentinel entry never ran on replica 0: " << sentinel;
    const int acked_at_kill = acknowledged.load();
    ASSERT_TRUE(replicas[0]->Signal(SIGKILL));
    const auto killed = replicas[0]->WaitExit(DeadlineIn(5s));
    for (auto& t : clients) t.join();  // each ends by run_deadline
    const double run_ms = MsBetween(start, SteadyClock::now());
    ASSERT_TRUE(killed) << "replica 0 did not die";
    EXPECT_EQ(*killed, 128 + SIGKILL);
    EXPECT_GT(acked_at_kill, 0) << "the kill came before any entry";
    EXPECT_LT(acked_at_kill, kTotalEntries) << "the kill came after the run";

    // The failure mode the clients saw, and that every request was acknowledged in the end.
    std::map<std::string, const Ack*> by_key;
    ClientLog total;
    for (const auto& log : logs) {
        for (const auto& f : log.failures) ADD_FAILURE() << f;
        for (const auto& a : log.acks) {
            EXPECT_TRUE(by_key.emplace(a.key, &a).second) << "key acknowledged twice: " << a.key;
        }
        total.retries += log.retries;
        total.replays_checked += log.replays_checked;
        total.conflicts += log.conflicts;
        total.unavailable += log.unavailable;
        total.refused += log.refused;
        total.lost += log.lost;
    }
    std::cerr << "ledger run: " << run_ms << " ms, " << by_key.size() << " acknowledged ("
              << acked_at_kill << " before the kill), " << total.retries << " retries, "
              << total.refused << " refused connects, " << total.lost << " answers lost, "
              << total.conflicts << " 409s, " << total.unavailable << " 503s, "
              << total.replays_checked << " replays checked\n";
    ASSERT_EQ(static_cast<int>(by_key.size()), kTotalEntries) << "not every entry was acknowledged";
    EXPECT_GT(total.replays_checked, 0);
    EXPECT_GE(logs[0].lost, 1) << "the sentinel's answer was not lost to the kill";

    // Restore: the survivors have recovered whatever the dead replica left in progress.
    std::string in_progress;
    EXPECT_TRUE(SqlitePoll(db, "SELECT count(*) FROM journal WHERE state = 'in_progress'", "0",
                           DeadlineIn(5s), &in_progress))
        << "operations still in progress after the run: " << in_progress;

    // Every account adds up to what was acknowledged, with seq 1..n and each entry once.
    std::size_t entries_seen = 0;
    for (const auto& account : kAccounts) {
        std::map<std::string, const Ack*> acked;  // entry_id → ack
        long long acked_sum = 0;
        for (const auto& [key, a] : by_key) {
            if (a->account != account) continue;
            EXPECT_TRUE(acked.emplace(a->entry_id, a).second)
                << "two acknowledged keys got entry " << a->entry_id;
            acked_sum += a->amount;
        }
        const HttpResponse got =
            Fetch(ports[1], "GET", "/accounts/" + account, {}, {}, DeadlineIn(kMaxTestWait));
        ASSERT_EQ(got.status, 200) << got.Describe();
        const auto v = ParseJson(got.body);
        ASSERT_TRUE(v && v->IsObject()) << got.Describe();
        EXPECT_EQ(GetInt(*v, "balance"), acked_sum) << account;
        const JsonValue* entries = v->Find("entries");
        ASSERT_TRUE(entries && entries->IsArray()) << got.Describe();
        EXPECT_EQ(entries->AsArray().size(), acked.size()) << account;
        long long running = 0;
        long long expected_seq = 1;
        for (const auto& e : entries->AsArray()) {
            ++entries_seen;
            const auto entry_id = e.GetString("entry_id");
            const auto seq = GetInt(e, "seq");
            const auto amount = GetInt(e, "amount");
            const auto balance = GetInt(e, "balance");
            ASSERT_TRUE(entry_id && seq && amount && balance) << e.Dump();
            EXPECT_EQ(*seq, expected_seq) << account << ": seq has a gap or repeat";
            expected_seq = *seq + 1;
            running += *amount;
            EXPECT_EQ(*balance, running) << account << " seq " << *seq;
            const auto it = acked.find(*entry_id);
            if (it == acked.end()) {
                ADD_FAILURE() << account << ": stored entry nobody was acknowledged: " << e.Dump();
                continue;
            }
            const Ack& a = *it->second;
            EXPECT_EQ(*amount, a.amount) << a.key;
            EXPECT_EQ(*seq, a.seq) << a.key << ": acknowledged seq differs from the stored one";
            EXPECT_EQ(*balance, a.balance) << a.key;
            EXPECT_EQ(e.GetString("memo"), a.memo) << a.key;
        }
    }
    EXPECT_EQ(entries_seen, by_key.size()) << "entries stored vs distinct acknowledged keys differ";
    EXPECT_EQ(SqliteOneRow(db, "SELECT count(*), count(DISTINCT idempotency_key) FROM entries"),
              std::to_string(kTotalEntries) + "|" + std::to_string(kTotalEntries));

    for (int i = 1; i < kReplicas; ++i) {
        ASSERT_TRUE(replicas[i]->Signal(SIGTERM));
        const auto code = replicas[i]->WaitExit(DeadlineIn(5s));
        ASSERT_TRUE(code) << "replica " << i << " did not exit";
        EXPECT_EQ(*code, 0);
    }
    const ProcessResult audit = RunAudit(db);
    ASSERT_TRUE(audit.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*audit.exit_code, 0)
        << "rollsafe audit found problems\nstderr:\n"
        << audit.err << "stdout (tail):\n"
        << audit.out.substr(audit.out.size() > 2000 ? audit.out.size() - 2000 : 0);
    EXPECT_LT(MsBetween(start, SteadyClock::now()), 40'000.0) << "the run took too long";
}

TEST(Journal, LedgerOnThreeReplicasWithOneKilledAddsUpExactlyOnce) {
    TempDir dir;
    RunLedgerScenario(dir.Path() + "/ledger.db");
}

/// The same scenario with three replicas sharing PostgreSQL (ROLLSAFE_TEST_PG), in a schema of
/// its own, with `lock_args`.
void RunOnPostgres(const std::vector<std::string>& lock_args) {
    const TestStore store("postgres");
    ASSERT_TRUE(store.ok());
    RunLedgerScenario(store.Url(), lock_args);
}

// Entries of one account ordered by PostgreSQL's transaction-scoped advisory lock.
TEST(Journal, LedgerOnThreeReplicasOnPostgresWithOneKilledAddsUpExactlyOnce) {
    RunOnPostgres({"--lock", "postgres"});
}

// Entries of one account ordered by the Redis lock, every write fenced by its token. The killed
// replica may die holding a lock: the others wait for its TTL (2 s here, under the clients'
// 5 s attempt timeout).
TEST(Journal, LedgerOnThreeReplicasOnPostgresWithTheRedisLockAndOneKilledAddsUpExactlyOnce) {
    const char* redis = std::getenv("ROLLSAFE_TEST_REDIS");
    ASSERT_TRUE(redis && *redis)
        << "ROLLSAFE_TEST_REDIS is not set: run eval \"$(scripts/services.sh start)\" "
           "(scripts/test.sh does)";
    RunOnPostgres({"--lock", std::string(redis) + "/2", "--lock-ttl", "2s"});
}

}  // namespace
}  // namespace rollsafe::testing
