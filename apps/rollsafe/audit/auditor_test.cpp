#include "audit/auditor.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace rollsafe::audit {
namespace {

namespace json = boost::json;

constexpr std::int64_t kNow = 1'000'000;

store::Operation Op(std::string principal, std::string key, std::string state = "completed",
                    std::int64_t lease_until_ms = 0) {
    store::Operation op;
    op.principal = std::move(principal);
    op.key = std::move(key);
    op.state = std::move(state);
    op.owner = op.state == "in_progress" ? "replica-a/1" : "";
    op.lease_until_ms = lease_until_ms;
    return op;
}

store::Resource Res(std::string id, std::string principal, std::string key) {
    store::Resource r;
    r.id = std::move(id);
    r.principal = std::move(principal);
    r.idempotency_key = std::move(key);
    r.data_json = "{}";
    return r;
}

store::LedgerEntry Entry(std::string id, std::string account, std::int64_t amount, std::int64_t seq,
                         std::string principal, std::string key) {
    store::LedgerEntry e;
    e.entry_id = std::move(id);
    e.account = std::move(account);
    e.amount = amount;
    e.seq = seq;
    e.principal = std::move(principal);
    e.idempotency_key = std::move(key);
    return e;
}

/// A consistent store: one resource and two entries on one account, each with its completed
/// operation, plus one live in-progress operation that has no effect yet.
Snapshot Clean() {
    Snapshot s;
    s.operations = {Op("alice", "k1"), Op("alice", "k2"), Op("bob", "k3"),
                    Op("bob", "k4", "in_progress", kNow + 1)};
    s.resources = {Res("r1", "alice", "k1")};
    s.entries = {Entry("e1", "acct", 10, 1, "alice", "k2"),
                 Entry("e2", "acct", -3, 2, "bob", "k3")};
    s.accounts = {{"acct", 7}};
    return s;
}

json::object Parse(const std::string& line) { return json::parse(line).as_object(); }

/// The problem lines whose "problem" is `kind`, parsed.
std::vector<json::object> Problems(const AuditResult& r, const std::string& kind) {
    std::vector<json::object> out;
    for (const auto& line : r.problem_lines) {
        auto o = Parse(line);
        if (o.at("problem").as_string() == kind) out.push_back(std::move(o));
    }
    return out;
}

TEST(Audit, CleanStorePasses) {
    const auto r = Audit(Clean(), kNow);
    EXPECT_TRUE(r.ok);
    EXPECT_TRUE(r.problem_lines.empty()) << r.problem_lines.front();
    EXPECT_EQ(r.resources, 1);
    EXPECT_EQ(r.entries, 2);
    EXPECT_EQ(r.operations, 4);
    EXPECT_EQ(r.in_progress, 1);
    EXPECT_EQ(r.expired_in_progress, 0);
    EXPECT_EQ(r.duplicates, 0);
    EXPECT_EQ(r.orphans, 0);
    EXPECT_EQ(r.balance_mismatches, 0);
    ASSERT_EQ(r.effect_lines.size(), 3u);
    EXPECT_EQ(r.effect_lines[0],
              R"({"kind":"resource","id":"r1","key":"k1","principal":"alice","complete":true})");
    EXPECT_EQ(r.effect_lines[1],
              R"({"kind":"entry","id":"e1","key":"k2","principal":"alice","complete":true})");
    EXPECT_EQ(r.effect_lines[2],
              R"({"kind":"entry","id":"e2","key":"k3","principal":"bob","complete":true})");
    EXPECT_EQ(r.summary_line,
              R"({"summary":true,"resources":1,"entries":2,"operations":4,"in_progress":1,)"
              R"("expired_in_progress":0,"duplicates":0,"orphans":0,"balance_mismatches":0,)"
              R"("ok":true})");
}

TEST(Audit, EmptyStorePasses) {
    const auto r = Audit({}, kNow);
    EXPECT_TRUE(r.ok);
    EXPECT_TRUE(r.effect_lines.empty());
    EXPECT_TRUE(r.problem_lines.empty());
    EXPECT_EQ(Parse(r.summary_line).at("ok"), true);
}

TEST(Audit, InProgressWhoseLeaseEndedAtNowIsExpired) {
    auto s = Clean();
    s.operations.push_back(Op("carol", "k9", "in_progress", kNow));
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.in_progress, 2);
    EXPECT_EQ(r.expired_in_progress, 1);
    const auto p = Problems(r, "expired_in_progress");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("principal"), "carol");
    EXPECT_EQ(p[0].at("key"), "k9");
    EXPECT_EQ(p[0].at("lease_until_ms"), kNow);
    EXPECT_EQ(Parse(r.summary_line).at("expired_in_progress"), 1);
    EXPECT_EQ(Parse(r.summary_line).at("ok"), false);
}

TEST(Audit, InProgressWithLiveLeaseIsNotExpired) {
    auto s = Clean();
    s.operations.push_back(Op("carol", "k9", "in_progress", kNow + 1));
    const auto r = Audit(s, kNow);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.in_progress, 2);
    EXPECT_EQ(r.expired_in_progress, 0);
}

TEST(Audit, EffectOfInProgressOperationIsIncompleteAndAnOrphan) {
    auto s = Clean();
    s.operations.push_back(Op("carol", "k9", "in_progress", kNow + 60'000));
    s.resources.push_back(Res("r9", "carol", "k9"));
    const auto r = Audit(s, kNow);
    ASSERT_EQ(r.effect_lines.size(), 4u);
    EXPECT_EQ(r.effect_lines[1],
              R"({"kind":"resource","id":"r9","key":"k9","principal":"carol","complete":false})");
    EXPECT_EQ(r.orphans, 1);
    EXPECT_EQ(r.expired_in_progress, 0);
    EXPECT_FALSE(r.ok);
    const auto p = Problems(r, "orphan");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("reason"), "not_completed");
    EXPECT_EQ(p[0].at("state"), "in_progress");
    EXPECT_EQ(p[0].at("id"), "r9");
}

TEST(Audit, DuplicateResourceIsListedTwiceAndCountedOnce) {
    auto s = Clean();
    s.resources.push_back(Res("r1-again", "alice", "k1"));
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.resources, 2);
    EXPECT_EQ(r.duplicates, 1);
    EXPECT_EQ(r.orphans, 0);  // both effects have their (one, completed) operation
    int listed = 0;
    for (const auto& line : r.effect_lines) {
        const auto o = Parse(line);
        if (o.at("principal") == "alice" && o.at("key") == "k1") {
            ++listed;
            EXPECT_EQ(o.at("complete"), true);
        }
    }
    EXPECT_EQ(listed, 2);
    const auto p = Problems(r, "duplicate");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("principal"), "alice");
    EXPECT_EQ(p[0].at("key"), "k1");
    EXPECT_EQ(p[0].at("count"), 2);
    EXPECT_EQ(Parse(r.summary_line).at("duplicates"), 1);
}

TEST(Audit, ThreeEffectsForOneKeyAreOneDuplicateWithCountThree) {
    auto s = Clean();
    s.resources.push_back(Res("r1b", "alice", "k1"));
    s.resources.push_back(Res("r1c", "alice", "k1"));
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.duplicates, 1);
    const auto p = Problems(r, "duplicate");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("count"), 3);
    EXPECT_EQ(p[0].at("effects").as_array().size(), 3u);
}

TEST(Audit, ResourceAndEntryWithOneKeyAreADuplicate) {
    auto s = Clean();
    s.entries.push_back(Entry("e3", "acct", 1, 3, "alice", "k1"));
    s.accounts = {{"acct", 8}};
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.duplicates, 1);
    EXPECT_EQ(r.balance_mismatches, 0);
    EXPECT_FALSE(r.ok);
    const auto p = Problems(r, "duplicate");
    ASSERT_EQ(p.size(), 1u);
    const auto& effects = p[0].at("effects").as_array();
    ASSERT_EQ(effects.size(), 2u);
    EXPECT_EQ(effects[0].at("kind"), "resource");
    EXPECT_EQ(effects[1].at("kind"), "entry");
}

TEST(Audit, SameKeyOfTwoPrincipalsIsNoDuplicate) {
    auto s = Clean();
    s.operations.push_back(Op("bob", "k1"));
    s.resources.push_back(Res("r-bob", "bob", "k1"));
    const auto r = Audit(s, kNow);
    EXPECT_TRUE(r.ok);
    EXPECT_EQ(r.duplicates, 0);
}

TEST(Audit, EffectsWithoutKeyAreOrphansNotDuplicates) {
    auto s = Clean();
    s.resources.push_back(Res("old1", "", ""));
    s.resources.push_back(Res("old2", "", ""));
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.duplicates, 0);
    EXPECT_EQ(r.orphans, 2);
    const auto p = Problems(r, "orphan");
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].at("reason"), "no_key");
    EXPECT_EQ(p[1].at("id"), "old2");
    EXPECT_EQ(Parse(r.effect_lines[1]).at("complete"), false);
}

TEST(Audit, EffectWithoutJournalRowIsAnOrphan) {
    auto s = Clean();
    s.entries.push_back(Entry("e3", "acct", 1, 3, "dave", "k7"));
    s.accounts = {{"acct", 8}};
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.orphans, 1);
    EXPECT_EQ(r.balance_mismatches, 0);
    const auto p = Problems(r, "orphan");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("kind"), "entry");
    EXPECT_EQ(p[0].at("reason"), "no_operation");
    EXPECT_EQ(Parse(r.summary_line).at("orphans"), 1);
}

TEST(Audit, JournalRowOfAnotherPrincipalDoesNotCompleteAnEffect) {
    auto s = Clean();
    s.resources.push_back(Res("r-eve", "eve", "k1"));  // alice's k1 is completed, not eve's
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.orphans, 1);
    EXPECT_EQ(r.duplicates, 0);
}

TEST(Audit, StoredBalanceDifferentFromSumIsAMismatch) {
    auto s = Clean();
    s.accounts = {{"acct", 8}};
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.balance_mismatches, 1);
    const auto p = Problems(r, "balance_mismatch");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("account"), "acct");
    EXPECT_EQ(p[0].at("stored"), 8);
    EXPECT_EQ(p[0].at("sum"), 7);
    EXPECT_EQ(Parse(r.summary_line).at("balance_mismatches"), 1);
}

TEST(Audit, EntriesOfAnAccountWithoutStoredBalanceAreAMismatch) {
    auto s = Clean();
    s.accounts.clear();
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    const auto p = Problems(r, "balance_mismatch");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_TRUE(p[0].at("stored").is_null());
}

TEST(Audit, NonZeroBalanceWithoutEntriesIsAMismatchButZeroIsNot) {
    auto s = Clean();
    s.accounts.emplace_back("empty", 0);
    EXPECT_TRUE(Audit(s, kNow).ok);
    s.accounts.emplace_back("ghost", 5);
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    EXPECT_EQ(Problems(r, "balance_mismatch").at(0).at("account"), "ghost");
}

TEST(Audit, SumThatOverflowsIsAMismatch) {
    Snapshot s;
    const auto max = std::numeric_limits<std::int64_t>::max();
    s.operations = {Op("p", "a"), Op("p", "b")};
    s.entries = {Entry("e1", "big", max, 1, "p", "a"), Entry("e2", "big", 1, 2, "p", "b")};
    s.accounts = {{"big", std::numeric_limits<std::int64_t>::min()}};  // what wrapping gives
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    EXPECT_TRUE(Problems(r, "balance_mismatch").at(0).at("sum").is_null());
}

TEST(Audit, SeqGapIsAMismatch) {
    auto s = Clean();
    s.entries[1].seq = 3;
    const auto r = Audit(s, kNow);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.balance_mismatches, 1);
    const auto p = Problems(r, "seq_mismatch");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("expected"), 2);
    EXPECT_EQ(p[0].at("found"), 3);
    EXPECT_EQ(p[0].at("reason"), "gap");
}

TEST(Audit, RepeatedSeqIsAMismatch) {
    auto s = Clean();
    s.entries[1].seq = 1;
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    const auto p = Problems(r, "seq_mismatch");
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].at("reason"), "repeat");
}

TEST(Audit, SeqNotStartingAtOneIsAMismatch) {
    auto s = Clean();
    s.entries[0].seq = 0;
    s.entries[1].seq = 1;
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    EXPECT_EQ(Problems(r, "seq_mismatch").at(0).at("reason"), "out_of_range");
}

TEST(Audit, SeqsOutOfOrderInTheInputAreFine) {
    auto s = Clean();
    std::swap(s.entries[0], s.entries[1]);
    EXPECT_TRUE(Audit(s, kNow).ok);
}

TEST(Audit, AccountWithBothProblemsCountsOnce) {
    auto s = Clean();
    s.entries[1].seq = 5;
    s.accounts = {{"acct", 100}};
    const auto r = Audit(s, kNow);
    EXPECT_EQ(r.balance_mismatches, 1);
    EXPECT_EQ(Problems(r, "balance_mismatch").size(), 1u);
    EXPECT_EQ(Problems(r, "seq_mismatch").size(), 1u);
}

TEST(Audit, EveryProblemIsCountedInTheSummary) {
    auto s = Clean();
    s.operations.push_back(Op("carol", "k9", "in_progress", kNow - 1));  // expired
    s.resources.push_back(Res("r1-again", "alice", "k1"));               // duplicate
    s.resources.push_back(Res("old", "", ""));                           // orphan
    s.accounts = {{"acct", 0}};                                          // mismatch
    const auto r = Audit(s, kNow);
    const auto sum = Parse(r.summary_line);
    EXPECT_EQ(sum.at("summary"), true);
    EXPECT_EQ(sum.at("resources"), 3);
    EXPECT_EQ(sum.at("entries"), 2);
    EXPECT_EQ(sum.at("operations"), 5);
    EXPECT_EQ(sum.at("in_progress"), 2);
    EXPECT_EQ(sum.at("expired_in_progress"), 1);
    EXPECT_EQ(sum.at("duplicates"), 1);
    EXPECT_EQ(sum.at("orphans"), 1);
    EXPECT_EQ(sum.at("balance_mismatches"), 1);
    EXPECT_EQ(sum.at("ok"), false);
    EXPECT_EQ(r.problem_lines.size(), 4u);
    EXPECT_EQ(r.effect_lines.size(), 5u);
}

}  // namespace
}  // namespace rollsafe::audit
