// `rollsafe audit` on a store written by the real server, with problems planted afterwards
// through the sqlite3 CLI: a duplicated resource, an operation left in progress past its lease
// and an account whose balance is not the sum of its entries. Each is reported as one problem
// line on stderr and the exit status is 1, all three together and each alone.

#include <signal.h>

#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

const std::string kDupKey = "drill-audit-res-1";
const std::string kCopiedKey = "drill-audit-res-2";
const std::string kHalfDoneKey = "drill-audit-planted-half-done";
const std::string kAccount = "acct-a";

/// A store with real rows, its schema made by the server: two resources and three ledger
/// entries on two accounts written through `rollsafe serve`, which is then stopped with
/// SIGTERM. The audit finds it clean before anything is planted.
class SeededStore {
  public:
    SeededStore() : db_(dir_.File("drill.db")) {}

    /// Call once, with ASSERT_NO_FATAL_FAILURE.
    void Seed() {
        ServeOptions o;
        o.db_path = db_;
        o.threads = 1;
        o.extra_args = {"--drain-delay", "100ms", "--no-access-log"};
        ServeProcess server(o);
        for (const auto& [key, data] :
             {std::pair{kDupKey, R"({"n":1})"}, std::pair{kCopiedKey, R"(["two"])"}}) {
            const HttpResponse r =
                Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(key), ResourceBody(data));
            ASSERT_EQ(r.status, 201) << r.Describe();
            const auto view = ParseResource(r);
            ASSERT_TRUE(view) << r.Describe();
            if (key == kDupKey) dup_id_ = view->id;
        }
        for (const auto& [key, account, amount] :
             {std::tuple{"drill-audit-ent-1", kAccount, 100},
              std::tuple{"drill-audit-ent-2", kAccount, -30},
              std::tuple{"drill-audit-ent-3", std::string("acct-b"), 7}}) {
            const HttpResponse r = Fetch(
                server.ApiPort(), "POST", "/accounts/" + account + "/entries", JsonHeaders(key),
                "{\"amount\":" + std::to_string(amount) + ",\"memo\":\"" + key + "\"}");
            ASSERT_EQ(r.status, 201) << r.Describe();
        }
        ASSERT_TRUE(server.Signal(SIGTERM));
        const auto code = server.WaitExit(DeadlineIn(kMaxTestWait));
        ASSERT_TRUE(code) << "no exit after SIGTERM\n" << server.OutputForMessage();
        ASSERT_EQ(*code, 0) << server.OutputForMessage();

        const ProcessResult clean = RunAudit(db_);
        ASSERT_TRUE(clean.exit_code) << "rollsafe audit did not finish";
        ASSERT_EQ(*clean.exit_code, 0) << "the unplanted store is not clean:\n" << clean.err;
    }

    const std::string& Db() const { return db_; }
    const std::string& DupId() const { return dup_id_; }

    void Exec(const std::string& sql) {
        const SqliteResult r = SqliteQuery(db_, sql);
        ASSERT_TRUE(r.ok) << sql << "\n" << r.error;
    }

    /// (a) A second resource row for one key: the row of kDupKey copied under a new id.
    void PlantDuplicate() {
        Exec(
            "INSERT INTO resources (id, data, created_at, idempotency_key, owner, principal) "
            "SELECT id || '-dup', data, created_at, idempotency_key, owner, principal "
            "FROM resources WHERE idempotency_key = " +
            SqlQuote(kDupKey));
        ASSERT_EQ(ResourceRows(kDupKey), "2");
    }

    /// (b) An operation nobody is finishing: kCopiedKey's journal row copied under a new key,
    /// in_progress with a lease that ended in 1970.
    void PlantHalfDone() {
        Exec(
            "INSERT INTO journal (principal, key, fingerprint, state, owner, lease_until_ms, "
            "recovery_point, recovery_state, method, path, request_body, response_status, "
            "response_headers, response_body, created_at_ms, updated_at_ms) "
            "SELECT principal, " +
            SqlQuote(kHalfDoneKey) +
            ", fingerprint, 'in_progress', 'replica-x/planted', 1000, 'worked', recovery_state, "
            "method, path, request_body, 0, '', '', created_at_ms, updated_at_ms "
            "FROM journal WHERE key = " +
            SqlQuote(kCopiedKey));
        ASSERT_EQ(SqliteOneRow(db_,
                               "SELECT state || '|' || lease_until_ms FROM journal WHERE "
                               "key = " +
                                   SqlQuote(kHalfDoneKey)),
                  "in_progress|1000");
    }

    /// (c) kAccount's stored balance one above the sum of its entries (70).
    void PlantBalanceError() {
        Exec("UPDATE accounts SET balance = balance + 1 WHERE account = " + SqlQuote(kAccount));
        ASSERT_EQ(
            SqliteOneRow(db_, "SELECT balance FROM accounts WHERE account = " + SqlQuote(kAccount)),
            "71");
    }

  private:
    std::string ResourceRows(const std::string& key) {
        return SqliteOneRow(
            db_, "SELECT count(*) FROM resources WHERE idempotency_key = " + SqlQuote(key));
    }

    TempDir dir_;
    std::string db_;
    std::string dup_id_;
};

/// What one `rollsafe audit` run said.
struct AuditOutcome {
    std::optional<int> exit_code;
    std::vector<JsonValue> problems;   ///< stderr, one parsed JSON object per line
    std::optional<JsonValue> summary;  ///< the last stdout line
    std::string text;                  ///< both streams, for messages
};

AuditOutcome Audit(const std::string& db) {
    const ProcessResult r = RunAudit(db);
    AuditOutcome out;
    out.exit_code = r.exit_code;
    out.text = "stderr:\n" + r.err + "stdout:\n" + r.out;
    std::size_t start = 0;
    while (start < r.err.size()) {
        std::size_t end = r.err.find('\n', start);
        if (end == std::string::npos) end = r.err.size();
        const std::string line = r.err.substr(start, end - start);
        start = end + 1;
        if (line.empty()) continue;
        auto v = ParseJson(line);
        if (!v || !v->IsObject()) {
            ADD_FAILURE() << "stderr line is not a JSON object: " << line;
            continue;
        }
        out.problems.push_back(std::move(*v));
    }
    const std::string out_text = r.out.ends_with('\n') ? r.out.substr(0, r.out.size() - 1) : r.out;
    out.summary = ParseJson(out_text.substr(out_text.rfind('\n') + 1));
    return out;
}

/// The problem lines named `problem`.
std::vector<const JsonValue*> Named(const AuditOutcome& a, const std::string& problem) {
    std::vector<const JsonValue*> out;
    for (const auto& p : a.problems)
        if (p.GetString("problem") == problem) out.push_back(&p);
    return out;
}

double SummaryCount(const AuditOutcome& a, std::string_view name) {
    if (!a.summary) return -1;
    return a.summary->GetNumber(name).value_or(-1);
}

void ExpectDuplicateReported(const AuditOutcome& a, const std::string& id) {
    const auto lines = Named(a, "duplicate");
    ASSERT_EQ(lines.size(), 1u) << a.text;
    const JsonValue& d = *lines[0];
    EXPECT_EQ(d.GetString("key"), kDupKey) << d.Dump();
    EXPECT_EQ(d.GetString("principal"), "anonymous") << d.Dump();
    EXPECT_EQ(d.GetNumber("count"), 2) << d.Dump();
    const JsonValue* effects = d.Find("effects");
    ASSERT_TRUE(effects && effects->IsArray()) << d.Dump();
    std::vector<std::string> ids;
    for (const auto& e : effects->AsArray()) ids.push_back(e.GetString("id").value_or("?"));
    EXPECT_EQ(ids, (std::vector<std::string>{id, id + "-dup"})) << d.Dump();
    EXPECT_EQ(SummaryCount(a, "duplicates"), 1) << a.text;
}

void ExpectHalfDoneReported(const AuditOutcome& a) {
    const auto lines = Named(a, "expired_in_progress");
    ASSERT_EQ(lines.size(), 1u) << a.text;
    const JsonValue& h = *lines[0];
    EXPECT_EQ(h.GetString("key"), kHalfDoneKey) << h.Dump();
    EXPECT_EQ(h.GetString("owner"), "replica-x/planted") << h.Dump();
    EXPECT_EQ(h.GetNumber("lease_until_ms"), 1000) << h.Dump();
    EXPECT_EQ(h.GetString("recovery_point"), "worked") << h.Dump();
    EXPECT_EQ(SummaryCount(a, "expired_in_progress"), 1) << a.text;
}

void ExpectBalanceErrorReported(const AuditOutcome& a) {
    const auto lines = Named(a, "balance_mismatch");
    ASSERT_EQ(lines.size(), 1u) << a.text;
    const JsonValue& b = *lines[0];
    EXPECT_EQ(b.GetString("account"), kAccount) << b.Dump();
    EXPECT_EQ(b.GetNumber("stored"), 71) << b.Dump();
    EXPECT_EQ(b.GetNumber("sum"), 70) << b.Dump();
    EXPECT_EQ(b.GetNumber("entries"), 2) << b.Dump();
    EXPECT_EQ(SummaryCount(a, "balance_mismatches"), 1) << a.text;
}

void ExpectFailedWith(const AuditOutcome& a, std::size_t problem_lines) {
    ASSERT_TRUE(a.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*a.exit_code, 1) << a.text;
    EXPECT_EQ(a.problems.size(), problem_lines) << a.text;
    ASSERT_TRUE(a.summary) << a.text;
    const JsonValue* ok = a.summary->Find("ok");
    ASSERT_TRUE(ok && ok->IsBool()) << a.text;
    EXPECT_FALSE(ok->AsBool()) << a.text;
    EXPECT_EQ(SummaryCount(a, "orphans"), 0) << a.text;
}

TEST(DrillAudit, PlantedDuplicateHalfDoneAndBalanceErrorAreEachReportedAndExit1) {
    SeededStore s;
    ASSERT_NO_FATAL_FAILURE(s.Seed());
    ASSERT_NO_FATAL_FAILURE(s.PlantDuplicate());
    ASSERT_NO_FATAL_FAILURE(s.PlantHalfDone());
    ASSERT_NO_FATAL_FAILURE(s.PlantBalanceError());
    const AuditOutcome a = Audit(s.Db());
    ExpectFailedWith(a, 3);
    ExpectDuplicateReported(a, s.DupId());
    ExpectHalfDoneReported(a);
    ExpectBalanceErrorReported(a);
}

TEST(DrillAudit, PlantedDuplicateAloneIsReportedAndExit1) {
    SeededStore s;
    ASSERT_NO_FATAL_FAILURE(s.Seed());
    ASSERT_NO_FATAL_FAILURE(s.PlantDuplicate());
    const AuditOutcome a = Audit(s.Db());
    ExpectFailedWith(a, 1);
    ExpectDuplicateReported(a, s.DupId());
}

TEST(DrillAudit, PlantedHalfDoneOperationAloneIsReportedAndExit1) {
    SeededStore s;
    ASSERT_NO_FATAL_FAILURE(s.Seed());
    ASSERT_NO_FATAL_FAILURE(s.PlantHalfDone());
    const AuditOutcome a = Audit(s.Db());
    ExpectFailedWith(a, 1);
    ExpectHalfDoneReported(a);
}

TEST(DrillAudit, PlantedBalanceErrorAloneIsReportedAndExit1) {
    SeededStore s;
    ASSERT_NO_FATAL_FAILURE(s.Seed());
    ASSERT_NO_FATAL_FAILURE(s.PlantBalanceError());
    const AuditOutcome a = Audit(s.Db());
    ExpectFailedWith(a, 1);
    ExpectBalanceErrorReported(a);
}

}  // namespace
}  // namespace rollsafe::testing
