#include "rollsafe/journal/journal.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "rollsafe/store/store.hpp"
#include "testing/failing_store.hpp"

namespace rollsafe::journal {

// Readable failure messages (found by argument-dependent lookup).
void PrintTo(Decision d, std::ostream* os) {
    switch (d) {
        case Decision::kExecute:
            *os << "kExecute";
            return;
        case Decision::kResume:
            *os << "kResume";
            return;
        case Decision::kReplay:
            *os << "kReplay";
            return;
        case Decision::kInProgress:
            *os << "kInProgress";
            return;
        case Decision::kMismatch:
            *os << "kMismatch";
            return;
    }
    *os << "Decision(" << static_cast<int>(d) << ")";
}

namespace {

using namespace std::chrono_literals;

/// Every wait in these tests is bounded by this (style rule 11).
constexpr auto kMaxTestWait = 20s;

// ---- ParseIdempotencyKey ----

std::optional<std::string> Parse(std::string_view header, std::string* why = nullptr) {
    std::string ignored;
    return ParseIdempotencyKey(header, why ? why : &ignored);
}

TEST(ParseIdempotencyKey, BareKeyIsAccepted) {
    EXPECT_EQ(Parse("abc-123"), "abc-123");
    EXPECT_EQ(Parse("0190f8a4-7c5e-7000-8000-000000000001"),
              "0190f8a4-7c5e-7000-8000-000000000001");
}

TEST(ParseIdempotencyKey, QuotedStructuredFieldStringIsAccepted) {
    EXPECT_EQ(Parse("\"abc-123\""), "abc-123");
    // The quoted and the bare form name the same key.
    EXPECT_EQ(Parse("\"k\""), Parse("k"));
}

TEST(ParseIdempotencyKey, EmptyIsRejected) {
    std::string why;
    EXPECT_FALSE(Parse("", &why));
    EXPECT_FALSE(why.empty());
    why.clear();
    EXPECT_FALSE(Parse("\"\"", &why));
    EXPECT_FALSE(why.empty());
}

TEST(ParseIdempotencyKey, At255CharactersOkAt256Rejected) {
    EXPECT_EQ(Parse(std::string(255, 'k')), std::string(255, 'k'));
    EXPECT_EQ(Parse("\"" + std::string(255, 'k') + "\""), std::string(255, 'k'));
    std::string why;
    EXPECT_FALSE(Parse(std::string(256, 'k'), &why));
    EXPECT_NE(why.find("256"), std::string::npos) << why;
    EXPECT_FALSE(Parse("\"" + std::string(256, 'k') + "\""));
}

TEST(ParseIdempotencyKey, ControlSpaceDelAndNonAsciiAreRejected) {
    for (const std::string& bad :
         {std::string("a b"), std::string(" "), std::string("a\tb"), std::string("a\x7f"),
          std::string("\x7f"), std::string("caf\xc3\xa9"), std::string("\x80"),
          std::string("a\x01"), std::string("a\0b", 3), std::string("\"a b\"")}) {
        std::string why;
        EXPECT_FALSE(Parse(bad, &why)) << "accepted a key with a bad byte";
        EXPECT_FALSE(why.empty());
    }
}

TEST(ParseIdempotencyKey, EveryVisibleAsciiCharacterIsAccepted) {
    std::string all;
    for (int c = 0x21; c <= 0x7E; ++c) all += static_cast<char>(c);
    EXPECT_EQ(Parse(all), all);
}

// ---- PrincipalFor ----

TEST(PrincipalFor, NoOrEmptyAuthorizationIsAnonymous) {
    EXPECT_EQ(PrincipalFor(std::nullopt), "anonymous");
    EXPECT_EQ(PrincipalFor(std::string_view()), "anonymous");
}

TEST(PrincipalFor, SameTokenSamePrincipalDifferentTokensDiffer) {
    const std::string a1 = PrincipalFor("Bearer token-alpha-0123456789");
    const std::string a2 = PrincipalFor("Bearer token-alpha-0123456789");
    const std::string b = PrincipalFor("Bearer token-beta-0123456789");
    EXPECT_EQ(a1, a2);
    EXPECT_NE(a1, b);
    EXPECT_NE(a1, "anonymous");
    EXPECT_EQ(a1.rfind("bearer:", 0), 0u) << a1;
    EXPECT_EQ(a1.size(), std::string("bearer:").size() + 32) << a1;
}

TEST(PrincipalFor, NeverContainsTheCredential) {
    for (const std::string auth :
         {"Bearer s3cr3t-t0ken-value", "Basic dXNlcjpwYXNzd29yZA==", "s3cr3t-t0ken-value"}) {
        const std::string p = PrincipalFor(auth);
        EXPECT_EQ(p.find("s3cr3t"), std::string::npos) << p;
        EXPECT_EQ(p.find("t0ken"), std::string::npos) << p;
        EXPECT_EQ(p.find("dXNlcjpw"), std::string::npos) << p;
        EXPECT_EQ(p.find("Bearer"), std::string::npos) << p;
        EXPECT_EQ(p.find(auth), std::string::npos) << p;
    }
}

// ---- Fingerprint ----

TEST(Fingerprint, StableAndLowerHex) {
    const std::string f = Fingerprint("POST", "/resources", R"({"data":1})");
    EXPECT_EQ(f, Fingerprint("POST", "/resources", R"({"data":1})"));
    EXPECT_EQ(f.size(), 64u);
    EXPECT_EQ(f.find_first_not_of("0123456789abcdef"), std::string::npos) << f;
}

TEST(Fingerprint, DiffersWhenMethodPathOrBodyDiffer) {
    const std::string base = Fingerprint("POST", "/resources", R"({"data":1})");
    EXPECT_NE(base, Fingerprint("PUT", "/resources", R"({"data":1})"));
    EXPECT_NE(base, Fingerprint("POST", "/accounts/a1/entries", R"({"data":1})"));
    EXPECT_NE(base, Fingerprint("POST", "/resources", R"({"data":2})"));
    EXPECT_NE(base, Fingerprint("POST", "/resources", R"({"data":1} )"));
    EXPECT_NE(base, Fingerprint("POST", "/resources", ""));
}

TEST(Fingerprint, PartsAreDelimitedUnambiguously) {
    EXPECT_NE(Fingerprint("POST", "/a\nb", "c"), Fingerprint("POST\n/a", "b", "c"));
    EXPECT_NE(Fingerprint("POST", "/ab", "c"), Fingerprint("POST", "/a", "bc"));
    EXPECT_NE(Fingerprint("", "", "x"), Fingerprint("x", "", ""));
}

TEST(Sha256Hex, KnownVector) {
    EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- Claim, against a real SQLite Tx ----

class ClaimTest : public ::testing::Test {
  protected:
    static constexpr std::int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

    void SetUp() override {
        store::Durability d;
        d.synchronous = "off";
        store_ = std::make_unique<rollsafe::testing::FailingStore>(
            store::OpenSqliteStore(dir_.File("journal.db"), d));
    }
    void TearDown() override { store_->Shutdown(); }

    /// Runs `job` as a write and waits (bounded) for its commit.
    store::Status Write(store::Job job) { return Wait(true, std::move(job)); }
    store::Status Read(store::Job job) { return Wait(false, std::move(job)); }

    ClaimResult DoClaim(const store::Operation& fresh, std::int64_t now_ms) {
        ClaimResult r;
        const auto st = Write([&](store::Tx& tx) {
            r = Claim(tx, fresh, now_ms);
            return store::Status::Ok();
        });
        EXPECT_TRUE(st.ok()) << st.message;
        return r;
    }

    std::optional<store::Operation> Row(const std::string& key) {
        std::optional<store::Operation> op;
        const auto st = Read([&](store::Tx& tx) {
            op = tx.GetOperation("p1", key);
            return store::Status::Ok();
        });
        EXPECT_TRUE(st.ok()) << st.message;
        return op;
    }

    static store::Operation Fresh(std::string key, std::string owner, std::int64_t lease_until,
                                  std::string fingerprint = "fp-1") {
        store::Operation op;
        op.principal = "p1";
        op.key = std::move(key);
        op.fingerprint = std::move(fingerprint);
        op.state = "in_progress";
        op.owner = std::move(owner);
        op.lease_until_ms = lease_until;
        op.method = "POST";
        op.path = "/resources";
        op.request_body = R"({"data":1})";
        op.created_at_ms = kNow;
        op.updated_at_ms = kNow;
        return op;
    }

    rollsafe::testing::TempDir dir_;  // outlives the store
    /// Disarmed unless a test arms it.
    std::unique_ptr<rollsafe::testing::FailingStore> store_;

  private:
    store::Status Wait(bool write, store::Job job) {
        auto p = std::make_shared<std::promise<store::Status>>();
        auto f = p->get_future();
        auto done = [p](store::Status st) { p->set_value(std::move(st)); };
        if (write)
            store_->Write(std::move(job), done);
        else
            store_->Read(std::move(job), done);
        if (f.wait_for(kMaxTestWait) != std::future_status::ready) {
            // The job refers to this test's locals: returning would let it run on freed memory.
            std::fprintf(stderr, "FATAL: a store job did not finish within %lld s\n",
                         static_cast<long long>(kMaxTestWait.count()));
            std::abort();
        }
        return f.get();
    }
};

TEST_F(ClaimTest, NewKeyIsExecutedAndInsertedInProgress) {
    const auto fresh = Fresh("k1", "r1/a", kNow + 10'000);
    const auto r = DoClaim(fresh, kNow);
    EXPECT_EQ(r.decision, Decision::kExecute);
    EXPECT_EQ(r.op.owner, "r1/a");
    EXPECT_EQ(r.op.lease_until_ms, kNow + 10'000);
    const auto row = Row("k1");
    ASSERT_TRUE(row);
    EXPECT_EQ(row->state, "in_progress");
    EXPECT_EQ(row->owner, "r1/a");
    EXPECT_EQ(row->fingerprint, "fp-1");
    EXPECT_EQ(row->lease_until_ms, kNow + 10'000);
}

TEST_F(ClaimTest, CompletedKeyIsReplayedWithItsStoredResponse) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 10'000), kNow).decision, Decision::kExecute);
    bool completed = false;
    ASSERT_TRUE(Write([&](store::Tx& tx) {
                    completed = tx.Complete("p1", "k1", "r1/a", 201, R"([["X","y"]])",
                                            R"({"id":"r"})", kNow + 5);
                    return store::Status::Ok();
                }).ok());
    ASSERT_TRUE(completed);
    // Later, with the lease long gone: still a replay, never a resume.
    const auto r = DoClaim(Fresh("k1", "r2/b", kNow + 99'000), kNow + 60'000);
    EXPECT_EQ(r.decision, Decision::kReplay);
    EXPECT_EQ(r.op.state, "completed");
    EXPECT_EQ(r.op.response_status, 201);
    EXPECT_EQ(r.op.response_headers, R"([["X","y"]])");
    EXPECT_EQ(r.op.response_body, R"({"id":"r"})");
    EXPECT_EQ(Row("k1")->owner, "r1/a");
}

TEST_F(ClaimTest, SameKeyDifferentRequestIsAMismatchWhateverTheState) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 10'000), kNow).decision, Decision::kExecute);
    // in progress, lease live
    EXPECT_EQ(DoClaim(Fresh("k1", "r2/b", kNow + 10'000, "fp-2"), kNow).decision,
              Decision::kMismatch);
    // in progress, lease expired: a mismatch must not take the row over
    EXPECT_EQ(DoClaim(Fresh("k1", "r2/b", kNow + 99'000, "fp-2"), kNow + 50'000).decision,
              Decision::kMismatch);
    EXPECT_EQ(Row("k1")->owner, "r1/a");
    // completed
    ASSERT_TRUE(Write([&](store::Tx& tx) {
                    EXPECT_TRUE(tx.Complete("p1", "k1", "r1/a", 201, "[]", "{}", kNow));
                    return store::Status::Ok();
                }).ok());
    EXPECT_EQ(DoClaim(Fresh("k1", "r2/b", kNow + 10'000, "fp-2"), kNow).decision,
              Decision::kMismatch);
}

TEST_F(ClaimTest, KeysAreScopedByPrincipal) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 10'000), kNow).decision, Decision::kExecute);
    auto other = Fresh("k1", "r1/b", kNow + 10'000, "fp-2");
    other.principal = "p2";
    EXPECT_EQ(DoClaim(other, kNow).decision, Decision::kExecute);
}

TEST_F(ClaimTest, LiveLeaseIsInProgressWithRetryAfterTheCeilingOfTheLeaseLeft) {
    struct Case {
        std::int64_t left_ms;
        std::int64_t retry_after_s;
    };
    int i = 0;
    for (const Case c : {Case{1, 1}, Case{999, 1}, Case{1000, 1}, Case{1001, 2}, Case{1500, 2},
                         Case{2000, 2}, Case{2001, 3}, Case{10'000, 10}}) {
        const std::string key = "k" + std::to_string(i++);
        ASSERT_EQ(DoClaim(Fresh(key, "r1/a", kNow + c.left_ms), kNow).decision, Decision::kExecute);
        const auto r = DoClaim(Fresh(key, "r2/b", kNow + 10'000), kNow);
        EXPECT_EQ(r.decision, Decision::kInProgress) << c.left_ms;
        EXPECT_EQ(r.retry_after_s, c.retry_after_s) << "lease left " << c.left_ms << " ms";
        EXPECT_EQ(r.op.owner, "r1/a");
        // The row is not touched.
        const auto row = Row(key);
        ASSERT_TRUE(row);
        EXPECT_EQ(row->owner, "r1/a");
        EXPECT_EQ(row->lease_until_ms, kNow + c.left_ms);
    }
}

TEST_F(ClaimTest, ExpiredLeaseIsTakenOverAndResumedFromItsRecoveryPoint) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 100), kNow).decision, Decision::kExecute);
    bool saved = false;
    ASSERT_TRUE(Write([&](store::Tx& tx) {
                    saved = tx.SaveProgress("p1", "k1", "r1/a", "reserved", R"({"id":"x"})",
                                            kNow + 100, kNow + 10);
                    return store::Status::Ok();
                }).ok());
    ASSERT_TRUE(saved);
    // The lease ends at kNow + 100: at that very millisecond it is expired.
    const auto r = DoClaim(Fresh("k1", "r2/b", kNow + 100 + 10'000), kNow + 100);
    EXPECT_EQ(r.decision, Decision::kResume);
    EXPECT_EQ(r.op.owner, "r2/b");
    EXPECT_EQ(r.op.lease_until_ms, kNow + 100 + 10'000);
    EXPECT_EQ(r.op.recovery_point, "reserved");
    EXPECT_EQ(r.op.recovery_state, R"({"id":"x"})");
    const auto row = Row("k1");
    ASSERT_TRUE(row);
    EXPECT_EQ(row->owner, "r2/b");
    EXPECT_EQ(row->lease_until_ms, kNow + 100 + 10'000);
    EXPECT_EQ(row->state, "in_progress");
    EXPECT_EQ(row->recovery_point, "reserved");

    // The previous owner has lost the row: it can neither progress nor complete it.
    ASSERT_TRUE(Write([&](store::Tx& tx) {
                    EXPECT_FALSE(tx.Renew("p1", "k1", "r1/a", kNow + 99'999));
                    EXPECT_FALSE(tx.SaveProgress("p1", "k1", "r1/a", "worked", "{}", kNow + 99'999,
                                                 kNow + 101));
                    EXPECT_FALSE(tx.Complete("p1", "k1", "r1/a", 201, "[]", "{}", kNow + 101));
                    return store::Status::Ok();
                }).ok());
    // And a third claimant sees the new owner's live lease.
    const auto third = DoClaim(Fresh("k1", "r3/c", kNow + 20'000), kNow + 200);
    EXPECT_EQ(third.decision, Decision::kInProgress);
    EXPECT_EQ(third.retry_after_s, 10);
}

TEST_F(ClaimTest, ReleasedRowIsResumedAtOnce) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 10'000), kNow).decision, Decision::kExecute);
    bool released = false;
    ASSERT_TRUE(Write([&](store::Tx& tx) {
                    released = tx.Release("p1", "k1", "r1/a", kNow + 5);
                    return store::Status::Ok();
                }).ok());
    ASSERT_TRUE(released);
    const auto r = DoClaim(Fresh("k1", "r2/b", kNow + 20'000), kNow + 5);
    EXPECT_EQ(r.decision, Decision::kResume);
    EXPECT_EQ(r.op.owner, "r2/b");
}

/// Countdown over Claim's statements (style rule 12): whichever one fails, the job is rolled
/// back whole, the row is as it was, and the next claim decides as if the failed one never ran.
TEST_F(ClaimTest, AFailedClaimLeavesTheRowAsItWas) {
    ASSERT_EQ(DoClaim(Fresh("k1", "r1/a", kNow + 100), kNow).decision, Decision::kExecute);
    const auto before = Row("k1");
    ASSERT_TRUE(before);
    std::set<std::string> failed_at;
    int n = 0;
    for (; n < 50; ++n) {
        store_->Arm(n);
        ClaimResult r;
        const auto st = Write([&](store::Tx& tx) {
            r = Claim(tx, Fresh("k1", "r2/b", kNow + 10'000), kNow + 200);
            return store::Status::Ok();
        });
        store_->Disarm();
        if (!store_->Fired()) {
            ASSERT_TRUE(st.ok()) << st.message;
            EXPECT_EQ(r.decision, Decision::kResume);
            break;
        }
        failed_at.insert(store_->FiredAt());
        EXPECT_EQ(st.kind, store::ErrorKind::kTransient) << "N=" << n;
        const auto row = Row("k1");
        ASSERT_TRUE(row);
        EXPECT_EQ(row->owner, before->owner) << "N=" << n;
        EXPECT_EQ(row->lease_until_ms, before->lease_until_ms) << "N=" << n;
        EXPECT_EQ(row->updated_at_ms, before->updated_at_ms) << "N=" << n;
    }
    EXPECT_EQ(n, 3);
    EXPECT_EQ(failed_at, (std::set<std::string>{"InsertOperation", "GetOperation", "TakeOver"}));
    EXPECT_EQ(Row("k1")->owner, "r2/b");
}

}  // namespace
}  // namespace rollsafe::journal
