// Countdown fault injection over the exactly-once POST (style rule 12): for N = 0, 1, 2, …
// the Nth store statement of a request fails; after each failure the store must hold no
// half-done effect, and retrying the same request must give exactly one effect and then
// replay it byte for byte.

#include "serve/operations.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rollsafe/http/router.hpp"
#include "rollsafe/journal/journal.hpp"
#include "testing/failing_store.hpp"

namespace rollsafe::serve {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;

/// Every wait in these tests is bounded by this (style rule 11).
constexpr auto kMaxTestWait = 20s;
/// Short, so that a failed attempt's claim expires quickly and renewals happen during work.
constexpr std::chrono::milliseconds kLease{30};
/// The countdown gives up here: an operation needing more statements than this is a bug.
constexpr int kMaxN = 200;
constexpr const char* kAuthorization = "Bearer operations-test-token";

std::int64_t WallMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// A request context on the test's io_context: real timers, cancellable on demand.
class TestContext final : public http::RequestContext {
  public:
    bool Cancelled() const override { return cancelled_; }
    const std::string& ReplicaName() const override { return name_; }
    asio::awaitable<bool> Sleep(std::chrono::milliseconds d) override {
        ++sleeps_;
        if (cancel_on_sleep_) cancelled_ = true;
        if (cancelled_) co_return false;
        asio::steady_timer t(co_await asio::this_coro::executor, d);
        boost::system::error_code ec;
        co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        co_return !ec && !cancelled_;
    }

    /// The request is cancelled when it first sleeps (that is, once it has started work).
    void CancelOnSleep() { cancel_on_sleep_ = true; }
    /// Cancels now (the handler sees it at its next check).
    void Cancel() { cancelled_ = true; }
    int sleeps() const { return sleeps_; }

  private:
    std::string name_ = "test";
    bool cancelled_ = false;
    bool cancel_on_sleep_ = false;
    int sleeps_ = 0;
};

/// What a handler produced: a response, or the http::ApiError it threw (which the server turns
/// into the same status and headers).
struct Outcome {
    bool finished = false;
    bool thrown = false;
    int status = 0;  ///< -1: an exception other than ApiError
    http::Headers headers;
    std::string body;

    std::string Header(std::string_view name) const {
        for (const auto& [k, v] : headers)
            if (http::IEquals(k, name)) return v;
        return {};
    }
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
    os << (o.finished ? "" : "(unfinished) ") << o.status << (o.thrown ? " thrown" : "");
    for (const auto& [k, v] : o.headers) os << " [" << k << ": " << v << "]";
    return os << " " << o.body;
}

/// One handler invocation. Shared with the completion handler, so that whatever the coroutine
/// refers to lives as long as its frame, even after a timeout.
struct Call {
    http::Request req;
    TestContext ctx;
    Outcome out;
};

http::Request Post(const std::string& path, const std::string& body, const std::string& key) {
    http::Request r;
    r.method = "POST";
    r.target = r.path = path;
    r.headers = {{"Content-Type", "application/json"},
                 {"Idempotency-Key", key},
                 {"Authorization", kAuthorization}};
    r.body = body;
    return r;
}

/// When a test request is cancelled (by default never).
struct Cancel {
    bool on_sleep = false;  ///< when it first sleeps (during work)
    std::string after;      ///< right after this recovery point is committed

    static Cancel OnSleep() { return {true, {}}; }
    static Cancel After(std::string point) { return {false, std::move(point)}; }
};

/// The kinds of POST under test.
struct Kind {
    std::string name;
    std::string path;
    std::string body;
    bool entry = false;  ///< the effect is a ledger entry (else a resource)
};

const Kind kFastResource{"fast", "/resources", R"({"data":{"n":1},"work_ms":0})"};
const Kind kSlowResource{"slow", "/resources", R"({"data":{"n":2},"work_ms":30})"};
const Kind kEntry{"entry", "/accounts/a1/entries", R"({"amount":5})", true};

/// Everything in the real store, read behind the injector's back.
struct Truth {
    std::vector<store::Operation> ops;
    std::vector<store::Resource> resources;
    std::vector<store::LedgerEntry> entries;
    std::vector<std::pair<std::string, std::int64_t>> accounts;

    const store::Operation* Op(const std::string& principal, const std::string& key) const {
        for (const auto& op : ops)
            if (op.principal == principal && op.key == key) return &op;
        return nullptr;
    }
    /// Resources and entries made for `(principal, key)`.
    int Effects(const std::string& principal, const std::string& key) const {
        int n = 0;
        for (const auto& r : resources) n += r.principal == principal && r.idempotency_key == key;
        for (const auto& e : entries) n += e.principal == principal && e.idempotency_key == key;
        return n;
    }
};

class OperationsTest : public ::testing::Test {
  protected:
    OperationsTest()
        : store_(std::make_unique<rollsafe::testing::FailingStore>(
              store::OpenSqliteStore(dir_.File("ops.db"), Fast()))),
          env_{.store = *store_,
               .clock = util::SystemClock::Instance(),
               .random = util::SystemRandom(),
               .lease = kLease,
               .retry_after_seconds = 1,
               .max_work_ms = 600'000,
               .after_commit = {}} {}

    static store::Durability Fast() {
        store::Durability d;
        d.synchronous = "off";
        return d;
    }

    /// Runs HandleIdempotentPost to completion on the io_context, waiting at most
    /// kMaxTestWait. A timeout fails the test and stops every later Run().
    Outcome Run(const http::Request& req, const Cancel& cancel = {}) {
        return Run(req, cancel, nullptr);
    }

    /// As above; `started` (if any) is called with the call once it is spawned.
    Outcome Run(const http::Request& req, const Cancel& cancel,
                const std::function<void(Call&)>& started) {
        if (broken_) {
            ADD_FAILURE() << "an earlier request timed out";
            return {};
        }
        auto call = std::make_shared<Call>();
        call->req = req;
        if (cancel.on_sleep) call->ctx.CancelOnSleep();
        if (!cancel.after.empty()) {
            // Runs on the io_context's thread, from inside the handler.
            env_.after_commit = [&ctx = call->ctx, point = cancel.after](const std::string& p) {
                if (p == point) ctx.Cancel();
            };
        }
        Spawn(call);
        if (started) started(*call);
        io_.restart();
        io_.run_for(kMaxTestWait);
        env_.after_commit = nullptr;
        if (!call->out.finished) {
            ADD_FAILURE() << "the request did not finish within " << kMaxTestWait.count() << " s";
            broken_ = true;
        }
        return call->out;
    }

    void Spawn(const std::shared_ptr<Call>& call) {
        asio::co_spawn(io_, HandleIdempotentPost(env_, call->req, call->ctx),
                       [call](std::exception_ptr e, http::Response r) {
                           Outcome& out = call->out;
                           out.finished = true;
                           if (!e) {
                               out.status = r.status;
                               out.headers = std::move(r.headers);
                               out.body = std::move(r.body);
                               return;
                           }
                           try {
                               std::rethrow_exception(e);
                           } catch (const http::ApiError& ae) {
                               out.thrown = true;
                               out.status = ae.status;
                               out.headers = ae.headers;
                               out.body = ae.what();
                           } catch (const std::exception& ex) {
                               out.thrown = true;
                               out.status = -1;
                               out.body = ex.what();
                           }
                       });
    }

    /// Retries `req` (disarmed) until it is answered with something other than 409, waiting
    /// out the lease after each 409. Counts the 409s in `conflicts`.
    Outcome RetryUntilDone(const http::Request& req, int* conflicts) {
        const auto deadline = std::chrono::steady_clock::now() + kMaxTestWait;
        Outcome o;
        while (std::chrono::steady_clock::now() < deadline && !broken_) {
            o = Run(req);
            if (o.status != 409) return o;
            ++*conflicts;
            EXPECT_FALSE(o.Header("Retry-After").empty()) << o;
            EXPECT_GE(std::atoll(o.Header("Retry-After").c_str()), 1) << o;
            std::this_thread::sleep_for(kLease + 5ms);
        }
        ADD_FAILURE() << "still 409 after " << kMaxTestWait.count() << " s: " << o;
        return o;
    }

    Truth ReadTruth() {
        Truth t;
        auto p = std::make_shared<std::promise<store::Status>>();
        auto f = p->get_future();
        store_->real().Read(
            [&t](store::Tx& tx) {
                t.ops = tx.AllOperations();
                t.resources = tx.AllResources();
                t.entries = tx.AllEntries();
                t.accounts = tx.AllAccounts();
                return store::Status::Ok();
            },
            [p](store::Status st) { p->set_value(std::move(st)); });
        if (f.wait_for(kMaxTestWait) != std::future_status::ready) {
            // The job refers to `t`: returning would let it write to freed memory.
            std::fprintf(stderr, "FATAL: reading the store took more than %lld s\n",
                         static_cast<long long>(kMaxTestWait.count()));
            std::abort();
        }
        const auto st = f.get();
        EXPECT_TRUE(st.ok()) << st.message;
        return t;
    }

    /// The invariants that hold after any failure, for every key in the store:
    /// - no effect without a completed journal row for its key (no half-done effect);
    /// - at most one effect per key, and exactly one per completed 201;
    /// - the ledger adds up: seqs 1..n without gaps, running balances, account balances.
    static void ExpectInvariants(const Truth& t) {
        std::map<std::pair<std::string, std::string>, int> effects;
        for (const auto& r : t.resources) {
            ++effects[{r.principal, r.idempotency_key}];
            const auto* op = t.Op(r.principal, r.idempotency_key);
            ASSERT_NE(op, nullptr) << "resource " << r.id << " has no journal row";
            EXPECT_EQ(op->state, "completed")
                << "resource " << r.id << " exists for key " << op->key << " not completed";
            EXPECT_NE(op->response_body.find(r.id), std::string::npos)
                << "key " << op->key << " answered " << op->response_body << " but made " << r.id;
        }
        for (const auto& e : t.entries) {
            ++effects[{e.principal, e.idempotency_key}];
            const auto* op = t.Op(e.principal, e.idempotency_key);
            ASSERT_NE(op, nullptr) << "entry " << e.entry_id << " has no journal row";
            EXPECT_EQ(op->state, "completed")
                << "entry " << e.entry_id << " exists for key " << op->key << " not completed";
            EXPECT_NE(op->response_body.find(e.entry_id), std::string::npos)
                << "key " << op->key << " answered " << op->response_body << " but made "
                << e.entry_id;
        }
        for (const auto& [k, n] : effects) EXPECT_EQ(n, 1) << "key " << k.second;
        for (const auto& op : t.ops) {
            if (op.state != "completed" || op.response_status != 201) continue;
            const auto it = effects.find({op.principal, op.key});
            EXPECT_TRUE(it != effects.end())
                << "key " << op.key << " completed with 201 but has no effect";
        }
        std::map<std::string, std::pair<std::int64_t, std::int64_t>> ledger;  // seq, balance
        for (const auto& e : t.entries) {
            auto& [seq, balance] = ledger[e.account];
            EXPECT_EQ(e.seq, seq + 1) << "gap in account " << e.account;
            seq = e.seq;
            balance += e.amount;
            EXPECT_EQ(e.balance, balance) << "account " << e.account << " seq " << e.seq;
        }
        for (const auto& [account, balance] : t.accounts)
            EXPECT_EQ(balance, ledger[account].second) << "account " << account;
    }

    /// Id of the effect a 201 body names ("id" of a resource, "entry_id" of an entry).
    static std::string EffectId(const Kind& kind, const std::string& body) {
        boost::system::error_code ec;
        const json::value v = json::parse(body, ec);
        const char* field = kind.entry ? "entry_id" : "id";
        if (ec || !v.is_object() || !v.as_object().contains(field) ||
            !v.as_object().at(field).is_string())
            return "<no " + std::string(field) + " in " + body + ">";
        return std::string(v.as_object().at(field).as_string());
    }

    /// After a request answered 201: exactly one effect for the key, the one the body names,
    /// and a retry replays the answer byte for byte.
    void ExpectExactlyOnceAndReplay(const Kind& kind, const http::Request& req,
                                    const std::string& key, const Outcome& done) {
        const std::string principal = journal::PrincipalFor(kAuthorization);
        const Truth t = ReadTruth();
        ExpectInvariants(t);
        EXPECT_EQ(t.Effects(principal, key), 1);
        const auto* op = t.Op(principal, key);
        ASSERT_NE(op, nullptr);
        EXPECT_EQ(op->state, "completed");
        EXPECT_EQ(op->response_status, 201);
        EXPECT_EQ(op->response_body, done.body);
        const std::string id = EffectId(kind, done.body);
        if (kind.entry) {
            int found = 0;
            for (const auto& e : t.entries) found += e.entry_id == id && e.idempotency_key == key;
            EXPECT_EQ(found, 1) << "no entry " << id;
        } else {
            int found = 0;
            for (const auto& r : t.resources) found += r.id == id && r.idempotency_key == key;
            EXPECT_EQ(found, 1) << "no resource " << id;
            EXPECT_EQ(done.Header("Location"), "/resources/" + id) << done;
        }

        const Outcome replay = Run(req);
        EXPECT_EQ(replay.status, 201) << replay;
        EXPECT_FALSE(replay.thrown) << replay;
        EXPECT_EQ(replay.body, done.body);
        EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true") << replay;
        EXPECT_EQ(replay.Header("Location"), done.Header("Location")) << replay;
        EXPECT_EQ(replay.Header("Content-Type"), done.Header("Content-Type")) << replay;
        EXPECT_EQ(ReadTruth().Effects(principal, key), 1) << "the replay made another effect";
    }

    /// After a failed attempt for `key`: the store holds no effect for it and any claim it left
    /// is in progress with a lease no longer than one lease from now (released or expiring).
    void ExpectNothingHalfDone(const std::string& key) {
        const std::string principal = journal::PrincipalFor(kAuthorization);
        const Truth t = ReadTruth();
        ExpectInvariants(t);
        EXPECT_EQ(t.Effects(principal, key), 0) << "a failed attempt left an effect";
        if (const auto* op = t.Op(principal, key)) {
            EXPECT_EQ(op->state, "in_progress") << "a failed attempt completed its row";
            EXPECT_LE(op->lease_until_ms, WallMs() + kLease.count())
                << "a failed attempt holds a lease longer than one lease";
        }
    }

    struct MatrixResult {
        int faults = 0;          ///< attempts that received the injected fault
        bool completed = false;  ///< an attempt ran with no fault firing
        std::set<std::string> fired_at;
        int conflicts = 0;  ///< 409s seen while retrying
    };

    /// The countdown: request `kind` with the store armed at N = 0, 1, 2, … until a request
    /// completes with no fault fired. Each N uses its own key.
    MatrixResult FailMatrix(const Kind& kind) {
        MatrixResult m;
        for (int n = 0; n < kMaxN && !m.completed && !broken_; ++n) {
            SCOPED_TRACE(kind.name + " N=" + std::to_string(n));
            const std::string key = kind.name + "-" + std::to_string(n);
            const http::Request req = Post(kind.path, kind.body, key);

            store_->Arm(n);
            const Outcome first = Run(req);
            store_->Disarm();
            Outcome done = first;
            if (!store_->Fired()) {
                m.completed = true;
                EXPECT_EQ(first.status, 201) << first;
            } else {
                ++m.faults;
                m.fired_at.insert(store_->FiredAt());
                SCOPED_TRACE("fault in " + store_->FiredAt());
                // The injected error is transient: the client is told to retry.
                EXPECT_EQ(first.status, 503) << first;
                EXPECT_FALSE(first.Header("Retry-After").empty()) << first;
                ExpectNothingHalfDone(key);
                done = RetryUntilDone(req, &m.conflicts);
                EXPECT_EQ(done.status, 201) << done;
                EXPECT_TRUE(done.Header("Idempotent-Replayed").empty())
                    << "the first success after a failure cannot be a replay: " << done;
            }
            if (done.status == 201) ExpectExactlyOnceAndReplay(kind, req, key, done);
        }
        EXPECT_TRUE(m.completed) << kind.name << " never completed within " << kMaxN
                                 << " injected faults";
        return m;
    }

    /// The countdown over lost acknowledgements: the Nth commit of a request happens but is
    /// reported in doubt (kInDoubt). The client must be told to retry, and the retry must find
    /// exactly one effect, whether the lost commit was the claim, a phase or the effect itself.
    MatrixResult LostAckMatrix(const Kind& kind) {
        MatrixResult m;
        const std::string principal = journal::PrincipalFor(kAuthorization);
        for (int n = 0; n < kMaxN && !m.completed && !broken_; ++n) {
            SCOPED_TRACE(kind.name + " lost ack N=" + std::to_string(n));
            const std::string key = kind.name + "-ack-" + std::to_string(n);
            const http::Request req = Post(kind.path, kind.body, key);

            store_->ArmLostAck(n);
            const Outcome first = Run(req);
            store_->DisarmLostAck();
            Outcome done = first;
            if (!store_->AckLost()) {
                m.completed = true;
                EXPECT_EQ(first.status, 201) << first;
            } else {
                ++m.faults;
                EXPECT_EQ(first.status, 503) << first;
                EXPECT_FALSE(first.Header("Retry-After").empty()) << first;
                const Truth t = ReadTruth();
                ExpectInvariants(t);
                EXPECT_LE(t.Effects(principal, key), 1);
                done = RetryUntilDone(req, &m.conflicts);
                EXPECT_EQ(done.status, 201) << done;
            }
            if (done.status == 201) ExpectExactlyOnceAndReplay(kind, req, key, done);
        }
        EXPECT_TRUE(m.completed) << kind.name << " never completed within " << kMaxN
                                 << " lost acknowledgements";
        return m;
    }

    rollsafe::testing::TempDir dir_;  // outlives the store
    asio::io_context io_{1};          // outlives the store, whose callbacks post to it
    std::unique_ptr<rollsafe::testing::FailingStore> store_;
    OperationEnv env_;
    bool broken_ = false;
};

TEST_F(OperationsTest, FastResourceFailsAtEveryStatementAndRecovers) {
    const auto m = FailMatrix(kFastResource);
    // The key's lookup, then the journal row born completed with the effect, in one commit:
    // three failure points.
    EXPECT_EQ(m.faults, 3);
    EXPECT_EQ(m.fired_at,
              (std::set<std::string>{"GetOperation", "InsertOperation", "InsertResource"}));
    // Everything was rolled back each time, so no retry ever met a live claim.
    EXPECT_EQ(m.conflicts, 0);
}

TEST_F(OperationsTest, MultiPhaseResourceFailsAtEveryStatementAndRecovers) {
    const auto m = FailMatrix(kSlowResource);
    // lookup, claim, reserve, one renewal (30 ms of work), worked, then effect + completion.
    EXPECT_EQ(m.faults, 7);
    EXPECT_EQ(m.fired_at, (std::set<std::string>{"GetOperation", "InsertOperation", "SaveProgress",
                                                 "Renew", "InsertResource", "Complete"}));
}

TEST_F(OperationsTest, LedgerEntryFailsAtEveryStatementAndRecovers) {
    const auto m = FailMatrix(kEntry);
    // The read that decides whether to queue for the account's lock, then the claim's own
    // lookup, the claim, the append and the completion.
    EXPECT_EQ(m.faults, 5);
    EXPECT_EQ(m.fired_at, (std::set<std::string>{"GetOperation", "InsertOperation", "AppendEntry",
                                                 "Complete"}));
    EXPECT_EQ(m.conflicts, 0);
    // One entry of 5 per key: one key per fault, plus the run that completed.
    const Truth t = ReadTruth();
    ASSERT_EQ(t.accounts.size(), 1u);
    EXPECT_EQ(t.accounts[0].first, "a1");
    EXPECT_EQ(t.accounts[0].second, 5 * static_cast<std::int64_t>(t.entries.size()));
    EXPECT_EQ(t.entries.size(), static_cast<std::size_t>(m.faults) + 1);
}

/// The second level: a multi-phase operation fails at one point, and then its retry (the
/// takeover and resume) fails at each of its own statements in turn.
TEST_F(OperationsTest, ResumeAfterAFailureFailsAtEveryStatementAndRecovers) {
    std::set<std::string> resume_fired_at;
    for (int first_n = 1; first_n <= 5 && !broken_; ++first_n) {
        int m = 0;
        bool completed = false;
        const std::string key = "resume-" + std::to_string(first_n);
        const http::Request req = Post(kSlowResource.path, kSlowResource.body, key);
        store_->Arm(first_n);
        const Outcome first = Run(req);
        store_->Disarm();
        ASSERT_TRUE(store_->Fired()) << "N=" << first_n;
        ASSERT_EQ(first.status, 503) << first;
        for (; m < kMaxN && !completed && !broken_; ++m) {
            SCOPED_TRACE("first N=" + std::to_string(first_n) + " resume M=" + std::to_string(m));
            // Wait out whatever lease the previous attempt left, so the retry takes over.
            std::this_thread::sleep_for(kLease + 5ms);
            store_->Arm(m);
            const Outcome retry = Run(req);
            store_->Disarm();
            if (!store_->Fired()) {
                completed = true;
                EXPECT_EQ(retry.status, 201) << retry;
                ExpectExactlyOnceAndReplay(kSlowResource, req, key, retry);
                break;
            }
            resume_fired_at.insert(store_->FiredAt());
            EXPECT_EQ(retry.status, 503) << retry;
            ExpectNothingHalfDone(key);
        }
        EXPECT_TRUE(completed);
    }
    EXPECT_TRUE(resume_fired_at.count("TakeOver")) << "the takeover itself was never failed";
    EXPECT_TRUE(resume_fired_at.count("GetOperation"));
    EXPECT_TRUE(resume_fired_at.count("Complete"));
}

/// store.hpp and docs/error-policy.md: kPermanent is "a bug or corrupt data: 500, do not
/// retry"; only kTransient (and kInDoubt) become 503 + Retry-After. The claim phase maps the
/// kinds that way; every later phase must too. After the fault is gone the key still completes
/// exactly once.
TEST_F(OperationsTest, PermanentStoreErrorIs500InEveryPhase) {
    const std::string principal = journal::PrincipalFor(kAuthorization);
    std::map<std::string, int> status_by_point;
    bool completed = false;
    for (int n = 0; n < kMaxN && !completed && !broken_; ++n) {
        const std::string key = "permanent-" + std::to_string(n);
        const http::Request req = Post(kSlowResource.path, kSlowResource.body, key);
        store_->Arm(n, store::ErrorKind::kPermanent);
        const Outcome first = Run(req);
        store_->Disarm();
        if (!store_->Fired()) {
            completed = true;
            EXPECT_EQ(first.status, 201) << first;
            continue;
        }
        SCOPED_TRACE("N=" + std::to_string(n) + " fault in " + store_->FiredAt());
        status_by_point[std::to_string(n) + ":" + store_->FiredAt()] = first.status;
        EXPECT_EQ(first.status, 500) << first;
        ExpectNothingHalfDone(key);
        int conflicts = 0;
        const Outcome done = RetryUntilDone(req, &conflicts);
        EXPECT_EQ(done.status, 201) << done;
        if (done.status == 201) ExpectExactlyOnceAndReplay(kSlowResource, req, key, done);
    }
    EXPECT_TRUE(completed);
    std::string seen;
    for (const auto& [point, status] : status_by_point)
        seen += point + "=" + std::to_string(status) + " ";
    RecordProperty("status_by_fault", seen);
}

TEST_F(OperationsTest, FastResourceLostAcknowledgementIsRetriedToOneEffect) {
    const auto m = LostAckMatrix(kFastResource);
    EXPECT_EQ(m.faults, 1);  // one commit
}

TEST_F(OperationsTest, MultiPhaseResourceLostAcknowledgementIsRetriedToOneEffect) {
    const auto m = LostAckMatrix(kSlowResource);
    EXPECT_EQ(m.faults, 5);  // claim, reserved, renewal, worked, finalize
}

TEST_F(OperationsTest, LedgerEntryLostAcknowledgementIsRetriedToOneEffect) {
    const auto m = LostAckMatrix(kEntry);
    EXPECT_EQ(m.faults, 1);
    const Truth t = ReadTruth();
    ASSERT_EQ(t.accounts.size(), 1u);
    EXPECT_EQ(t.accounts[0].second, 5 * static_cast<std::int64_t>(t.entries.size()));
    EXPECT_EQ(t.entries.size(), 2u);
}

/// A request cancelled during its work, with the store failing at each statement before and
/// during the cancellation (the claim, the reservation, the release): the answer is 503,
/// nothing is half done, and a retry completes it exactly once.
TEST_F(OperationsTest, CancelledRequestFailsAtEveryStatementAndRecovers) {
    std::set<std::string> fired_at;
    bool completed = false;
    int n = 0;
    for (; n < kMaxN && !completed && !broken_; ++n) {
        SCOPED_TRACE("cancel N=" + std::to_string(n));
        const std::string key = "cancel-n" + std::to_string(n);
        const http::Request req = Post(kSlowResource.path, kSlowResource.body, key);
        store_->Arm(n);
        const Outcome first = Run(req, Cancel::OnSleep());
        store_->Disarm();
        EXPECT_EQ(first.status, 503) << first;
        if (store_->Fired()) {
            fired_at.insert(store_->FiredAt());
        } else {
            completed = true;
        }
        ExpectNothingHalfDone(key);
        int conflicts = 0;
        const Outcome done = RetryUntilDone(req, &conflicts);
        EXPECT_EQ(done.status, 201) << done;
        if (completed) {
            EXPECT_EQ(conflicts, 0) << "a released claim made the retry wait";
        }
        if (done.status == 201) ExpectExactlyOnceAndReplay(kSlowResource, req, key, done);
    }
    EXPECT_TRUE(completed);
    EXPECT_EQ(fired_at, (std::set<std::string>{"GetOperation", "InsertOperation", "SaveProgress",
                                               "Release"}));
}

TEST_F(OperationsTest, CancelledBeforeFinalizeReleasesTheClaimForAnImmediateRetry) {
    const http::Request req = Post(kSlowResource.path, kSlowResource.body, "cancel-final");
    const Outcome first = Run(req, Cancel::After("worked"));
    EXPECT_EQ(first.status, 503) << first;
    const std::string principal = journal::PrincipalFor(kAuthorization);
    {
        const Truth t = ReadTruth();
        ExpectInvariants(t);
        EXPECT_EQ(t.Effects(principal, "cancel-final"), 0);
        const auto* op = t.Op(principal, "cancel-final");
        ASSERT_NE(op, nullptr);
        EXPECT_EQ(op->state, "in_progress");
        EXPECT_EQ(op->owner, "") << "the cancelled request kept its claim";
        EXPECT_EQ(op->recovery_point, "worked");
    }
    const Outcome retry = Run(req);
    EXPECT_EQ(retry.status, 201) << retry;
    if (retry.status == 201) ExpectExactlyOnceAndReplay(kSlowResource, req, "cancel-final", retry);
}

/// http/context.hpp: "A cancelled handler must not commit anything new". A request cancelled
/// while its claim is being committed may keep the claim it cannot take back, but must only
/// release it afterwards, not go on to commit the next phase.
TEST_F(OperationsTest, CancelledWhileClaimingCommitsNothingButTheRelease) {
    const http::Request req = Post(kSlowResource.path, kSlowResource.body, "cancel-claim");
    Call* running = nullptr;
    const std::int64_t writes_before = store_->Writes();
    store_->OnWrite([&](std::int64_t index) {
        if (index == writes_before && running) running->ctx.Cancel();  // the claim's commit
    });
    const Outcome first = Run(req, {}, [&](Call& c) { running = &c; });
    store_->OnWrite(nullptr);
    EXPECT_EQ(first.status, 503) << first;
    const std::string principal = journal::PrincipalFor(kAuthorization);
    const Truth t = ReadTruth();
    ExpectInvariants(t);
    EXPECT_EQ(t.Effects(principal, "cancel-claim"), 0);
    const auto* op = t.Op(principal, "cancel-claim");
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(op->owner, "") << "the cancelled request kept its claim";
    EXPECT_EQ(op->recovery_point, "") << "a phase was committed after the request was cancelled";
    EXPECT_EQ(store_->Writes() - writes_before, 2) << "commits: claim and release only";

    const Outcome retry = Run(req);
    EXPECT_EQ(retry.status, 201) << retry;
    if (retry.status == 201) ExpectExactlyOnceAndReplay(kSlowResource, req, "cancel-claim", retry);
}

TEST_F(OperationsTest, CancelledDuringWorkReleasesTheClaimForAnImmediateRetry) {
    const http::Request req = Post(kSlowResource.path, kSlowResource.body, "cancel-1");
    const Outcome first = Run(req, Cancel::OnSleep());
    EXPECT_EQ(first.status, 503) << first;
    const std::string principal = journal::PrincipalFor(kAuthorization);
    {
        const Truth t = ReadTruth();
        ExpectInvariants(t);
        EXPECT_EQ(t.Effects(principal, "cancel-1"), 0);
        const auto* op = t.Op(principal, "cancel-1");
        ASSERT_NE(op, nullptr);
        EXPECT_EQ(op->state, "in_progress");
        EXPECT_EQ(op->owner, "") << "the cancelled request kept its claim";
        EXPECT_LE(op->lease_until_ms, WallMs());
        EXPECT_EQ(op->recovery_point, "reserved");
    }
    // Released: the retry resumes at once, no 409 and no waiting out the lease.
    const Outcome retry = Run(req);
    EXPECT_EQ(retry.status, 201) << retry;
    if (retry.status == 201) ExpectExactlyOnceAndReplay(kSlowResource, req, "cancel-1", retry);
}

TEST_F(OperationsTest, SameKeyDifferentBodyIs422AndMakesNoEffect) {
    const Outcome done = Run(Post("/resources", R"({"data":1})", "mismatch-1"));
    ASSERT_EQ(done.status, 201) << done;
    const Outcome other = Run(Post("/resources", R"({"data":2})", "mismatch-1"));
    EXPECT_EQ(other.status, 422) << other;
    const Outcome other_path = Run(Post("/accounts/a1/entries", R"({"amount":5})", "mismatch-1"));
    EXPECT_EQ(other_path.status, 422) << other_path;
    const Truth t = ReadTruth();
    ExpectInvariants(t);
    EXPECT_EQ(t.Effects(journal::PrincipalFor(kAuthorization), "mismatch-1"), 1);
    EXPECT_TRUE(t.entries.empty());
}

TEST_F(OperationsTest, InProgressElsewhereIs409WithRetryAfter) {
    // Another replica holds a live claim on the key.
    const std::string principal = journal::PrincipalFor(kAuthorization);
    const http::Request req = Post(kSlowResource.path, kSlowResource.body, "busy-1");
    store::Operation op;
    op.principal = principal;
    op.key = "busy-1";
    op.fingerprint = journal::Fingerprint(req.method, req.path, req.body);
    op.state = "in_progress";
    op.owner = "other/1";
    op.lease_until_ms = WallMs() + 60'000;
    op.method = req.method;
    op.path = req.path;
    op.request_body = req.body;
    op.created_at_ms = op.updated_at_ms = WallMs();
    auto p = std::make_shared<std::promise<store::Status>>();
    auto f = p->get_future();
    store_->real().Write(
        [op](store::Tx& tx) {
            return tx.InsertOperation(op) ? store::Status::Ok()
                                          : store::Status{store::ErrorKind::kConflict, "exists"};
        },
        [p](store::Status st) { p->set_value(std::move(st)); });
    ASSERT_EQ(f.wait_for(kMaxTestWait), std::future_status::ready);
    ASSERT_TRUE(f.get().ok());

    const Outcome o = Run(req);
    EXPECT_EQ(o.status, 409) << o;
    const auto retry_after = std::atoll(o.Header("Retry-After").c_str());
    EXPECT_GE(retry_after, 59) << o;
    EXPECT_LE(retry_after, 60) << o;
    EXPECT_EQ(ReadTruth().Effects(principal, "busy-1"), 0);
}

/// Two requests with the same key on one loop: the second arrives after the first's lease
/// lapsed (kLease is shorter than the work's first renewal) and takes the operation over. Who
/// wins is timing; either way there is one effect, and every 201 names it.
TEST_F(OperationsTest, ConcurrentSameKeyMakesOneEffect) {
    const Kind slow{"race", "/resources", R"({"data":{"n":3},"work_ms":200})"};
    const http::Request req = Post(slow.path, slow.body, "race-1");
    auto a = std::make_shared<Call>();
    auto b = std::make_shared<Call>();
    a->req = b->req = req;
    Spawn(a);
    asio::steady_timer later(io_, kLease + 15ms);
    later.async_wait([&](boost::system::error_code) { Spawn(b); });
    io_.restart();
    io_.run_for(kMaxTestWait);
    ASSERT_TRUE(a->out.finished && b->out.finished) << "timed out";
    for (const auto* o : {&a->out, &b->out})
        EXPECT_TRUE(o->status == 201 || o->status == 409) << *o;
    RecordProperty("first_status", a->out.status);
    RecordProperty("second_status", b->out.status);
    int conflicts = 0;
    const Outcome done = RetryUntilDone(req, &conflicts);
    ASSERT_EQ(done.status, 201) << done;
    for (const auto* o : {&a->out, &b->out}) {
        if (o->status == 201) {
            EXPECT_EQ(o->body, done.body) << "two different 201s for one key";
        }
    }
    ExpectExactlyOnceAndReplay(slow, req, "race-1", done);
}

}  // namespace
}  // namespace rollsafe::serve
