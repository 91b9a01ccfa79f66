// The drill's audit: CheckStore against hand-built snapshots, one planted problem at a time,
// and CheckThroughApi against the real `rollsafe serve`.
#include "drill/verdict.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rollsafe/client/client.hpp"
#include "testing/temp_dir.hpp"

#ifndef ROLLSAFE_BINARY
#error "ROLLSAFE_BINARY must name the rollsafe executable"
#endif

namespace rollsafe::drill {
namespace {

using namespace std::chrono_literals;
using rollsafe::testing::TempDir;

constexpr std::int64_t kNow = 1'700'000'000'000;
const std::string kAnonymous = "anonymous";

// ---- hand-built stores ----

store::Operation Op(const std::string& key, const std::string& state) {
    store::Operation op;
    op.principal = kAnonymous;
    op.key = key;
    op.fingerprint = "fp-" + key;
    op.state = state;
    op.owner = state == "completed" ? "" : "replica-2/n1";
    op.lease_until_ms = kNow - 5'000;
    op.recovery_point = state == "completed" ? "" : "worked";
    op.method = "POST";
    op.response_status = state == "completed" ? 201 : 0;
    op.created_at_ms = op.updated_at_ms = kNow - 10'000;
    return op;
}

/// A run and the store it left: each Add* records what the client was told and stores what a
/// correct server would have stored for it.
struct World {
    std::vector<LoadRecord> records;
    audit::Snapshot snapshot;

    LoadRecord& AddResource(const std::string& key, const std::string& id,
                            const std::string& data = R"({"n":1})", int attempts = 1) {
        LoadRecord r;
        r.kind = LoadRecord::Kind::kResource;
        r.key = key;
        r.body = R"({"data":)" + data + "}";
        r.acknowledged = true;
        r.status = 201;
        r.id = id;
        r.attempts = attempts;
        records.push_back(r);
        snapshot.operations.push_back(Op(key, "completed"));
        store::Resource res;
        res.id = id;
        res.data_json = data;
        res.created_at = "2023-11-14T22:13:20.000Z";
        res.idempotency_key = key;
        res.owner = "replica-1";
        res.principal = kAnonymous;
        snapshot.resources.push_back(res);
        return records.back();
    }

    /// Appends a stored entry (next seq, balance updated) without touching `records`.
    void StoreEntry(const std::string& key, const std::string& id, const std::string& account,
                    std::int64_t amount) {
        std::int64_t* balance = nullptr;
        for (auto& [name, b] : snapshot.accounts)
            if (name == account) balance = &b;
        if (balance == nullptr) balance = &snapshot.accounts.emplace_back(account, 0).second;
        std::int64_t seq = 1;
        for (const auto& e : snapshot.entries)
            if (e.account == account) ++seq;
        *balance += amount;
        store::LedgerEntry e;
        e.entry_id = id;
        e.account = account;
        e.amount = amount;
        e.seq = seq;
        e.balance = *balance;
        e.memo = key;
        e.idempotency_key = key;
        e.principal = kAnonymous;
        e.created_at = "2023-11-14T22:13:20.000Z";
        snapshot.entries.push_back(e);
        snapshot.operations.push_back(Op(key, "completed"));
    }

    LoadRecord& AddEntry(const std::string& key, const std::string& id, const std::string& account,
                         std::int64_t amount, int attempts = 1) {
        LoadRecord r;
        r.kind = LoadRecord::Kind::kEntry;
        r.key = key;
        r.account = account;
        r.amount = amount;
        r.body = R"({"amount":)" + std::to_string(amount) + R"(,"memo":")" + key + "\"}";
        r.acknowledged = true;
        r.status = 201;
        r.id = id;
        r.attempts = attempts;
        records.push_back(r);
        StoreEntry(key, id, account, amount);
        return records.back();
    }

    Verdict Check() const {
        Verdict v;
        CheckStore(records, snapshot, kNow, &v);
        return v;
    }
};

/// Two resources and three entries on two accounts, all acknowledged and stored once.
World CleanWorld() {
    World w;
    w.AddResource("k-res-1", "r-1", R"({"n":1,"tags":["a","b"]})");
    w.AddResource("k-res-2", "r-2", R"("plain")", /*attempts=*/3);
    w.AddEntry("k-ent-1", "e-1", "acct-a", 100);
    w.AddEntry("k-ent-2", "e-2", "acct-a", -30, /*attempts=*/2);
    w.AddEntry("k-ent-3", "e-3", "acct-b", 7);
    return w;
}

std::string All(const Verdict& v) {
    std::string s;
    for (const auto& p : v.problems) s += p + "\n";
    return s;
}

void ExpectCounts(const Verdict& v, std::int64_t lost, std::int64_t duplicated,
                  std::int64_t half_done, std::int64_t balance) {
    EXPECT_EQ(v.lost, lost) << All(v);
    EXPECT_EQ(v.duplicated, duplicated) << All(v);
    EXPECT_EQ(v.half_done, half_done) << All(v);
    EXPECT_EQ(v.balance_mismatches, balance) << All(v);
}

TEST(CheckStore, CleanRunHasNoProblems) {
    const Verdict v = CleanWorld().Check();
    ExpectCounts(v, 0, 0, 0, 0);
    EXPECT_TRUE(v.problems.empty()) << All(v);
    EXPECT_TRUE(v.half_done_checked);
}

TEST(CheckStore, DuplicateOfARunKeyCountsOnce) {
    World w = CleanWorld();
    store::Resource again = w.snapshot.resources[0];
    again.id = "r-1-again";
    w.snapshot.resources.push_back(again);
    const Verdict v = w.Check();
    // Audit reports the same key as a duplicate too: still one.
    ExpectCounts(v, 0, 1, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "duplicated: key k-res-1 acknowledged as resource r-1 (201 after 1 attempt) is "
              "stored 2 times: resource r-1, resource r-1-again");
}

TEST(CheckStore, DuplicateOfAnotherRunCountsThroughTheStoreWideAudit) {
    World w = CleanWorld();
    w.snapshot.operations.push_back(Op("old-key", "completed"));
    for (const char* id : {"old-1", "old-2"}) {
        store::Resource r = w.snapshot.resources[0];
        r.id = id;
        r.idempotency_key = "old-key";
        w.snapshot.resources.push_back(r);
    }
    const Verdict v = w.Check();
    ExpectCounts(v, 0, 1, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "duplicated: key old-key (principal anonymous, not of this run) is stored 2 times: "
              "resource old-1, resource old-2");
}

TEST(CheckStore, InProgressRowOfARunKeyIsHalfDone) {
    World w = CleanWorld();
    LoadRecord r;
    r.kind = LoadRecord::Kind::kResource;
    r.key = "k-stuck";
    r.body = R"({"data":1,"work_ms":500})";
    r.failure_cause = "deadline";
    r.attempts = 4;
    w.records.push_back(r);
    w.snapshot.operations.push_back(Op("k-stuck", "in_progress"));
    const Verdict v = w.Check();
    // Audit finds the expired lease too: still one.
    ExpectCounts(v, 0, 0, 1, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "half-done: key k-stuck (resource, not acknowledged: deadline after 4 attempts) has "
              "its journal row still in_progress (owner replica-2/n1, recovery point \"worked\", "
              "lease expired 5000 ms before the audit); nothing is stored for it yet");
}

TEST(CheckStore, EffectWhoseJournalRowIsInProgressIsHalfDoneNotLost) {
    World w = CleanWorld();
    w.snapshot.operations[1] = Op("k-res-2", "in_progress");
    w.snapshot.operations[1].lease_until_ms = kNow + 2'000;
    const Verdict v = w.Check();
    // One operation: the row, the effect and Audit's orphan line are one problem.
    ExpectCounts(v, 0, 0, 1, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "half-done: key k-res-2 acknowledged as resource r-2 (201 after 3 attempts) has its "
              "journal row still in_progress (owner replica-2/n1, recovery point \"worked\", "
              "lease live for 2000 ms more); already stored: resource r-2");
}

TEST(CheckStore, EffectWithoutAJournalRowIsHalfDone) {
    World w = CleanWorld();
    w.snapshot.operations.erase(w.snapshot.operations.begin());  // k-res-1's row
    const Verdict v = w.Check();
    ExpectCounts(v, 0, 0, 1, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "half-done: key k-res-1 acknowledged as resource r-1 (201 after 1 attempt) has "
              "resource r-1 stored but no journal row");
}

TEST(CheckStore, ExpiredOperationAndOrphanOfAnotherRunAreHalfDone) {
    World w = CleanWorld();
    w.snapshot.operations.push_back(Op("old-stuck", "in_progress"));
    store::Resource orphan = w.snapshot.resources[0];
    orphan.id = "old-orphan";
    orphan.idempotency_key = "";
    w.snapshot.resources.push_back(orphan);
    const Verdict v = w.Check();
    ExpectCounts(v, 0, 0, 2, 0);
    ASSERT_EQ(v.problems.size(), 2u) << All(v);
    EXPECT_EQ(v.problems[0],
              "half-done: operation of key old-stuck (principal anonymous, not of this run) is "
              "in_progress with its lease expired (owner replica-2/n1, recovery point "
              "\"worked\", lease until 1699999995000 ms, audit at 1700000000000 ms)");
    EXPECT_EQ(v.problems[1],
              "half-done: resource old-orphan was stored without an idempotency key, so no "
              "journal row accounts for it");
}

TEST(CheckStore, StoredBalanceOffTheAcknowledgedSumIsOneMismatch) {
    World w = CleanWorld();
    w.snapshot.accounts[0].second += 1;  // acct-a: 71 instead of 70
    const Verdict v = w.Check();
    // Against the acknowledged sum and (Audit) against the sum of its entries: one account.
    ExpectCounts(v, 0, 0, 0, 1);
    ASSERT_EQ(v.problems.size(), 2u) << All(v);
    EXPECT_EQ(v.problems[0],
              "balance mismatch: account acct-a stores balance 71, but the 2 entries "
              "acknowledged to it sum to 70 (difference +1)");
    EXPECT_EQ(v.problems[1],
              "balance mismatch: account acct-a stores balance 71, but its 2 stored entries sum "
              "to 70");
}

TEST(CheckStore, EntryExecutedButNeverAcknowledgedIsAMismatch) {
    World w = CleanWorld();
    LoadRecord& r = w.AddEntry("k-late", "e-late", "acct-b", 5, /*attempts=*/6);
    r.acknowledged = false;
    r.status = 0;
    r.id.clear();
    r.failure_cause = "deadline";
    const Verdict v = w.Check();
    ExpectCounts(v, 0, 0, 0, 1);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "balance mismatch: account acct-b stores balance 12, but the 1 entry acknowledged "
              "to it sum to 7 (difference +5; executed but never acknowledged: key k-late +5)");
}

TEST(CheckStore, AccountNeverStoredCountsAsZero) {
    World w = CleanWorld();
    LoadRecord r;
    r.kind = LoadRecord::Kind::kEntry;
    r.key = "k-never";
    r.account = "acct-new";
    r.amount = 9;
    r.failure_cause = "status 502";
    r.attempts = 2;
    w.records.push_back(r);
    ExpectCounts(w.Check(), 0, 0, 0, 0);  // nothing acknowledged, nothing stored: fine

    w.records.back().acknowledged = true;
    w.records.back().status = 201;
    w.records.back().id = "e-never";
    const Verdict v = w.Check();
    ExpectCounts(v, 1, 0, 0, 1);
    ASSERT_EQ(v.problems.size(), 2u) << All(v);
    EXPECT_EQ(v.problems[0],
              "lost: key k-never acknowledged as entry e-never to account acct-new (201 after 2 "
              "attempts) is not stored (it has no journal row either)");
    EXPECT_EQ(v.problems[1],
              "balance mismatch: account acct-new is not stored (balance 0), but the 1 entry "
              "acknowledged to it sum to 9 (difference -9)");
}

TEST(CheckStore, AcknowledgedKeyMissingFromTheStoreIsLost) {
    World w = CleanWorld();
    w.snapshot.resources.erase(w.snapshot.resources.begin() + 1);  // r-2, k-res-2
    const Verdict v = w.Check();
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "lost: key k-res-2 acknowledged as resource r-2 (201 after 3 attempts) is not "
              "stored (its journal row is completed)");
}

TEST(CheckStore, StoredUnderAnotherIdIsLost) {
    World w = CleanWorld();
    w.snapshot.resources[0].id = "r-other";
    const Verdict v = w.Check();
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "lost: key k-res-1 acknowledged as resource r-1 (201 after 1 attempt) is stored as "
              "resource r-other instead");

    World e = CleanWorld();
    e.snapshot.entries[2].entry_id = "e-other";
    const Verdict ve = e.Check();
    ExpectCounts(ve, 1, 0, 0, 0);
    ASSERT_EQ(ve.problems.size(), 1u) << All(ve);
    EXPECT_EQ(ve.problems[0],
              "lost: key k-ent-3 acknowledged as entry e-3 to account acct-b (201 after 1 "
              "attempt) is stored as entry e-other (account acct-b, seq 1) instead");
}

TEST(CheckStore, StoredWithOtherDataIsLost) {
    World w = CleanWorld();
    // Same value, other member order and spacing: not a difference.
    w.snapshot.resources[0].data_json = R"({ "tags": ["a","b"], "n": 1 })";
    ExpectCounts(w.Check(), 0, 0, 0, 0);

    w.snapshot.resources[0].data_json = R"({"n":2,"tags":["a","b"]})";
    const Verdict v = w.Check();
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(
        v.problems[0],
        "lost: key k-res-1 acknowledged as resource r-1 (201 after 1 attempt) is stored "
        "with data {\"n\":2,\"tags\":[\"a\",\"b\"]}, not the {\"n\":1,\"tags\":[\"a\",\"b\"]} "
        "that was sent");
}

TEST(CheckStore, ProblemsStopAt200WithACount) {
    World w;
    for (int i = 0; i < 250; ++i) {
        LoadRecord r;
        r.key = "k-" + std::to_string(i);
        r.acknowledged = true;
        r.status = 201;
        r.id = "r-" + std::to_string(i);
        r.attempts = 1;
        w.records.push_back(r);
    }
    const Verdict v = w.Check();
    EXPECT_EQ(v.lost, 250);
    ASSERT_EQ(v.problems.size(), 200u);
    EXPECT_EQ(v.problems.back(), "... and 51 more problems not listed");
}

// ---- a store that already held rows before the run (an earlier run, another app) ----

/// Plants, in rows that are not the run's: an expired operation with an effect (one problem),
/// a duplicated key and an account whose stored balance is off its entries.
void PlantOldProblems(World* w) {
    w->snapshot.operations.push_back(Op("old-stuck", "in_progress"));
    store::Resource stuck = w->snapshot.resources[0];
    stuck.id = "old-stuck-effect";
    stuck.idempotency_key = "old-stuck";
    w->snapshot.resources.push_back(stuck);
    w->snapshot.operations.push_back(Op("old-dup", "completed"));
    for (const char* id : {"old-1", "old-2"}) {
        store::Resource r = w->snapshot.resources[0];
        r.id = id;
        r.idempotency_key = "old-dup";
        w->snapshot.resources.push_back(r);
    }
    w->StoreEntry("old-ent", "old-e", "other-app", 40);
    w->snapshot.accounts.back().second = 41;
}

TEST(CheckStore, ProblemsAlreadyThereBeforeTheRunAreListedApartNotCounted) {
    World before;
    before.AddResource("k-older-run", "r-older");
    PlantOldProblems(&before);
    const std::set<std::string> ids = StoreProblemIds(before.snapshot, kNow);
    // The expired operation and its orphaned effect are one problem.
    EXPECT_EQ(ids.size(), 3u);

    // The run adds its own rows to that store, all clean.
    World w = CleanWorld();
    for (const auto& op : before.snapshot.operations) w.snapshot.operations.push_back(op);
    for (const auto& r : before.snapshot.resources) w.snapshot.resources.push_back(r);
    for (const auto& e : before.snapshot.entries) w.snapshot.entries.push_back(e);
    for (const auto& a : before.snapshot.accounts) w.snapshot.accounts.push_back(a);
    Verdict v;
    CheckStore(w.records, w.snapshot, kNow, &v, &ids);
    ExpectCounts(v, 0, 0, 0, 0);
    EXPECT_TRUE(v.problems.empty()) << All(v);
    v.requests = 5;
    EXPECT_TRUE(v.ok());
    EXPECT_EQ(v.earlier_problems, 3);
    ASSERT_EQ(v.earlier.size(), 3u);
    std::string earlier;
    for (const auto& e : v.earlier) earlier += e + "\n";
    EXPECT_NE(earlier.find("half-done: operation of key old-stuck (principal anonymous, not of "
                           "this run) is in_progress"),
              std::string::npos)
        << earlier;
    EXPECT_NE(earlier.find("duplicated: key old-dup (principal anonymous, not of this run) is "
                           "stored 2 times"),
              std::string::npos)
        << earlier;
    EXPECT_NE(earlier.find("balance mismatch: account other-app (not of this run) stores "
                           "balance 41, but its 1 stored entries sum to 40"),
              std::string::npos)
        << earlier;

    // Without the baseline every one of them counts, as on a store of unknown history.
    const Verdict strict = w.Check();
    ExpectCounts(strict, 0, 1, 1, 1);
    EXPECT_EQ(strict.earlier_problems, 0);
}

TEST(CheckStore, ProblemsOfOtherRowsThatAppearedDuringTheRunCount) {
    World w = CleanWorld();
    const std::set<std::string> before = StoreProblemIds(w.snapshot, kNow);
    EXPECT_TRUE(before.empty());
    PlantOldProblems(&w);  // not there before the run, there after it
    Verdict v;
    CheckStore(w.records, w.snapshot, kNow, &v, &before);
    ExpectCounts(v, 0, 1, 1, 1);
    EXPECT_EQ(v.earlier_problems, 0);
    EXPECT_TRUE(v.earlier.empty());
    ASSERT_EQ(v.problems.size(), 3u) << All(v);
    EXPECT_NE(All(v).find("duplicated: key old-dup (principal anonymous, not of this run, new "
                          "since its start) is stored 2 times"),
              std::string::npos)
        << All(v);
    EXPECT_NE(All(v).find("balance mismatch: account other-app (not of this run, new since its "
                          "start)"),
              std::string::npos)
        << All(v);
}

TEST(CheckStore, OldProblemStillCountsWhenItIsInTheRunsOwnAccount) {
    // An account of the run was off before it (only possible if the run's random id had been
    // used before): the run's balance check still judges it.
    World w = CleanWorld();
    w.snapshot.accounts[0].second += 1;  // acct-a
    const std::set<std::string> before = StoreProblemIds(w.snapshot, kNow);
    ASSERT_EQ(before.size(), 1u);
    Verdict v;
    CheckStore(w.records, w.snapshot, kNow, &v, &before);
    ExpectCounts(v, 0, 0, 0, 1);
    EXPECT_EQ(v.earlier_problems, 0);
}

TEST(CheckStore, EarlierProblemsAreListedUpToTwentyWithACount) {
    World before = CleanWorld();
    for (int i = 0; i < 25; ++i) {
        store::Resource r = before.snapshot.resources[0];
        r.id = "keyless-" + std::to_string(i);
        r.idempotency_key = "";
        before.snapshot.resources.push_back(r);
    }
    const std::set<std::string> ids = StoreProblemIds(before.snapshot, kNow);
    EXPECT_EQ(ids.size(), 25u);
    Verdict v;
    CheckStore(before.records, before.snapshot, kNow, &v, &ids);
    ExpectCounts(v, 0, 0, 0, 0);
    EXPECT_EQ(v.earlier_problems, 25);
    ASSERT_EQ(v.earlier.size(), 21u);
    EXPECT_EQ(v.earlier.back(), "... and 5 more (rollsafe audit lists them all)");
}

TEST(CountRequests, CountsAttemptsRetriesAndGroupsFailureCauses) {
    std::vector<LoadRecord> records(6);
    records[0].acknowledged = true;
    records[0].attempts = 1;
    records[1].acknowledged = true;
    records[1].attempts = 3;
    records[2].failure_cause = "status 502";
    records[2].attempts = 5;
    records[3].failure_cause = "status 502";
    records[3].attempts = 6;
    records[4].failure_cause = "deadline";
    records[4].attempts = 2;
    records[5].status = 422;  // a final answer with no cause written
    records[5].attempts = 1;
    Verdict v;
    v.lost = 3;  // not touched
    CountRequests(records, &v);
    EXPECT_EQ(v.requests, 6);
    EXPECT_EQ(v.acknowledged, 2);
    EXPECT_EQ(v.retried, 4);
    EXPECT_EQ(v.attempts, 18);
    EXPECT_EQ(v.failed, 4);
    const std::map<std::string, std::int64_t> expected{
        {"status 502", 2}, {"deadline", 1}, {"status 422", 1}};
    EXPECT_EQ(v.failed_by_cause, expected);
    EXPECT_EQ(v.lost, 3);
}

// ---- black box: the real server ----

/// `rollsafe serve` on 127.0.0.1:0 with a fresh SQLite file, stdout and stderr to files (so a
/// full pipe can never stall it). Killed (SIGKILL) and reaped by the destructor.
class Server {
  public:
    Server() {
        const std::string out = dir_.File("stdout.txt");
        const std::string err = dir_.File("stderr.txt");
        const std::vector<std::string> argv = {
            ROLLSAFE_BINARY,  "serve",       "--listen",       "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--store",        "sqlite:" + dir_.File("t.db"),
            "--threads",      "1",           "--no-access-log"};
        std::vector<char*> cargv;
        for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
        cargv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int in = ::open("/dev/null", O_RDONLY);
            if (o < 0 || e < 0 || in < 0) ::_exit(127);
            ::dup2(in, 0);
            ::dup2(o, 1);
            ::dup2(e, 2);
            ::execv(cargv[0], cargv.data());
            ::_exit(127);
        }
        // The first stdout line is `{"event":"listening",...,"api_port":N,...}`.
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        const std::regex port(R"("event":"listening".*"api_port":([0-9]+))");
        while (std::chrono::steady_clock::now() < deadline) {
            std::ifstream in(out);
            std::string line;
            std::smatch m;
            if (std::getline(in, line) && in.good() && std::regex_search(line, m, port)) {
                port_ = std::stoi(m[1]);
                return;
            }
            int status;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("rollsafe serve exited before listening: " + Read(err));
            }
            std::this_thread::sleep_for(10ms);
        }
        Kill();
        throw std::runtime_error("rollsafe serve did not log its port within 10 s: " + Read(err));
    }
    ~Server() { Kill(); }
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  private:
    static std::string Read(const std::string& path) {
        std::ifstream in(path);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    void Kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        int status;
        ::waitpid(pid_, &status, 0);  // SIGKILL cannot be ignored: bounded
        pid_ = -1;
    }

    TempDir dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

/// POSTs `body` to `url` with `key` and turns the outcome into the record the load would keep.
LoadRecord Send(LoadRecord::Kind kind, const std::string& url, const std::string& key,
                const std::string& body, const std::string& account = {}, std::int64_t amount = 0) {
    client::PostRequest req;
    req.url = url;
    req.body = body;
    req.idempotency_key = key;
    req.retry.deadline = 10s;
    req.attempt_timeout = 5s;
    const client::PostResult res = client::Post(req);
    LoadRecord r;
    r.kind = kind;
    r.key = key;
    r.body = body;
    r.account = account;
    r.amount = amount;
    r.attempts = static_cast<int>(res.attempts.size());
    r.status = res.response ? res.response->status : 0;
    r.acknowledged = res.Succeeded();
    if (!r.acknowledged) r.failure_cause = res.why;
    if (r.acknowledged) {
        const std::regex id(kind == LoadRecord::Kind::kResource ? R"re("id":"([^"]+)")re"
                                                                : R"re("entry_id":"([^"]+)")re");
        std::smatch m;
        if (std::regex_search(res.response->body, m, id)) r.id = m[1];
    }
    return r;
}

LoadRecord SendResource(const Server& s, const std::string& key, const std::string& data) {
    return Send(LoadRecord::Kind::kResource, s.Url() + "/resources", key,
                R"({"data":)" + data + "}");
}

LoadRecord SendEntry(const Server& s, const std::string& key, const std::string& account,
                     std::int64_t amount, const std::string& memo) {
    return Send(LoadRecord::Kind::kEntry, s.Url() + "/accounts/" + account + "/entries", key,
                R"({"amount":)" + std::to_string(amount) + R"(,"memo":")" + memo + "\"}", account,
                amount);
}

/// A clean run against `s`: two resources, three entries on two accounts, memo = key.
std::vector<LoadRecord> CleanRun(const Server& s) {
    std::vector<LoadRecord> run = {
        SendResource(s, "0b0e5f6a-0000-4000-8000-000000000001", R"({"n":1,"tags":["x"]})"),
        SendResource(s, "0b0e5f6a-0000-4000-8000-000000000002", R"("text")"),
        SendEntry(s, "0b0e5f6a-0000-4000-8000-000000000003", "acct-a", 100,
                  "0b0e5f6a-0000-4000-8000-000000000003"),
        SendEntry(s, "0b0e5f6a-0000-4000-8000-000000000004", "acct-a", -40,
                  "0b0e5f6a-0000-4000-8000-000000000004"),
        SendEntry(s, "0b0e5f6a-0000-4000-8000-000000000005", "acct-b", 7,
                  "0b0e5f6a-0000-4000-8000-000000000005"),
    };
    for (const auto& r : run) {
        EXPECT_TRUE(r.acknowledged) << r.key << ": " << r.failure_cause;
        EXPECT_FALSE(r.id.empty()) << r.key;
    }
    return run;
}

Verdict Api(const std::vector<LoadRecord>& records, const std::string& url,
            int per_get_deadline_ms = 5000) {
    Verdict v;
    CheckThroughApi(records, url, &v, per_get_deadline_ms);
    return v;
}

TEST(CheckThroughApi, CleanRunOnTheRealServerHasNoProblems) {
    Server s;
    const auto run = CleanRun(s);
    const Verdict v = Api(run, s.Url() + "/");  // a trailing slash is fine
    ExpectCounts(v, 0, 0, 0, 0);
    EXPECT_TRUE(v.problems.empty()) << All(v);
    EXPECT_FALSE(v.half_done_checked);
}

TEST(CheckThroughApi, AcknowledgedResourceThatDoesNotExistIsLost) {
    Server s;
    auto run = CleanRun(s);
    LoadRecord ghost = run[0];
    ghost.key = "0b0e5f6a-0000-4000-8000-0000000000ff";
    ghost.id = "0190a5c2-0000-7000-8000-00000000dead";
    ghost.attempts = 3;
    run.push_back(ghost);
    const Verdict v = Api(run, s.Url());
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "lost: key 0b0e5f6a-0000-4000-8000-0000000000ff acknowledged as resource "
              "0190a5c2-0000-7000-8000-00000000dead (201 after 3 attempts) is not stored (GET "
              "/resources/0190a5c2-0000-7000-8000-00000000dead → 404)");
}

TEST(CheckThroughApi, ResourceWithOtherDataIsLost) {
    Server s;
    auto run = CleanRun(s);
    run[1].body = R"({"data":"other text"})";
    const Verdict v = Api(run, s.Url());
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_NE(v.problems[0].find("is stored with data \"text\", not the \"other text\" that was "
                                 "sent"),
              std::string::npos)
        << v.problems[0];
}

TEST(CheckThroughApi, SameMemoUnderTwoKeysIsADuplicate) {
    Server s;
    auto run = CleanRun(s);
    const std::string key = "0b0e5f6a-0000-4000-8000-000000000010";
    run.push_back(SendEntry(s, key, "acct-b", 5, key));
    // The same logical request executed a second time under another key (what a client that
    // lost its key would cause); the load only knows the first.
    const LoadRecord second =
        SendEntry(s, "0b0e5f6a-0000-4000-8000-000000000011", "acct-b", 5, key);
    ASSERT_TRUE(second.acknowledged);
    const Verdict v = Api(run, s.Url());
    // The second execution also puts acct-b 5 above what was acknowledged.
    ExpectCounts(v, 0, 1, 0, 1);
    ASSERT_EQ(v.problems.size(), 2u) << All(v);
    EXPECT_EQ(
        v.problems[0].rfind("duplicated: key " + key + " acknowledged as entry " + run.back().id +
                                " to account acct-b (201 after 1 "
                                "attempt) is stored 2 times (by memo in GET "
                                "/accounts/acct-b): entries ",
                            0),
        0u)
        << v.problems[0];
    EXPECT_NE(v.problems[0].find(second.id), std::string::npos) << v.problems[0];
    EXPECT_EQ(v.problems[1],
              "balance mismatch: account acct-b has balance 17, but the 2 entries acknowledged "
              "to it sum to 12 (difference +5)");
}

TEST(CheckThroughApi, AcknowledgedSumOffTheBalanceIsAMismatch) {
    Server s;
    auto run = CleanRun(s);
    run[3].amount = -45;  // the record says -45 was acknowledged; the server holds -40
    const Verdict v = Api(run, s.Url());
    ExpectCounts(v, 0, 0, 0, 1);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "balance mismatch: account acct-a has balance 60, but the 2 entries acknowledged "
              "to it sum to 55 (difference +5)");
}

TEST(CheckThroughApi, AcknowledgedEntryWithoutItsMemoIsLost) {
    Server s;
    auto run = CleanRun(s);
    LoadRecord ghost = run[4];
    ghost.key = "0b0e5f6a-0000-4000-8000-0000000000fe";
    ghost.id = "e-ghost";
    ghost.amount = 0;  // keeps the balance right: only the missing entry is reported
    run.push_back(ghost);
    const Verdict v = Api(run, s.Url());
    ExpectCounts(v, 1, 0, 0, 0);
    ASSERT_EQ(v.problems.size(), 1u) << All(v);
    EXPECT_EQ(v.problems[0],
              "lost: key 0b0e5f6a-0000-4000-8000-0000000000fe acknowledged as entry e-ghost to "
              "account acct-b (201 after 1 attempt) is not stored (no entry of GET "
              "/accounts/acct-b has memo 0b0e5f6a-0000-4000-8000-0000000000fe)");
}

TEST(CheckThroughApi, UnreachableApiCountsEveryCheckAndStopsAtTheDeadline) {
    std::string url;
    {
        Server s;  // a port that certainly was free, now refused
        url = s.Url();
    }
    World w = CleanWorld();
    const auto start = std::chrono::steady_clock::now();
    const Verdict v = Api(w.records, url, /*per_get_deadline_ms=*/300);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    ExpectCounts(v, 2, 0, 0, 2);
    ASSERT_EQ(v.problems.size(), 4u) << All(v);
    EXPECT_EQ(v.problems[0].rfind("lost: key k-res-1 acknowledged as resource r-1 (201 after 1 "
                                  "attempt) could not be read back: GET /resources/r-1 did not "
                                  "answer below 500 within 300 ms (last: connect: ",
                                  0),
              0u)
        << v.problems[0];
    EXPECT_EQ(v.problems[2].rfind("balance mismatch: account acct-a could not be read: GET "
                                  "/accounts/acct-a did not answer",
                                  0),
              0u)
        << v.problems[2];
    EXPECT_THROW(Api(w.records, "https://127.0.0.1:1"), std::invalid_argument);
}

}  // namespace
}  // namespace rollsafe::drill
