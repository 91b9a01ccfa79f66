// The Tx contract, run against every store: SQLite always, PostgreSQL when ROLLSAFE_TEST_PG
// holds a URL (scripts/services.sh start prints one). Each PostgreSQL test runs in a schema of
// its own, dropped at the end.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rollsafe/store/store.hpp"
#include "testing/temp_dir.hpp"

namespace rollsafe::store {
namespace {

using namespace std::chrono_literals;
constexpr auto kMaxTestWait = 30s;

const char* PgUrl() {
    const char* u = std::getenv("ROLLSAFE_TEST_PG");
    return u && *u ? u : nullptr;
}

/// Runs one statement on a fresh connection (test setup only).
void PgExec(const std::string& url, const std::string& sql) {
    PGconn* c = PQconnectdb(url.c_str());
    ASSERT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    PGresult* r = PQexec(c, ("SET client_min_messages = warning; " + sql).c_str());
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(c);
    PQclear(r);
    PQfinish(c);
}

class StoreDbTest : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        if (GetParam() == "postgres") {
            const char* base = PgUrl();
            // scripts/test.sh (and so CI) always provides one; running without is a failure,
            // not a silent pass of half the suite.
            ASSERT_TRUE(base)
                << "ROLLSAFE_TEST_PG is not set: run eval \"$(scripts/services.sh start)\" "
                   "(scripts/test.sh does)";
            static std::atomic<int> n{0};
            schema_ = "t_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
            base_url_ = base;
            PgExec(base_url_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
            PgExec(base_url_, "CREATE SCHEMA " + schema_);
            url_ = base_url_ + (base_url_.find('?') == std::string::npos ? "?" : "&") +
                   "options=-csearch_path%3D" + schema_;
        } else {
            url_ = "sqlite:" + dir_.File("store.db");
        }
        store_ = Open();
    }
    void TearDown() override {
        if (store_) store_->Shutdown();
        store_.reset();
        if (!schema_.empty()) PgExec(base_url_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
    }

    std::unique_ptr<Store> Open(Durability d = {}) {
        if (GetParam() == "sqlite") d.synchronous = "off";
        return OpenStore(url_, d);
    }

    static Status Wait(std::future<Status> f) {
        if (f.wait_for(kMaxTestWait) != std::future_status::ready)
            return {ErrorKind::kPermanent, "no callback within the test deadline"};
        return f.get();
    }
    Status W(Job job, Store* s = nullptr) {
        auto p = std::make_shared<std::promise<Status>>();
        auto f = p->get_future();
        (s ? s : store_.get())->Write(std::move(job), [p](Status st) { p->set_value(st); });
        return Wait(std::move(f));
    }
    Status R(Job job) {
        auto p = std::make_shared<std::promise<Status>>();
        auto f = p->get_future();
        store_->Read(std::move(job), [p](Status st) { p->set_value(st); });
        return Wait(std::move(f));
    }

    /// Runs `sqlite_sql` or `pg_sql` (whichever store this is) outside the store, for setups
    /// the Tx contract cannot make (an older schema).
    void RawExec(const std::string& sqlite_sql, const std::string& pg_sql) {
        if (GetParam() == "postgres") {
            PgExec(base_url_, "SET search_path = " + schema_ + "; " + pg_sql);
            return;
        }
        sqlite3* db = nullptr;
        ASSERT_EQ(sqlite3_open(dir_.File("store.db").c_str(), &db), SQLITE_OK);
        char* err = nullptr;
        EXPECT_EQ(sqlite3_exec(db, sqlite_sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
            << (err ? err : "");
        sqlite3_free(err);
        sqlite3_close(db);
    }

    rollsafe::testing::TempDir dir_;
    std::string url_, base_url_, schema_;
    std::unique_ptr<Store> store_;
};

Operation MakeOp(std::string key, std::string owner, std::int64_t lease, std::int64_t now) {
    Operation o;
    o.principal = "anonymous";
    o.key = std::move(key);
    o.fingerprint = "fp";
    o.state = "in_progress";
    o.owner = std::move(owner);
    o.lease_until_ms = lease;
    o.method = "POST";
    o.path = "/resources";
    o.request_body = R"({"a":"é\n'quote'"})";
    o.created_at_ms = now;
    o.updated_at_ms = now;
    return o;
}

LedgerEntry MakeEntry(std::string account, std::int64_t amount, std::string id) {
    LedgerEntry e;
    e.account = std::move(account);
    e.amount = amount;
    e.entry_id = std::move(id);
    e.memo = "m";
    e.idempotency_key = "k-" + e.entry_id;
    e.principal = "anonymous";
    e.created_at = "2026-01-01T00:00:00.000Z";
    return e;
}

TEST_P(StoreDbTest, InsertOperationRoundTripsAndRefusesASecondRowForTheKey) {
    Operation op = MakeOp("k1", "a/1", 1000, 100);
    bool first = false, second = true;
    ASSERT_TRUE(W([&](Tx& tx) {
                    first = tx.InsertOperation(op);
                    Operation other = op;
                    other.fingerprint = "other";
                    second = tx.InsertOperation(other);
                    return Status::Ok();
                }).ok());
    EXPECT_TRUE(first);
    EXPECT_FALSE(second);
    std::optional<Operation> got, missing;
    ASSERT_TRUE(R([&](Tx& tx) {
                    got = tx.GetOperation("anonymous", "k1");
                    missing = tx.GetOperation("someone-else", "k1");
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(got);
    EXPECT_FALSE(missing);
    EXPECT_EQ(got->fingerprint, "fp");
    EXPECT_EQ(got->state, "in_progress");
    EXPECT_EQ(got->owner, "a/1");
    EXPECT_EQ(got->lease_until_ms, 1000);
    EXPECT_EQ(got->request_body, op.request_body);
    EXPECT_EQ(got->method, "POST");
    EXPECT_EQ(got->path, "/resources");
    EXPECT_EQ(got->created_at_ms, 100);
}

TEST_P(StoreDbTest, TakeOverOnlyOnceTheLeaseExpiredAndOnlyOnce) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertOperation(MakeOp("k", "a/1", 1000, 100));
                    return Status::Ok();
                }).ok());
    bool early = true, late = false, again = true;
    ASSERT_TRUE(W([&](Tx& tx) {
                    early = tx.TakeOver("anonymous", "k", "b/1", 5000, 999);
                    late = tx.TakeOver("anonymous", "k", "b/1", 5000, 1000);
                    again = tx.TakeOver("anonymous", "k", "c/1", 9000, 1001);
                    return Status::Ok();
                }).ok());
    EXPECT_FALSE(early);
    EXPECT_TRUE(late);
    EXPECT_FALSE(again);
    std::optional<Operation> got;
    ASSERT_TRUE(R([&](Tx& tx) {
                    got = tx.GetOperation("anonymous", "k");
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(got);
    EXPECT_EQ(got->owner, "b/1");
    EXPECT_EQ(got->lease_until_ms, 5000);
    EXPECT_EQ(got->updated_at_ms, 1000);
}

TEST_P(StoreDbTest, OwnerChecksOnProgressRenewCompleteAndRelease) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertOperation(MakeOp("k", "a/1", 1000, 100));
                    tx.InsertOperation(MakeOp("r", "a/1", 1000, 100));
                    return Status::Ok();
                }).ok());
    std::map<std::string, bool> res;
    ASSERT_TRUE(W([&](Tx& tx) {
                    res["progress-stranger"] =
                        tx.SaveProgress("anonymous", "k", "x/1", "reserved", "{}", 2000, 150);
                    res["progress"] = tx.SaveProgress("anonymous", "k", "a/1", "reserved",
                                                      R"({"id":"r1"})", 2000, 150);
                    res["renew-stranger"] = tx.Renew("anonymous", "k", "x/1", 3000);
                    res["renew"] = tx.Renew("anonymous", "k", "a/1", 3000);
                    res["complete-stranger"] =
                        tx.Complete("anonymous", "k", "x/1", 201, "[]", "b", 200);
                    res["complete"] =
                        tx.Complete("anonymous", "k", "a/1", 201, R"([["h","v"]])", "body", 200);
                    res["renew-completed"] = tx.Renew("anonymous", "k", "a/1", 4000);
                    res["release-stranger"] = tx.Release("anonymous", "r", "x/1", 300);
                    res["release"] = tx.Release("anonymous", "r", "a/1", 300);
                    return Status::Ok();
                }).ok());
    EXPECT_FALSE(res["progress-stranger"]);
    EXPECT_TRUE(res["progress"]);
    EXPECT_FALSE(res["renew-stranger"]);
    EXPECT_TRUE(res["renew"]);
    EXPECT_FALSE(res["complete-stranger"]);
    EXPECT_TRUE(res["complete"]);
    EXPECT_FALSE(res["renew-completed"]);
    EXPECT_FALSE(res["release-stranger"]);
    EXPECT_TRUE(res["release"]);
    std::optional<Operation> k, r;
    ASSERT_TRUE(R([&](Tx& tx) {
                    k = tx.GetOperation("anonymous", "k");
                    r = tx.GetOperation("anonymous", "r");
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(k && r);
    EXPECT_EQ(k->state, "completed");
    EXPECT_EQ(k->recovery_point, "reserved");
    EXPECT_EQ(k->recovery_state, R"({"id":"r1"})");
    EXPECT_EQ(k->response_status, 201);
    EXPECT_EQ(k->response_headers, R"([["h","v"]])");
    EXPECT_EQ(k->response_body, "body");
    EXPECT_EQ(k->request_body, "");
    EXPECT_EQ(k->lease_until_ms, 0);
    EXPECT_EQ(r->owner, "");
    EXPECT_EQ(r->lease_until_ms, 300);
    EXPECT_EQ(r->state, "in_progress");
}

TEST_P(StoreDbTest, ExpiredOperationsOldestFirstAndRetentionDeletesOldCompletedRows) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertOperation(MakeOp("late", "a/1", 900, 100));
                    tx.InsertOperation(MakeOp("early", "a/1", 500, 100));
                    tx.InsertOperation(MakeOp("live", "a/1", 5000, 100));
                    for (int i = 0; i < 5; ++i) {
                        const std::string key = "done" + std::to_string(i);
                        tx.InsertOperation(MakeOp(key, "a/1", 900, 100));
                        tx.Complete("anonymous", key, "a/1", 200, "[]", "", 100 + i * 100);
                    }
                    return Status::Ok();
                }).ok());
    std::vector<Operation> expired, one;
    ASSERT_TRUE(R([&](Tx& tx) {
                    expired = tx.ExpiredOperations(1000, 10);
                    one = tx.ExpiredOperations(1000, 1);
                    return Status::Ok();
                }).ok());
    ASSERT_EQ(expired.size(), 2u);
    EXPECT_EQ(expired[0].key, "early");
    EXPECT_EQ(expired[1].key, "late");
    ASSERT_EQ(one.size(), 1u);
    int first = -1, second = -1;
    ASSERT_TRUE(W([&](Tx& tx) {
                    first = tx.DeleteCompletedBefore(400, 2);  // done0..done2 qualify
                    second = tx.DeleteCompletedBefore(400, 10);
                    return Status::Ok();
                }).ok());
    EXPECT_EQ(first, 2);
    EXPECT_EQ(second, 1);
    std::vector<Operation> all;
    ASSERT_TRUE(R([&](Tx& tx) {
                    all = tx.AllOperations();
                    return Status::Ok();
                }).ok());
    EXPECT_EQ(all.size(), 5u);  // early, late, live, done3, done4
}

TEST_P(StoreDbTest, ResourcesRoundTripAndADuplicateIdIsAConflictThatRollsTheJobBack) {
    Resource a{"id-b", R"({"x":1})", "2026-01-01T00:00:00.000Z", "key-1", "rep", "anonymous"};
    Resource b{"id-a", R"({"y":2})", "2026-01-01T00:00:01.000Z", "", "rep", "p"};
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertResource(a);
                    tx.InsertResource(b);
                    return Status::Ok();
                }).ok());
    const Status dup = W([&](Tx& tx) {
        tx.InsertOperation(MakeOp("with-dup", "a/1", 1, 1));
        tx.InsertResource(a);
        return Status::Ok();
    });
    EXPECT_EQ(dup.kind, ErrorKind::kConflict) << dup.message;
    std::optional<Resource> got, none;
    std::optional<Operation> rolled_back;
    std::vector<Resource> all;
    ASSERT_TRUE(R([&](Tx& tx) {
                    got = tx.GetResource("id-b");
                    none = tx.GetResource("nope");
                    rolled_back = tx.GetOperation("anonymous", "with-dup");
                    all = tx.AllResources();
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(got);
    EXPECT_EQ(got->data_json, a.data_json);
    EXPECT_EQ(got->idempotency_key, "key-1");
    EXPECT_EQ(got->principal, "anonymous");
    EXPECT_FALSE(none);
    EXPECT_FALSE(rolled_back) << "a failed job must leave nothing behind";
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].id, "id-a");
    EXPECT_EQ(all[0].idempotency_key, "");
}

TEST_P(StoreDbTest, AJobReturningAnErrorRollsBackEverythingItWrote) {
    const Status st = W([&](Tx& tx) {
        tx.InsertOperation(MakeOp("gone", "a/1", 1, 1));
        LedgerEntry e = MakeEntry("acct", 5, "e-gone");
        tx.AppendEntry(e, 0);
        return Status{ErrorKind::kConflict, "changed my mind"};
    });
    EXPECT_EQ(st.kind, ErrorKind::kConflict);
    std::optional<Operation> op;
    std::vector<std::pair<std::string, std::int64_t>> accounts;
    ASSERT_TRUE(R([&](Tx& tx) {
                    op = tx.GetOperation("anonymous", "gone");
                    accounts = tx.AllAccounts();
                    return Status::Ok();
                }).ok());
    EXPECT_FALSE(op);
    EXPECT_TRUE(accounts.empty());
}

TEST_P(StoreDbTest, LedgerAppendAssignsSeqAndBalanceAndRefusesOverflow) {
    std::vector<LedgerEntry> out;
    bool overflow = true;
    ASSERT_TRUE(W([&](Tx& tx) {
                    for (auto [acct, amount, id] :
                         std::vector<std::tuple<std::string, std::int64_t, std::string>>{
                             {"b", 10, "e1"}, {"a", 7, "e2"}, {"b", -3, "e3"}}) {
                        LedgerEntry e = MakeEntry(acct, amount, id);
                        EXPECT_TRUE(tx.AppendEntry(e, 0));
                        out.push_back(e);
                    }
                    LedgerEntry big = MakeEntry("b", INT64_MAX, "e4");
                    overflow = tx.AppendEntry(big, 0);
                    return Status::Ok();
                }).ok());
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[0].seq, 1);
    EXPECT_EQ(out[0].balance, 10);
    EXPECT_EQ(out[1].seq, 1);
    EXPECT_EQ(out[2].seq, 2);
    EXPECT_EQ(out[2].balance, 7);
    EXPECT_FALSE(overflow);
    std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> b, never;
    std::vector<std::pair<std::string, std::int64_t>> accounts;
    std::vector<LedgerEntry> entries;
    ASSERT_TRUE(R([&](Tx& tx) {
                    b = tx.GetAccount("b");
                    never = tx.GetAccount("never");
                    accounts = tx.AllAccounts();
                    entries = tx.AllEntries();
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(b);
    EXPECT_FALSE(never);
    EXPECT_EQ(b->first, 7);
    ASSERT_EQ(b->second.size(), 2u);
    EXPECT_EQ(b->second[1].entry_id, "e3");
    EXPECT_EQ(b->second[1].amount, -3);
    EXPECT_EQ(b->second[1].idempotency_key, "k-e3");
    ASSERT_EQ(accounts.size(), 2u);
    EXPECT_EQ(accounts[0], (std::pair<std::string, std::int64_t>{"a", 7}));
    EXPECT_EQ(accounts[1], (std::pair<std::string, std::int64_t>{"b", 7}));
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[0].account, "a");
    EXPECT_EQ(entries[1].seq, 1);
    EXPECT_EQ(entries[2].seq, 2);
}

// Several threads — and, as replicas would, two store instances — append to the same accounts.
TEST_P(StoreDbTest, ConcurrentLedgerWritersKeepSeqGapFreeAndBalancesExact) {
    auto second = Open();
    constexpr int kThreads = 4, kPerThread = 40;
    std::atomic<int> failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            Store* s = (t % 2 == 0) ? store_.get() : second.get();
            for (int i = 0; i < kPerThread; ++i) {
                const Status st = W(
                    [t, i](Tx& tx) {
                        LedgerEntry e =
                            MakeEntry(i % 2 ? "odd" : "even", t + 1,
                                      "e-" + std::to_string(t) + "-" + std::to_string(i));
                        if (!tx.AppendEntry(e, 0)) return Status{ErrorKind::kPermanent, "overflow"};
                        return Status::Ok();
                    },
                    s);
                if (!st.ok()) {
                    ++failed;
                    ADD_FAILURE() << st.message;
                }
            }
        });
    for (auto& th : threads) th.join();
    second->Shutdown();
    EXPECT_EQ(failed.load(), 0);
    std::vector<LedgerEntry> entries;
    std::vector<std::pair<std::string, std::int64_t>> accounts;
    ASSERT_TRUE(R([&](Tx& tx) {
                    entries = tx.AllEntries();
                    accounts = tx.AllAccounts();
                    return Status::Ok();
                }).ok());
    ASSERT_EQ(entries.size(), static_cast<std::size_t>(kThreads * kPerThread));
    std::map<std::string, std::int64_t> sum, seq;
    for (const auto& e : entries) {
        EXPECT_EQ(e.seq, ++seq[e.account]) << e.account;
        sum[e.account] += e.amount;
        EXPECT_EQ(e.balance, sum[e.account]);
    }
    ASSERT_EQ(accounts.size(), 2u);
    for (const auto& [acct, balance] : accounts) EXPECT_EQ(balance, sum[acct]) << acct;
}

// `--lock redis`: a write whose fencing token is not higher than the highest seen for its
// account is refused whole (a token writes once: two holders handed the same token by a lock
// service that lost its counter cannot both write); unfenced writes (0) neither check nor
// lower the highest.
TEST_P(StoreDbTest, FencedAppendRefusesATokenNotAboveTheHighestSeenAndWritesNothing) {
    auto append = [&](const std::string& id, std::int64_t fence, std::int64_t* highest) {
        return W([=](Tx& tx) {
            LedgerEntry e = MakeEntry("acct", 10, id);
            try {
                tx.AppendEntry(e, fence);
            } catch (const FencedError& f) {
                *highest = f.highest;
                throw;
            }
            return Status::Ok();
        });
    };
    std::int64_t highest = -1;
    EXPECT_TRUE(append("e1", 5, &highest).ok());
    EXPECT_TRUE(append("e2", 7, &highest).ok());
    EXPECT_EQ(append("e3", 7, &highest).kind, ErrorKind::kFenced) << "a token writes once";
    EXPECT_EQ(highest, 7);
    highest = -1;
    const Status stale = append("e4", 6, &highest);
    EXPECT_EQ(stale.kind, ErrorKind::kFenced) << stale.message;
    EXPECT_EQ(highest, 7);
    EXPECT_TRUE(append("e5", 0, &highest).ok()) << "unfenced writes are not checked";
    highest = -1;
    EXPECT_EQ(append("e6", 6, &highest).kind, ErrorKind::kFenced) << "0 must not lower it";
    EXPECT_EQ(highest, 7);
    EXPECT_TRUE(append("e7", 8, &highest).ok());
    std::vector<LedgerEntry> entries;
    ASSERT_TRUE(R([&](Tx& tx) {
                    entries = tx.AllEntries();
                    return Status::Ok();
                }).ok());
    std::vector<std::string> ids;
    for (const auto& e : entries) ids.push_back(e.entry_id + "#" + std::to_string(e.seq));
    EXPECT_EQ(ids, (std::vector<std::string>{"e1#1", "e2#2", "e5#3", "e7#4"}));
    EXPECT_EQ(entries.back().balance, 40);
}

// Writers on two store instances (replicas) take rising tokens and race to write: an older
// token that loses the race is refused, so the accepted tokens rise with seq, and seq stays
// gap-free with exact balances.
TEST_P(StoreDbTest, RacingFencedWritersOnlyEverWriteUnderRisingTokens) {
    auto second = Open();
    constexpr int kThreads = 4, kPerThread = 30;
    std::atomic<std::int64_t> tokens{0};
    std::atomic<int> accepted{0}, fenced{0}, other{0};
    std::mutex mu;
    std::map<std::string, std::int64_t> token_of;  // entry id → the token it was written under
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            Store* s = (t % 2 == 0) ? store_.get() : second.get();
            for (int i = 0; i < kPerThread; ++i) {
                const std::int64_t token = ++tokens;
                const std::string id = "e-" + std::to_string(t) + "-" + std::to_string(i);
                const Status st = W(
                    [&, id, token](Tx& tx) {
                        LedgerEntry e = MakeEntry("shared", 1, id);
                        tx.AppendEntry(e, token);
                        return Status::Ok();
                    },
                    s);
                if (st.ok()) {
                    ++accepted;
                    std::lock_guard lock(mu);
                    token_of[id] = token;
                } else if (st.kind == ErrorKind::kFenced) {
                    ++fenced;
                } else {
                    ++other;
                    ADD_FAILURE() << st.message;
                }
            }
        });
    for (auto& th : threads) th.join();
    second->Shutdown();
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(accepted.load() + fenced.load(), kThreads * kPerThread);
    std::vector<LedgerEntry> entries;
    ASSERT_TRUE(R([&](Tx& tx) {
                    entries = tx.AllEntries();
                    return Status::Ok();
                }).ok());
    ASSERT_EQ(entries.size(), static_cast<std::size_t>(accepted.load()));
    std::int64_t last_token = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        EXPECT_EQ(entries[i].seq, static_cast<std::int64_t>(i + 1));
        EXPECT_EQ(entries[i].balance, static_cast<std::int64_t>(i + 1));
        const std::int64_t token = token_of.at(entries[i].entry_id);
        EXPECT_GT(token, last_token) << "seq " << entries[i].seq << " written under a stale token";
        last_token = token;
    }
}

// A store written by the previous schema version (1: no fencing column) is migrated in place
// when opened: its data stays and fenced writes work.
TEST_P(StoreDbTest, AVersionOneStoreIsMigratedInPlaceKeepingItsData) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    LedgerEntry e = MakeEntry("acct", 3, "old");
                    tx.AppendEntry(e, 0);
                    return Status::Ok();
                }).ok());
    store_->Shutdown();
    store_.reset();
    RawExec("ALTER TABLE accounts DROP COLUMN fence; PRAGMA user_version = 1;",
            "ALTER TABLE accounts DROP COLUMN fence; UPDATE rollsafe_schema SET version = 1;");
    store_ = Open();
    ASSERT_TRUE(W([&](Tx& tx) {
                    LedgerEntry e = MakeEntry("acct", 4, "new");
                    tx.AppendEntry(e, 9);
                    return Status::Ok();
                }).ok());
    EXPECT_EQ(W([&](Tx& tx) {
                  LedgerEntry e = MakeEntry("acct", 4, "stale");
                  tx.AppendEntry(e, 8);
                  return Status::Ok();
              }).kind,
              ErrorKind::kFenced);
    std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> acct;
    ASSERT_TRUE(R([&](Tx& tx) {
                    acct = tx.GetAccount("acct");
                    return Status::Ok();
                }).ok());
    ASSERT_TRUE(acct);
    EXPECT_EQ(acct->first, 7);
    ASSERT_EQ(acct->second.size(), 2u);
    EXPECT_EQ(acct->second[0].entry_id, "old");
    EXPECT_EQ(acct->second[1].seq, 2);
}

// A read job sees one snapshot: a write that commits while it runs is invisible to it.
TEST_P(StoreDbTest, AReadJobSeesOneSnapshot) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    LedgerEntry e = MakeEntry("acct", 1, "e0");
                    tx.AppendEntry(e, 0);
                    return Status::Ok();
                }).ok());
    std::size_t before = 0, after = 0;
    std::int64_t balance_after = 0;
    const Status st = R([&](Tx& tx) {
        before = tx.AllEntries().size();
        const Status w = W([&](Tx& wtx) {
            LedgerEntry e = MakeEntry("acct", 1, "e1");
            wtx.AppendEntry(e, 0);
            return Status::Ok();
        });
        EXPECT_TRUE(w.ok()) << w.message;
        after = tx.AllEntries().size();
        balance_after = tx.AllAccounts().at(0).second;
        return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_EQ(before, 1u);
    EXPECT_EQ(after, 1u);
    EXPECT_EQ(balance_after, 1);
}

TEST_P(StoreDbTest, ReadOnlyOpenReadsButRefusesWrites) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertOperation(MakeOp("k", "a/1", 1, 1));
                    return Status::Ok();
                }).ok());
    Durability ro;
    ro.read_only = true;
    auto reader = Open(ro);
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    std::size_t n = 0;
    reader->Read(
        [&](Tx& tx) {
            n = tx.AllOperations().size();
            return Status::Ok();
        },
        [p](Status s) { p->set_value(s); });
    ASSERT_TRUE(Wait(std::move(f)).ok());
    EXPECT_EQ(n, 1u);
    auto q = std::make_shared<std::promise<Status>>();
    auto g = q->get_future();
    reader->Write([](Tx&) { return Status::Ok(); }, [q](Status s) { q->set_value(s); });
    EXPECT_EQ(Wait(std::move(g)).kind, ErrorKind::kPermanent);
    EXPECT_TRUE(reader->Healthy());
    reader->Shutdown();
}

TEST_P(StoreDbTest, ReopeningKeepsTheDataAndTheSchemaVersion) {
    ASSERT_TRUE(W([&](Tx& tx) {
                    tx.InsertOperation(MakeOp("k", "a/1", 1, 1));
                    return Status::Ok();
                }).ok());
    store_->Shutdown();
    store_ = Open();
    std::optional<Operation> got;
    ASSERT_TRUE(R([&](Tx& tx) {
                    got = tx.GetOperation("anonymous", "k");
                    return Status::Ok();
                }).ok());
    EXPECT_TRUE(got);
    EXPECT_TRUE(store_->Healthy());
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreDbTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace rollsafe::store
