#include <sqlite3.h>
#include <stdlib.h>
#include "testing/temp_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rollsafe/store/store.hpp"

namespace rollsafe::store {

// Readable failure messages (found by argument-dependent lookup).
void PrintTo(ErrorKind k, std::ostream* os) {
    switch (k) {
        case ErrorKind::kNone:
            *os << "kNone";
            return;
        case ErrorKind::kConflict:
            *os << "kConflict";
            return;
        case ErrorKind::kTransient:
            *os << "kTransient";
            return;
        case ErrorKind::kInDoubt:
            *os << "kInDoubt";
            return;
        case ErrorKind::kFenced:
            *os << "kFenced";
            return;
        case ErrorKind::kPermanent:
            *os << "kPermanent";
            return;
    }
    *os << "ErrorKind(" << static_cast<int>(k) << ")";
}

namespace {

using namespace std::chrono_literals;

/// Every wait in these tests is bounded by this (style rule 11).
constexpr auto kMaxTestWait = 20s;

using rollsafe::testing::TempDir;

Resource MakeResource(std::string id, std::string data = R"({"n":1})") {
    Resource r;
    r.id = std::move(id);
    r.data_json = std::move(data);
    r.created_at = "2026-01-01T00:00:00.000Z";
    r.owner = "replica-a";
    return r;
}

/// Inserts and waits for the callback; nullopt (after a test failure) on timeout.
std::optional<Status> InsertAndWait(Store& store, Resource r) {
    auto done = std::make_shared<std::promise<Status>>();
    auto result = done->get_future();
    store.InsertResource(std::move(r), [done](Status st) { done->set_value(std::move(st)); });
    if (result.wait_for(kMaxTestWait) != std::future_status::ready) {
        ADD_FAILURE() << "InsertResource did not call back within the test deadline";
        return std::nullopt;
    }
    return result.get();
}

struct GetResult {
    Status status;
    std::optional<Resource> found;
};

std::optional<GetResult> GetAndWait(Store& store, std::string id) {
    auto done = std::make_shared<std::promise<GetResult>>();
    auto result = done->get_future();
    store.GetResource(std::move(id), [done](Status st, std::optional<Resource> found) {
        done->set_value(GetResult{std::move(st), std::move(found)});
    });
    if (result.wait_for(kMaxTestWait) != std::future_status::ready) {
        ADD_FAILURE() << "GetResource did not call back within the test deadline";
        return std::nullopt;
    }
    return result.get();
}

/// Collects the callbacks of many asynchronous calls: which id got which status, how many
/// times each was called, and a signal once `expected` calls have arrived. The callbacks share
/// ownership of the state, so a late callback after a failed (timed-out) test is harmless.
class Tally {
  public:
    explicit Tally(std::size_t expected) : s_(std::make_shared<State>()) {
        s_->expected = expected;
        done_ = s_->all.get_future().share();
    }

    std::function<void(Status)> For(std::string id) {
        return [s = s_, id = std::move(id)](Status st) {
            std::lock_guard lock(s->mu);
            ++s->calls[id];
            s->statuses[id] = std::move(st);
            if (++s->total == s->expected) s->all.set_value();
        };
    }
    /// Waits for all expected callbacks; false (after a test failure) on timeout.
    bool Wait() {
        if (done_.wait_for(kMaxTestWait) == std::future_status::ready) return true;
        std::lock_guard lock(s_->mu);
        ADD_FAILURE() << "only " << s_->total << " of " << s_->expected
                      << " callbacks arrived within the test deadline";
        return false;
    }
    std::map<std::string, Status> Statuses() {
        std::lock_guard lock(s_->mu);
        return s_->statuses;
    }
    std::map<std::string, int> Calls() {
        std::lock_guard lock(s_->mu);
        return s_->calls;
    }

  private:
    struct State {
        std::mutex mu;
        std::size_t expected = 0;
        std::size_t total = 0;
        std::map<std::string, Status> statuses;
        std::map<std::string, int> calls;
        std::promise<void> all;
    };
    std::shared_ptr<State> s_;
    std::shared_future<void> done_;
};

/// Reads every id back through `store` and returns how many were found, checking each one's
/// data against `expected_data(id)`.
template <class DataOf>
std::size_t CountPresent(Store& store, const std::vector<std::string>& ids, DataOf expected_data) {
    struct Shared {
        std::mutex mu;
        std::size_t arrived = 0, found = 0;
        std::vector<std::string> errors;
        std::promise<void> all;
    };
    auto shared = std::make_shared<Shared>();
    auto all = shared->all.get_future();
    const std::size_t n = ids.size();
    for (const auto& id : ids) {
        store.GetResource(
            id, [shared, id, n, want = expected_data(id)](Status st, std::optional<Resource> r) {
                std::lock_guard lock(shared->mu);
                if (!st.ok())
                    shared->errors.push_back(id + ": " + st.message);
                else if (r && r->id == id && r->data_json == want)
                    ++shared->found;
                else if (r)
                    shared->errors.push_back(id + ": wrong row, data " + r->data_json);
                if (++shared->arrived == n) shared->all.set_value();
            });
    }
    if (all.wait_for(kMaxTestWait) != std::future_status::ready) {
        ADD_FAILURE() << "reads did not all call back within the test deadline";
        return 0;
    }
    std::lock_guard lock(shared->mu);
    for (std::size_t i = 0; i < shared->errors.size() && i < 5; ++i)
        ADD_FAILURE() << shared->errors[i];
    return shared->found;
}

/// Runs one SQL query with the sqlite3 C API on its own connection and returns the first
/// column of the first row as text.
std::string QueryText(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        ADD_FAILURE() << "cannot open " << path << ": " << (db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return {};
    }
    sqlite3_busy_timeout(db, 5000);
    std::string out;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        out = p ? p : "";
    } else {
        ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

void ExecOrFail(const std::string& path, const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(
        sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
        SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
}

// ---- round trips ----

TEST(SqliteStore, InsertThenGetRoundTripsEveryField) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    Resource r = MakeResource("0190a5c2-0000-7000-8000-000000000001",
                              R"({"name":"caf\u00e9 \"q\"","list":[1,2.5,null,true]})");
    r.created_at = "2026-11-29T16:47:55.123Z";
    r.idempotency_key = "key-123";
    r.owner = "replica-b";
    const auto st = InsertAndWait(*store, r);
    ASSERT_TRUE(st);
    ASSERT_TRUE(st->ok()) << st->message;

    const auto got = GetAndWait(*store, r.id);
    ASSERT_TRUE(got);
    ASSERT_TRUE(got->status.ok()) << got->status.message;
    ASSERT_TRUE(got->found.has_value());
    EXPECT_EQ(got->found->id, r.id);
    EXPECT_EQ(got->found->data_json, r.data_json);
    EXPECT_EQ(got->found->created_at, r.created_at);
    EXPECT_EQ(got->found->idempotency_key, r.idempotency_key);
    EXPECT_EQ(got->found->owner, r.owner);
}

TEST(SqliteStore, EmptyIdempotencyKeyReadsBackEmpty) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    const Resource r = MakeResource("no-key");
    ASSERT_TRUE(InsertAndWait(*store, r).value_or(Status{ErrorKind::kPermanent, "timeout"}).ok());
    const auto got = GetAndWait(*store, r.id);
    ASSERT_TRUE(got && got->found);
    EXPECT_EQ(got->found->idempotency_key, "");
}

TEST(SqliteStore, GetMissingIdIsOkWithNothingFound) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    ASSERT_TRUE(InsertAndWait(*store, MakeResource("present")));
    const auto got = GetAndWait(*store, "absent");
    ASSERT_TRUE(got);
    EXPECT_TRUE(got->status.ok()) << got->status.message;
    EXPECT_EQ(got->status.kind, ErrorKind::kNone);
    EXPECT_FALSE(got->found.has_value());
}

TEST(SqliteStore, AcknowledgedWritesSurviveReopening) {
    TempDir dir;
    const std::string path = dir.File("a.db");
    {
        auto store = OpenSqliteStore(path);
        const auto st = InsertAndWait(*store, MakeResource("durable", R"([1,2,3])"));
        ASSERT_TRUE(st && st->ok());
    }
    auto reopened = OpenSqliteStore(path);
    const auto got = GetAndWait(*reopened, "durable");
    ASSERT_TRUE(got && got->found);
    EXPECT_EQ(got->found->data_json, "[1,2,3]");
}

TEST(SqliteStore, IsHealthyAfterOpening) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    EXPECT_TRUE(store->Healthy());
}

// ---- conflicts inside one group commit ----

/// Holds the writer thread inside the callback of a first insert until Release(), so that
/// everything submitted meanwhile queues up and goes into the next group commit together.
class WriterGate {
  public:
    explicit WriterGate(Store& store, Resource first) {
        store.InsertResource(std::move(first), [entered = entered_, release = release_,
                                                first_status = first_status_](Status st) {
            first_status->set_value(std::move(st));
            entered->set_value();
            // Bounded: a broken test must not hang the writer (and the test binary) forever.
            (void)release->wait_for(kMaxTestWait);
        });
    }
    /// Waits until the writer thread is parked in the gate; false on timeout.
    bool WaitUntilHeld() {
        return entered_->get_future().wait_for(kMaxTestWait) == std::future_status::ready;
    }
    void Release() { release_promise_.set_value(); }
    Status FirstStatus() { return first_status_->get_future().get(); }

  private:
    std::shared_ptr<std::promise<void>> entered_ = std::make_shared<std::promise<void>>();
    std::shared_ptr<std::promise<Status>> first_status_ = std::make_shared<std::promise<Status>>();
    std::promise<void> release_promise_;
    std::shared_ptr<std::shared_future<void>> release_ =
        std::make_shared<std::shared_future<void>>(release_promise_.get_future().share());
};

TEST(SqliteStore, DuplicateIdIsConflictWithoutFailingTheRestOfItsBatch) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    WriterGate gate(*store, MakeResource("dup", R"("original")"));
    ASSERT_TRUE(gate.WaitUntilHeld()) << "the first insert never called back";
    EXPECT_TRUE(gate.FirstStatus().ok());

    // All of these queue behind the gate, so the writer takes them as one batch (< max_batch).
    constexpr int kEachSide = 50;
    std::vector<std::string> ids;
    Tally tally(2 * kEachSide + 1);
    for (int i = 0; i < kEachSide; ++i) {
        ids.push_back("before-" + std::to_string(i));
        store->InsertResource(MakeResource(ids.back()), tally.For(ids.back()));
    }
    store->InsertResource(MakeResource("dup", R"("overwrite?")"), tally.For("dup"));
    for (int i = 0; i < kEachSide; ++i) {
        ids.push_back("after-" + std::to_string(i));
        store->InsertResource(MakeResource(ids.back()), tally.For(ids.back()));
    }
    gate.Release();
    ASSERT_TRUE(tally.Wait());

    const auto statuses = tally.Statuses();
    EXPECT_EQ(statuses.at("dup").kind, ErrorKind::kConflict) << statuses.at("dup").message;
    for (const auto& id : ids)
        EXPECT_TRUE(statuses.at(id).ok()) << id << ": " << statuses.at(id).message;

    EXPECT_EQ(CountPresent(*store, ids, [](const std::string&) { return R"({"n":1})"; }),
              ids.size());
    const auto dup = GetAndWait(*store, "dup");
    ASSERT_TRUE(dup && dup->found);
    EXPECT_EQ(dup->found->data_json, R"("original")") << "a conflicting insert overwrote the row";
}

TEST(SqliteStore, SameIdTwiceInOneBatchCommitsTheFirstAndConflictsTheSecond) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    WriterGate gate(*store, MakeResource("gate"));
    ASSERT_TRUE(gate.WaitUntilHeld());
    Tally tally(3);
    store->InsertResource(MakeResource("x", R"("first")"), tally.For("x#1"));
    store->InsertResource(MakeResource("x", R"("second")"), tally.For("x#2"));
    store->InsertResource(MakeResource("y"), tally.For("y"));
    gate.Release();
    ASSERT_TRUE(tally.Wait());
    const auto statuses = tally.Statuses();
    EXPECT_TRUE(statuses.at("x#1").ok()) << statuses.at("x#1").message;
    EXPECT_EQ(statuses.at("x#2").kind, ErrorKind::kConflict);
    EXPECT_TRUE(statuses.at("y").ok());
    const auto x = GetAndWait(*store, "x");
    ASSERT_TRUE(x && x->found);
    EXPECT_EQ(x->found->data_json, R"("first")");
}

// ---- concurrency ----

TEST(SqliteStore, TwoThousandConcurrentInsertsFromFourThreadsAreAllAcknowledgedAndPresent) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    constexpr int kThreads = 4;
    constexpr int kPerThread = 500;
    std::vector<std::string> ids;
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kPerThread; ++i)
            ids.push_back("t" + std::to_string(t) + "-" + std::to_string(i));
    const auto data_of = [](const std::string& id) { return "{\"id\":\"" + id + "\"}"; };

    Tally tally(ids.size());
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            for (int i = 0; i < kPerThread; ++i) {
                const std::string& id = ids[static_cast<std::size_t>(t * kPerThread + i)];
                store->InsertResource(MakeResource(id, data_of(id)), tally.For(id));
            }
        });
    for (auto& th : threads) th.join();
    ASSERT_TRUE(tally.Wait());

    const auto statuses = tally.Statuses();
    const auto calls = tally.Calls();
    ASSERT_EQ(statuses.size(), ids.size());
    for (const auto& id : ids) {
        EXPECT_TRUE(statuses.at(id).ok()) << id << ": " << statuses.at(id).message;
        EXPECT_EQ(calls.at(id), 1) << id << " called back more than once";
    }
    EXPECT_EQ(CountPresent(*store, ids, data_of), ids.size());
    EXPECT_EQ(QueryText(dir.File("a.db"), "SELECT count(*) FROM resources"),
              std::to_string(ids.size()));
}

TEST(SqliteStore, TwoStoresOnOneFileWritingConcurrentlyLoseNothing) {
    TempDir dir;
    const std::string path = dir.File("shared.db");
    // Two replicas sharing the file, each with its own writer and reader connection.
    auto a = OpenSqliteStore(path);
    auto b = OpenSqliteStore(path);
    constexpr int kPerStore = 1000;
    std::vector<std::string> ids;
    for (int i = 0; i < kPerStore; ++i) ids.push_back("a-" + std::to_string(i));
    for (int i = 0; i < kPerStore; ++i) ids.push_back("b-" + std::to_string(i));
    const auto data_of = [](const std::string& id) { return "\"" + id + "\""; };

    Tally tally(ids.size());
    std::latch start(2);
    auto writer = [&](Store& s, std::size_t from) {
        start.arrive_and_wait();
        for (std::size_t i = from; i < from + kPerStore; ++i)
            s.InsertResource(MakeResource(ids[i], data_of(ids[i])), tally.For(ids[i]));
    };
    std::thread ta(writer, std::ref(*a), 0);
    std::thread tb(writer, std::ref(*b), kPerStore);
    ta.join();
    tb.join();
    ASSERT_TRUE(tally.Wait());
    const auto statuses = tally.Statuses();
    for (const auto& id : ids)
        EXPECT_TRUE(statuses.at(id).ok()) << id << ": " << statuses.at(id).message;

    // Each replica sees the other's rows.
    EXPECT_EQ(CountPresent(*a, ids, data_of), ids.size());
    EXPECT_EQ(CountPresent(*b, ids, data_of), ids.size());
}

TEST(SqliteStore, TwoStoresOpeningTheSameNewFileAtOnceBothSucceed) {
    TempDir dir;
    // The failure this guards against is a race, so give it several chances.
    for (int round = 0; round < 40; ++round) {
        const std::string path = dir.File("race-" + std::to_string(round) + ".db");
        std::latch start(2);
        std::unique_ptr<Store> stores[2];
        std::string errors[2];
        auto open = [&](int i) {
            start.arrive_and_wait();
            try {
                stores[i] = OpenSqliteStore(path);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        };
        std::thread t0(open, 0), t1(open, 1);
        t0.join();
        t1.join();
        ASSERT_TRUE(stores[0] && stores[1])
            << "round " << round << ": " << errors[0] << " / " << errors[1];
        const auto st = InsertAndWait(*stores[0], MakeResource("r"));
        ASSERT_TRUE(st && st->ok());
        const auto got = GetAndWait(*stores[1], "r");
        ASSERT_TRUE(got && got->found);
    }
}

TEST(SqliteStore, ANewStoreOpensWhileAnotherIsWritingTheSameFile) {
    // A rolling update: the new replica starts while the old one is busy committing.
    TempDir dir;
    const std::string path = dir.File("busy.db");
    auto old_replica = OpenSqliteStore(path);
    std::atomic<bool> stop{false};
    std::atomic<int> failed_writes{0};
    std::thread writer([&] {
        int i = 0;
        while (!stop.load()) {
            // Keep a bounded backlog: wait for each insert, with the test deadline.
            const auto st = InsertAndWait(*old_replica, MakeResource("old-" + std::to_string(i++)));
            if (!st || !st->ok()) ++failed_writes;
            if (!st) break;
        }
    });
    std::vector<std::string> errors;
    constexpr int kOpens = 10;
    for (int round = 0; round < kOpens; ++round) {
        try {
            auto new_replica = OpenSqliteStore(path);
            const auto st =
                InsertAndWait(*new_replica, MakeResource("new-" + std::to_string(round)));
            if (!st || !st->ok())
                errors.push_back("insert failed: " + (st ? st->message : "timeout"));
        } catch (const std::exception& e) {
            errors.push_back(e.what());
        }
    }
    stop.store(true);
    writer.join();
    EXPECT_TRUE(errors.empty()) << errors.size() << " of " << kOpens
                                << " opens failed, first: " << errors.front();
    EXPECT_EQ(failed_writes.load(), 0);
}

// ---- shutdown ----

TEST(SqliteStore, ShutdownFinishesQueuedWrites) {
    TempDir dir;
    const std::string path = dir.File("a.db");
    constexpr int kCount = 300;
    std::vector<std::string> ids;
    for (int i = 0; i < kCount; ++i) ids.push_back("q-" + std::to_string(i));
    Tally tally(ids.size());
    {
        auto store = OpenSqliteStore(path);
        for (const auto& id : ids) store->InsertResource(MakeResource(id), tally.For(id));
        store->Shutdown();
        // Shutdown returned: every queued write has been called back, successfully.
        const auto statuses = tally.Statuses();
        ASSERT_EQ(statuses.size(), ids.size()) << "Shutdown returned before finishing queued work";
        for (const auto& id : ids)
            EXPECT_TRUE(statuses.at(id).ok()) << id << ": " << statuses.at(id).message;
    }
    auto reopened = OpenSqliteStore(path);
    EXPECT_EQ(CountPresent(*reopened, ids, [](const std::string&) { return R"({"n":1})"; }),
              ids.size());
}

TEST(SqliteStore, CallsAfterShutdownFailTransient) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    store->Shutdown();
    const auto st = InsertAndWait(*store, MakeResource("late"));
    ASSERT_TRUE(st);
    EXPECT_EQ(st->kind, ErrorKind::kTransient) << st->message;
    const auto got = GetAndWait(*store, "late");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status.kind, ErrorKind::kTransient);
    EXPECT_FALSE(got->found.has_value());
}

TEST(SqliteStore, ShutdownIsIdempotent) {
    TempDir dir;
    auto store = OpenSqliteStore(dir.File("a.db"));
    store->Shutdown();
    store->Shutdown();
    const auto st = InsertAndWait(*store, MakeResource("late"));
    ASSERT_TRUE(st);
    EXPECT_EQ(st->kind, ErrorKind::kTransient);
}

// ---- opening and migration ----

TEST(SqliteStore, SchemaNewerThanTheBinaryRefusesToOpenAndLeavesTheFileAlone) {
    TempDir dir;
    const std::string path = dir.File("future.db");
    ExecOrFail(path, "PRAGMA user_version=99");
    ASSERT_EQ(QueryText(path, "PRAGMA user_version"), "99");
    try {
        auto store = OpenSqliteStore(path);
        FAIL() << "opened a database whose schema is newer than the binary";
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("99"), std::string::npos) << msg;
        EXPECT_NE(msg.find("newer"), std::string::npos) << msg;
    }
    EXPECT_EQ(QueryText(path, "PRAGMA user_version"), "99");
}

TEST(SqliteStore, UnopenablePathThrowsNamingThePath) {
    TempDir dir;
    const std::string path = dir.File("no-such-dir/a.db");
    try {
        auto store = OpenSqliteStore(path);
        FAIL() << "opened " << path;
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
}

/// Open file descriptors of this process (the directory listing's own descriptor included,
/// which is the same in every call).
std::size_t OpenFdCount() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

TEST(SqliteStore, FileThatIsNotADatabaseThrowsWithoutLeakingTheConnection) {
    TempDir dir;
    const std::string path = dir.File("junk.db");
    {
        std::ofstream junk(path, std::ios::binary);
        junk << std::string(8192, 'x');
    }
    const std::size_t fds_before = OpenFdCount();
    try {
        auto store = OpenSqliteStore(path);
        FAIL() << "opened a file that is not a database";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("not a database"), std::string::npos) << e.what();
    }
    // A failed open must close what it opened (the replica retries, or exits and restarts).
    EXPECT_EQ(OpenFdCount(), fds_before) << "the SQLite connection (and its file) was leaked";
}

TEST(SqliteStore, CreatesTheSchemaAtTheCurrentVersion) {
    TempDir dir;
    const std::string path = dir.File("a.db");
    auto store = OpenSqliteStore(path);
    EXPECT_EQ(QueryText(path, "PRAGMA user_version"), "2");
    EXPECT_EQ(
        QueryText(path,
                  "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='resources'"),
        "1");
    EXPECT_EQ(QueryText(path,
                        "SELECT count(*) FROM pragma_table_info('accounts') WHERE name = "
                        "'fence'"),
              "1");
}

TEST(OpenStore, RejectsUnsupportedSchemes) {
    EXPECT_THROW(OpenStore("mysql://user@host/db"), std::invalid_argument);
    EXPECT_THROW(OpenStore("/tmp/plain-path.db"), std::invalid_argument);
    EXPECT_THROW(OpenStore(""), std::invalid_argument);
}

TEST(OpenStore, UnreachablePostgresThrowsACleanError) {
    // Port 1 on loopback refuses at once: the store must not start without its database.
    try {
        OpenStore("postgresql://postgres@127.0.0.1:1/db");
        ADD_FAILURE() << "OpenStore did not throw";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot connect to PostgreSQL"), std::string::npos)
            << e.what();
    }
}

TEST(OpenStore, RejectsSqliteUrlWithoutAFile) {
    EXPECT_THROW(OpenStore("sqlite:"), std::invalid_argument);
    EXPECT_THROW(OpenStore("sqlite://"), std::invalid_argument);
}

TEST(OpenStore, OpensSqlitePathInBothForms) {
    TempDir dir;
    for (const std::string& url :
         {"sqlite:" + dir.File("one.db"), "sqlite://" + dir.File("two.db")}) {
        std::unique_ptr<Store> store;
        ASSERT_NO_THROW(store = OpenStore(url)) << url;
        const auto st = InsertAndWait(*store, MakeResource("x"));
        ASSERT_TRUE(st && st->ok()) << url;
    }
    EXPECT_TRUE(std::filesystem::exists(dir.File("one.db")));
    EXPECT_TRUE(std::filesystem::exists(dir.File("two.db")));
}

// ---- durability settings ----

TEST(SqliteStore, UsesWriteAheadLogMode) {
    TempDir dir;
    const std::string path = dir.File("a.db");
    auto store = OpenSqliteStore(path);
    ASSERT_TRUE(InsertAndWait(*store, MakeResource("x")));
    // journal_mode=WAL is persistent, so another connection reports it.
    EXPECT_EQ(QueryText(path, "PRAGMA journal_mode"), "wal");
}

/// A pass-through SQLite VFS, installed as the process default, that counts xSync calls on
/// write-ahead-log files. `PRAGMA synchronous` is a per-connection setting that no other
/// connection can read, so this is how a test observes it: in WAL mode, FULL syncs the WAL at
/// every commit and NORMAL does not (https://www.sqlite.org/pragma.html#pragma_synchronous).
class WalSyncCounter {
  public:
    WalSyncCounter() {
        orig_ = sqlite3_vfs_find(nullptr);
        if (!orig_) throw std::runtime_error("no default SQLite VFS");
        vfs_ = *orig_;
        vfs_.zName = "rollsafe-test-wal-sync-counter";
        vfs_.szOsFile = static_cast<int>(sizeof(File)) + orig_->szOsFile;
        vfs_.pNext = nullptr;
        vfs_.xOpen = &Open;
        instance_ = this;
        if (sqlite3_vfs_register(&vfs_, /*makeDflt=*/1) != SQLITE_OK)
            throw std::runtime_error("sqlite3_vfs_register failed");
    }
    ~WalSyncCounter() {
        sqlite3_vfs_unregister(&vfs_);
        sqlite3_vfs_register(orig_, /*makeDflt=*/1);
        instance_ = nullptr;
    }
    WalSyncCounter(const WalSyncCounter&) = delete;
    WalSyncCounter& operator=(const WalSyncCounter&) = delete;

    int WalSyncs() const { return wal_syncs_.load(); }

  private:
    struct File {
        sqlite3_file base;
        sqlite3_file* real;
        bool is_wal;
    };
    static sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

    static int Open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out) {
        auto* file = reinterpret_cast<File*>(f);
        file->real = reinterpret_cast<sqlite3_file*>(file + 1);
        file->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
        std::memset(file->real, 0, static_cast<std::size_t>(instance_->orig_->szOsFile));
        const int rc = instance_->orig_->xOpen(instance_->orig_, name, file->real, flags, out);
        if (rc != SQLITE_OK) {
            if (file->real->pMethods) file->real->pMethods->xClose(file->real);
            file->base.pMethods = nullptr;
            return rc;
        }
        file->base.pMethods = &kMethods;
        return SQLITE_OK;
    }
    static int Close(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
    static int Read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
        return Real(f)->pMethods->xRead(Real(f), p, n, off);
    }
    static int Write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
        return Real(f)->pMethods->xWrite(Real(f), p, n, off);
    }
    static int Truncate(sqlite3_file* f, sqlite3_int64 size) {
        return Real(f)->pMethods->xTruncate(Real(f), size);
    }
    static int Sync(sqlite3_file* f, int flags) {
        if (reinterpret_cast<File*>(f)->is_wal && instance_) ++instance_->wal_syncs_;
        return Real(f)->pMethods->xSync(Real(f), flags);
    }
    static int FileSize(sqlite3_file* f, sqlite3_int64* size) {
        return Real(f)->pMethods->xFileSize(Real(f), size);
    }
    static int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
    static int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
    static int CheckReservedLock(sqlite3_file* f, int* out) {
        return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
    }
    static int FileControl(sqlite3_file* f, int op, void* arg) {
        return Real(f)->pMethods->xFileControl(Real(f), op, arg);
    }
    static int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
    static int DeviceCharacteristics(sqlite3_file* f) {
        return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
    }
    static int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** pp) {
        return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, pp);
    }
    static int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
        return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
    }
    static void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
    static int ShmUnmap(sqlite3_file* f, int del) {
        return Real(f)->pMethods->xShmUnmap(Real(f), del);
    }
    static int Fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
        return Real(f)->pMethods->xFetch(Real(f), off, n, pp);
    }
    static int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
        return Real(f)->pMethods->xUnfetch(Real(f), off, p);
    }

    static constexpr sqlite3_io_methods kMethods = {3,
                                                    &Close,
                                                    &Read,
                                                    &Write,
                                                    &Truncate,
                                                    &Sync,
                                                    &FileSize,
                                                    &Lock,
                                                    &Unlock,
                                                    &CheckReservedLock,
                                                    &FileControl,
                                                    &SectorSize,
                                                    &DeviceCharacteristics,
                                                    &ShmMap,
                                                    &ShmLock,
                                                    &ShmBarrier,
                                                    &ShmUnmap,
                                                    &Fetch,
                                                    &Unfetch};

    static inline WalSyncCounter* instance_ = nullptr;
    sqlite3_vfs* orig_ = nullptr;
    sqlite3_vfs vfs_{};
    std::atomic<int> wal_syncs_{0};
};

/// Number of WAL syncs that happened between submitting one insert and its acknowledgement.
std::optional<int> WalSyncsDuringOneAcknowledgedInsert(const std::string& path, Durability d) {
    WalSyncCounter counter;
    std::optional<int> syncs;
    {
        auto store = OpenSqliteStore(path, d);
        const int before = counter.WalSyncs();
        auto done = std::make_shared<std::promise<int>>();
        auto result = done->get_future();
        store->InsertResource(MakeResource("x"), [done, &counter](Status st) {
            EXPECT_TRUE(st.ok()) << st.message;
            done->set_value(counter.WalSyncs());  // read on the writer thread, at the ack
        });
        if (result.wait_for(kMaxTestWait) == std::future_status::ready)
            syncs = result.get() - before;
        else
            ADD_FAILURE() << "insert did not call back within the test deadline";
    }  // the store (and its connections using the VFS) is gone before the VFS is removed
    return syncs;
}

TEST(SqliteStore, DefaultDurabilityIsFullAndSyncsTheLogBeforeAcknowledging) {
    EXPECT_EQ(Durability{}.synchronous, "full");
    TempDir dir;
    const auto syncs = WalSyncsDuringOneAcknowledgedInsert(dir.File("a.db"), Durability{});
    ASSERT_TRUE(syncs);
    EXPECT_GE(*syncs, 1) << "an acknowledged write was not synced to the WAL";
}

TEST(SqliteStore, SynchronousNormalDoesNotSyncTheLogOnCommit) {
    // The control for the test above: shows that the counter tells the two settings apart.
    TempDir dir;
    Durability normal;
    normal.synchronous = "normal";
    const auto syncs = WalSyncsDuringOneAcknowledgedInsert(dir.File("a.db"), normal);
    ASSERT_TRUE(syncs);
    EXPECT_EQ(*syncs, 0);
}

}  // namespace
}  // namespace rollsafe::store
