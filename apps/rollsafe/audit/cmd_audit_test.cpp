// Runs the real `rollsafe audit` binary against a SQLite store written through the Store API.
#include <stdlib.h>
#include <sys/wait.h>
#include "testing/temp_dir.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "rollsafe/store/store.hpp"

#ifndef ROLLSAFE_BINARY
#error "ROLLSAFE_BINARY must name the rollsafe executable"
#endif

namespace rollsafe::audit {
namespace {

using namespace std::chrono_literals;

/// Every wait in these tests is bounded by this (style rule 11).
constexpr auto kMaxTestWait = 20s;
constexpr std::int64_t kNow = 1'700'000'000'000;

using rollsafe::testing::TempDir;

/// Runs `job` as one write and waits for it; false (after a test failure) otherwise.
bool WriteAndWait(store::Store& st, store::Job job) {
    auto done = std::make_shared<std::promise<store::Status>>();
    auto result = done->get_future();
    st.Write(std::move(job), [done](store::Status s) { done->set_value(std::move(s)); });
    if (result.wait_for(kMaxTestWait) != std::future_status::ready) {
        ADD_FAILURE() << "the write did not call back within the test deadline";
        return false;
    }
    const auto s = result.get();
    EXPECT_TRUE(s.ok()) << s.message;
    return s.ok();
}

/// Journals (principal, key) as claimed and completed.
void Journal(store::Tx& tx, const std::string& principal, const std::string& key) {
    store::Operation op;
    op.principal = principal;
    op.key = key;
    op.fingerprint = "fp";
    op.state = "in_progress";
    op.owner = "replica-a/1";
    op.lease_until_ms = kNow + 30'000;
    op.method = "POST";
    op.path = "/resources";
    op.created_at_ms = op.updated_at_ms = kNow - 1'000;
    if (!tx.InsertOperation(op)) throw std::runtime_error("operation exists");
    if (!tx.Complete(principal, key, op.owner, 201, "[]", "{}", kNow - 500))
        throw std::runtime_error("cannot complete");
}

store::Resource Resource(const std::string& id, const std::string& principal,
                         const std::string& key) {
    store::Resource r;
    r.id = id;
    r.data_json = R"({"n":1})";
    r.created_at = "2023-11-14T22:13:20.000Z";
    r.idempotency_key = key;
    r.owner = "replica-a";
    r.principal = principal;
    return r;
}

struct RunResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};

/// Runs the rollsafe binary with `args` (already shell-quoted) and collects both streams.
RunResult RunRollsafe(const TempDir& dir, const std::string& args) {
    const std::string err_file = dir.File("stderr.txt");
    const std::string cmd = std::string(ROLLSAFE_BINARY) + " " + args + " 2>" + err_file;
    RunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) {
        ADD_FAILURE() << "popen failed: " << cmd;
        return r;
    }
    std::array<char, 4096> buf;
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int status = ::pclose(p);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    std::ifstream in(err_file);
    std::stringstream ss;
    ss << in.rdbuf();
    r.err = ss.str();
    return r;
}

bool Contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

TEST(AuditCommand, CleanStoreExits0AndDuplicateResourceExits1) {
    TempDir dir;
    const std::string db = dir.File("audit.db");
    {
        auto st = store::OpenSqliteStore(db);
        ASSERT_TRUE(WriteAndWait(*st, [](store::Tx& tx) {
            Journal(tx, "alice", "order-1");
            tx.InsertResource(Resource("r1", "alice", "order-1"));
            Journal(tx, "alice", "pay-1");
            store::LedgerEntry e;
            e.entry_id = "e1";
            e.account = "acct-1";
            e.amount = 250;
            e.memo = "first";
            e.idempotency_key = "pay-1";
            e.principal = "alice";
            e.created_at = "2023-11-14T22:13:20.000Z";
            if (!tx.AppendEntry(e, 0)) throw std::runtime_error("append failed");
            return store::Status::Ok();
        }));
        st->Shutdown();
    }
    const std::string args = "audit --store sqlite:" + db + " --now-ms " + std::to_string(kNow);

    const auto clean = RunRollsafe(dir, args);
    EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
    EXPECT_TRUE(Contains(
        clean.out,
        R"({"kind":"resource","id":"r1","key":"order-1","principal":"alice","complete":true})"))
        << clean.out;
    EXPECT_TRUE(
        Contains(clean.out,
                 R"({"kind":"entry","id":"e1","key":"pay-1","principal":"alice","complete":true})"))
        << clean.out;
    EXPECT_TRUE(
        Contains(clean.out, R"("duplicates":0,"orphans":0,"balance_mismatches":0,"ok":true})"))
        << clean.out;
    EXPECT_EQ(clean.err, "");

    {
        auto st = store::OpenSqliteStore(db);
        ASSERT_TRUE(WriteAndWait(*st, [](store::Tx& tx) {
            tx.InsertResource(Resource("r1-again", "alice", "order-1"));
            return store::Status::Ok();
        }));
        st->Shutdown();
    }
    const auto dup = RunRollsafe(dir, args);
    EXPECT_EQ(dup.exit_code, 1) << dup.out << dup.err;
    EXPECT_TRUE(Contains(dup.err,
                         R"({"problem":"duplicate","principal":"alice","key":"order-1","count":2)"))
        << dup.err;
    EXPECT_TRUE(Contains(dup.out, R"("duplicates":1,)")) << dup.out;
    EXPECT_TRUE(Contains(dup.out, R"("ok":false})")) << dup.out;
}

TEST(AuditCommand, MissingStoreFlagIsAUsageError) {
    TempDir dir;
    const auto r = RunRollsafe(dir, "audit");
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_TRUE(Contains(r.err, "--store")) << r.err;
}

TEST(AuditCommand, BadNowMsIsAUsageError) {
    TempDir dir;
    const auto r = RunRollsafe(dir, "audit --store sqlite:" + dir.File("x.db") + " --now-ms soon");
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
}

TEST(AuditCommand, MissingDatabaseExits1WithoutCreatingIt) {
    TempDir dir;
    const std::string db = dir.File("typo.db");
    const auto r = RunRollsafe(dir, "audit --store sqlite:" + db);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(Contains(r.err, "cannot open store")) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_FALSE(std::filesystem::exists(db));
}

TEST(AuditCommand, UnreadableStoreExits1WithAClearMessage) {
    TempDir dir;
    const std::string db = dir.File("not-a-db.db");
    std::ofstream(db) << "this is not an SQLite database, just text that is long enough to tell";
    const auto garbage = RunRollsafe(dir, "audit --store sqlite:" + db);
    EXPECT_EQ(garbage.exit_code, 1) << garbage.out << garbage.err;
    EXPECT_TRUE(Contains(garbage.err, "rollsafe audit: cannot")) << garbage.err;

    const auto url = RunRollsafe(dir, "audit --store postgres://localhost/db");
    EXPECT_EQ(url.exit_code, 1) << url.out << url.err;
    EXPECT_TRUE(Contains(url.err, "cannot open store")) << url.err;
}

std::string ReadBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// The audit opens the store read-only: pointed at the wrong SQLite file it must refuse it and
// leave it byte for byte as it was (no migration, no WAL switch).
TEST(AuditCommand, ForeignSqliteFileIsRefusedAndLeftUntouched) {
    TempDir dir;
    const std::string db = dir.File("other.db");
    ASSERT_EQ(std::system(("sqlite3 '" + db +
                           "' 'CREATE TABLE other(x); INSERT INTO other "
                           "VALUES (1);'")
                              .c_str()),
              0);
    const std::string before = ReadBytes(db);
    ASSERT_FALSE(before.empty());
    const auto r = RunRollsafe(dir, "audit --store sqlite:" + db);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_TRUE(Contains(r.err, "not a rollsafe store")) << r.err;
    EXPECT_EQ(ReadBytes(db), before) << "the audit modified the file it was pointed at";
    EXPECT_FALSE(std::filesystem::exists(db + "-wal"));
}

}  // namespace
}  // namespace rollsafe::audit
