// Writes that share one commit: SQLite's writer and the PostgreSQL store's workers run the
// queued write jobs of a batch in one transaction, each job in its own savepoint. Run against
// both stores (PostgreSQL at ROLLSAFE_TEST_PG, a schema of its own per test), plus the
// PostgreSQL-only cases: --pg-batch 1, a deadlock between two batches, a connection lost mid-batch.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
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

/// Runs `sql` on a fresh connection; returns the first column of the first row ("" when none).
std::string PgQuery(const std::string& url, const std::string& sql) {
    PGconn* c = PQconnectdb(url.c_str());
    EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    PGresult* r = PQexec(c, ("SET client_min_messages = warning; " + sql).c_str());
    const auto st = PQresultStatus(r);
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) << PQerrorMessage(c);
    std::string out = st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    PQclear(r);
    PQfinish(c);
    return out;
}

Operation MakeOp(std::string key) {
    Operation o;
    o.principal = "anonymous";
    o.key = std::move(key);
    o.fingerprint = "fp";
    o.state = "in_progress";
    o.owner = "a/1";
    o.lease_until_ms = 1000;
    o.method = "POST";
    o.path = "/resources";
    o.created_at_ms = 100;
    o.updated_at_ms = 100;
    return o;
}

/// A write job and what became of it.
struct Tracked {
    std::shared_ptr<std::promise<Status>> done = std::make_shared<std::promise<Status>>();
    std::future<Status> result = done->get_future();
    std::shared_ptr<std::atomic<int>> runs = std::make_shared<std::atomic<int>>(0);

    Status Wait() {
        if (result.wait_for(kMaxTestWait) != std::future_status::ready)
            return {ErrorKind::kPermanent, "no callback within the test deadline"};
        return result.get();
    }
};

class BatchFixture {
  protected:
    /// `postgres` or `sqlite`; for PostgreSQL a schema of its own.
    void OpenFor(const std::string& which) {
        which_ = which;
        if (which == "postgres") {
            const char* base = std::getenv("ROLLSAFE_TEST_PG");
            ASSERT_TRUE(base && *base)
                << "ROLLSAFE_TEST_PG is not set: run eval \"$(scripts/services.sh start)\" "
                   "(scripts/test.sh does)";
            static std::atomic<int> n{0};
            schema_ = "b_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
            base_url_ = base;
            PgQuery(base_url_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
            PgQuery(base_url_, "CREATE SCHEMA " + schema_);
            url_ = base_url_ + (base_url_.find('?') == std::string::npos ? "?" : "&") +
                   "options=-csearch_path%3D" + schema_;
        } else {
            url_ = "sqlite:" + dir_.File("store.db");
        }
    }
    void Close() {
        for (auto& s : stores_) s->Shutdown();
        stores_.clear();
        if (!schema_.empty()) PgQuery(base_url_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
    }

    /// One worker (PostgreSQL), so that what is queued behind a running job is one batch.
    Store* Open(int pg_batch = Durability{}.pg_batch) {
        Durability d;
        d.pg_pool = 1;
        d.pg_batch = pg_batch;
        if (which_ == "sqlite") d.synchronous = "off";
        stores_.push_back(OpenStore(url_, d));
        return stores_.back().get();
    }

    Tracked Submit(Store* s, std::function<Status(Tx&)> body) {
        Tracked t;
        s->Write(
            [body = std::move(body), runs = t.runs](Tx& tx) {
                ++*runs;
                return body(tx);
            },
            [p = t.done](Status st) { p->set_value(std::move(st)); });
        return t;
    }

    /// A job that holds its worker until released: once it runs, the worker has taken its
    /// batch, so every write submitted before Release() queues behind it.
    struct Gate {
        std::promise<void> running, release;
        std::shared_future<void> go = release.get_future().share();
        Tracked job;
        void AwaitRunning() {
            ASSERT_EQ(running.get_future().wait_for(kMaxTestWait), std::future_status::ready);
        }
    };
    std::unique_ptr<Gate> Hold(Store* s) {
        auto g = std::make_unique<Gate>();
        g->job = Submit(s, [g = g.get()](Tx&) {
            g->running.set_value();
            if (g->go.wait_for(kMaxTestWait) != std::future_status::ready)
                return Status{ErrorKind::kPermanent, "gate never released"};
            return Status::Ok();
        });
        g->AwaitRunning();
        return g;
    }

    /// Journal rows with this key committed, seen from outside the store.
    int CommittedRows(const std::string& key) {
        const std::string sql = "SELECT count(*) FROM journal WHERE key = '" + key + "'";
        if (which_ == "postgres")
            return std::stoi(PgQuery(base_url_, "SET search_path = " + schema_ + "; " + sql));
        sqlite3* db = nullptr;
        EXPECT_EQ(
            sqlite3_open_v2(dir_.File("store.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt* st = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
            << sqlite3_errmsg(db);
        int n = -1;
        if (st && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
    }

    rollsafe::testing::TempDir dir_;
    std::string which_, url_, base_url_, schema_;
    std::vector<std::unique_ptr<Store>> stores_;
};

class StoreDbBatchTest : public BatchFixture, public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override { OpenFor(GetParam()); }
    void TearDown() override { Close(); }
};

// Five writes queued behind a running one form one batch: one transaction (a write of the
// batch is not visible outside before the last has run), and a job that fails — by returning
// an error, or on a statement PostgreSQL refused — takes back only its own statements.
TEST_P(StoreDbBatchTest, WritesQueuedTogetherCommitOnceAndAFailingJobTakesBackOnlyItsOwn) {
    Store* s = Open();
    ASSERT_TRUE(
        Submit(s,
               [](Tx& tx) {
                   tx.InsertResource({"r0", "{}", "2026-01-01T00:00:00.000Z", "", "rep", "p"});
                   return Status::Ok();
               })
            .Wait()
            .ok());
    auto gate = Hold(s);
    std::promise<void> probe_running, probe_checked;
    std::shared_future<void> checked = probe_checked.get_future().share();
    std::vector<Tracked> jobs;
    jobs.push_back(Submit(s, [](Tx& tx) {
        EXPECT_TRUE(tx.InsertOperation(MakeOp("b1")));
        return Status::Ok();
    }));
    jobs.push_back(Submit(s, [&probe_running, checked](Tx& tx) {
        EXPECT_TRUE(tx.InsertOperation(MakeOp("b2")));
        probe_running.set_value();
        if (checked.wait_for(kMaxTestWait) != std::future_status::ready)
            return Status{ErrorKind::kPermanent, "probe never released"};
        return Status::Ok();
    }));
    jobs.push_back(Submit(s, [](Tx& tx) {
        tx.InsertOperation(MakeOp("b3"));
        return Status{ErrorKind::kConflict, "changed my mind"};
    }));
    jobs.push_back(Submit(s, [](Tx& tx) {
        tx.InsertOperation(MakeOp("b4"));
        tx.InsertResource({"r0", "{}", "2026-01-01T00:00:00.000Z", "", "rep", "p"});  // dup
        return Status::Ok();
    }));
    jobs.push_back(Submit(s, [](Tx& tx) {
        // The transaction goes on after its neighbours failed, and sees the batch's writes.
        if (!tx.GetOperation("anonymous", "b1")) return Status{ErrorKind::kPermanent, "no b1"};
        EXPECT_FALSE(tx.GetOperation("anonymous", "b3")) << "b3 was rolled back";
        EXPECT_TRUE(tx.InsertOperation(MakeOp("b5")));
        return Status::Ok();
    }));
    gate->release.set_value();
    ASSERT_TRUE(gate->job.Wait().ok());
    ASSERT_EQ(probe_running.get_future().wait_for(kMaxTestWait), std::future_status::ready);
    EXPECT_EQ(CommittedRows("b1"), 0) << "b1 committed before the rest of its batch ran";
    probe_checked.set_value();

    std::vector<Status> st;
    for (auto& j : jobs) st.push_back(j.Wait());
    EXPECT_TRUE(st[0].ok()) << st[0].message;
    EXPECT_TRUE(st[1].ok()) << st[1].message;
    EXPECT_EQ(st[2].kind, ErrorKind::kConflict) << st[2].message;
    EXPECT_EQ(st[3].kind, ErrorKind::kConflict) << st[3].message;
    EXPECT_TRUE(st[4].ok()) << st[4].message;
    for (auto& j : jobs) EXPECT_EQ(j.runs->load(), 1) << "an ordinary failure re-runs nothing";
    EXPECT_EQ(CommittedRows("b1"), 1);
    EXPECT_EQ(CommittedRows("b2"), 1);
    EXPECT_EQ(CommittedRows("b3"), 0);
    EXPECT_EQ(CommittedRows("b4"), 0);
    EXPECT_EQ(CommittedRows("b5"), 1);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreDbBatchTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

class StoreDbPgBatchTest : public BatchFixture, public ::testing::Test {
  protected:
    void SetUp() override { OpenFor("postgres"); }
    void TearDown() override { Close(); }
};

// --pg-batch 1: each write is its own transaction, committed before the next one runs.
TEST_F(StoreDbPgBatchTest, BatchOfOneCommitsEachWriteOnItsOwn) {
    Store* s = Open(/*pg_batch=*/1);
    auto gate = Hold(s);
    std::promise<void> probe_running, probe_checked;
    std::shared_future<void> checked = probe_checked.get_future().share();
    Tracked first = Submit(s, [](Tx& tx) {
        tx.InsertOperation(MakeOp("c1"));
        return Status::Ok();
    });
    Tracked probe = Submit(s, [&probe_running, checked](Tx&) {
        probe_running.set_value();
        if (checked.wait_for(kMaxTestWait) != std::future_status::ready)
            return Status{ErrorKind::kPermanent, "probe never released"};
        return Status::Ok();
    });
    gate->release.set_value();
    ASSERT_EQ(probe_running.get_future().wait_for(kMaxTestWait), std::future_status::ready);
    EXPECT_EQ(CommittedRows("c1"), 1);
    probe_checked.set_value();
    EXPECT_TRUE(first.Wait().ok());
    EXPECT_TRUE(probe.Wait().ok());
    EXPECT_TRUE(gate->job.Wait().ok());
}

TEST_F(StoreDbPgBatchTest, BatchSizeOutsideOneTo64IsRefused) {
    EXPECT_THROW(Open(0), std::invalid_argument);
    EXPECT_THROW(Open(65), std::invalid_argument);
}

// Two replicas' batches lock two journal rows in opposite orders: PostgreSQL aborts one
// statement with a deadlock (40P01). That job alone is rolled back (to its savepoint), its
// batch neighbour commits, and it runs again in a new transaction once the other batch
// committed: every job succeeds, the victim ran twice, nothing else did.
TEST_F(StoreDbPgBatchTest, ADeadlockedJobIsRetriedAloneAndItsBatchNeighbourCommitsOnce) {
    Store* s1 = Open();
    Store* s2 = Open();
    ASSERT_TRUE(Submit(s1,
                       [](Tx& tx) {
                           tx.InsertOperation(MakeOp("k1"));
                           tx.InsertOperation(MakeOp("k2"));
                           return Status::Ok();
                       })
                    .Wait()
                    .ok());
    auto g1 = Hold(s1);
    auto g2 = Hold(s2);
    // Both first jobs hold their row's lock before either second job asks for the other row.
    struct Locked {
        std::atomic<int> count{0};
        std::promise<void> both;
        std::shared_future<void> ready = both.get_future().share();
    };
    auto locked = std::make_shared<Locked>();
    auto renew = [locked](const char* key, std::int64_t lease, bool first) {
        return [=, counted = std::make_shared<std::atomic<bool>>(false)](Tx& tx) {
            if (!first && locked->ready.wait_for(kMaxTestWait) != std::future_status::ready)
                return Status{ErrorKind::kPermanent, "the first jobs never locked their rows"};
            if (!tx.Renew("anonymous", key, "a/1", lease))
                return Status{ErrorKind::kPermanent, std::string("not renewed: ") + key};
            if (first && !counted->exchange(true) && ++locked->count == 2) locked->both.set_value();
            return Status::Ok();
        };
    };
    Tracked a1 = Submit(s1, renew("k1", 2001, true));
    Tracked a2 = Submit(s1, renew("k2", 2002, false));
    Tracked b1 = Submit(s2, renew("k2", 3001, true));
    Tracked b2 = Submit(s2, renew("k1", 3002, false));
    g1->release.set_value();
    g2->release.set_value();
    for (Tracked* t : {&a1, &a2, &b1, &b2}) {
        const Status st = t->Wait();
        EXPECT_TRUE(st.ok()) << st.message;
    }
    EXPECT_EQ(a1.runs->load(), 1);
    EXPECT_EQ(b1.runs->load(), 1);
    EXPECT_EQ(a2.runs->load() + b2.runs->load(), 3) << "exactly one deadlock victim, run twice";
    // Whichever was the victim, it ran last: k1 ends with b2's lease, k2 with a2's.
    std::optional<Operation> k1, k2;
    Tracked read;
    s1->Read(
        [&](Tx& tx) {
            k1 = tx.GetOperation("anonymous", "k1");
            k2 = tx.GetOperation("anonymous", "k2");
            return Status::Ok();
        },
        [p = read.done](Status st) { p->set_value(std::move(st)); });
    ASSERT_TRUE(read.Wait().ok());
    ASSERT_TRUE(k1 && k2);
    EXPECT_EQ(k1->lease_until_ms, 3002);
    EXPECT_EQ(k2->lease_until_ms, 2002);
}

// The connection dies while a batch runs (before COMMIT): nothing of the batch was committed,
// and every job of it — done, running, or not yet run — fails kTransient. The next write
// reconnects.
TEST_F(StoreDbPgBatchTest, AConnectionLostMidBatchFailsEveryJobOfItTransientAndCommitsNothing) {
    Store* s = Open();
    auto gate = Hold(s);
    std::promise<void> probe_running, probe_checked;
    std::shared_future<void> checked = probe_checked.get_future().share();
    std::vector<Tracked> jobs;
    jobs.push_back(Submit(s, [](Tx& tx) {
        tx.InsertOperation(MakeOp("d1"));
        return Status::Ok();
    }));
    jobs.push_back(Submit(s, [&probe_running, checked](Tx& tx) {
        probe_running.set_value();
        if (checked.wait_for(kMaxTestWait) != std::future_status::ready)
            return Status{ErrorKind::kPermanent, "probe never released"};
        tx.InsertOperation(MakeOp("d2"));  // the server closed the connection: throws
        return Status::Ok();
    }));
    jobs.push_back(Submit(s, [](Tx& tx) {
        tx.InsertOperation(MakeOp("d3"));
        return Status::Ok();
    }));
    gate->release.set_value();
    ASSERT_TRUE(gate->job.Wait().ok());
    ASSERT_EQ(probe_running.get_future().wait_for(kMaxTestWait), std::future_status::ready);
    // The store's backend: the one session with this schema's journal open for writing (d1).
    EXPECT_EQ(PgQuery(base_url_,
                      "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                      " WHERE relation = '" +
                          schema_ + ".journal'::regclass AND mode = 'RowExclusiveLock'"),
              "1");
    probe_checked.set_value();
    for (auto& j : jobs) {
        const Status st = j.Wait();
        EXPECT_EQ(st.kind, ErrorKind::kTransient) << st.message;
    }
    EXPECT_EQ(jobs[2].runs->load(), 0) << "a job after the loss is not run on a dead connection";
    EXPECT_EQ(CommittedRows("d1"), 0);
    EXPECT_EQ(CommittedRows("d2"), 0);
    EXPECT_EQ(CommittedRows("d3"), 0);
    const Status again = Submit(s, [](Tx& tx) {
                             tx.InsertOperation(MakeOp("d4"));
                             return Status::Ok();
                         }).Wait();
    EXPECT_TRUE(again.ok()) << again.message;
    EXPECT_EQ(CommittedRows("d4"), 1);
}

}  // namespace
}  // namespace rollsafe::store
