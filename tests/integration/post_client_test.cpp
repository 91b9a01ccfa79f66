// `rollsafe post`, the retrying client, against the real `rollsafe serve`: one POST makes one
// resource; the same key twice is a replay; a refused connection, a 503 at a replica's
// shutdown deadline and a 409 for a running key are all retried with the same key until they
// land exactly once; a 4xx is never retried; an unreachable server is given up on at the
// deadline; usage errors exit 2.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"
#include "testing/temp_dir.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// A loopback port that was free a moment ago: bound with port 0, read back, closed. Nothing
/// listens on it until a test starts a server there.
std::uint16_t FreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) ::close(fd);
        return 0;
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string Url(std::uint16_t port) {
    return "http://127.0.0.1:" + std::to_string(port) + "/resources";
}

/// `rollsafe post <url> <args...>` to completion.
ProcessResult RunPost(const std::string& url, std::vector<std::string> args,
                      SteadyClock::duration timeout = kMaxTestWait) {
    std::vector<std::string> argv{RollsafeBinary(), "post", url};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, timeout);
}

/// `rollsafe post` started in the background with its stderr going to a file, so that the
/// test can watch the attempts (`--verbose`) while it runs. Its ProcessResult has `err` empty;
/// Stderr() reads the file.
class BackgroundPost {
  public:
    BackgroundPost(const std::string& url, std::vector<std::string> args)
        : err_path_(dir_.File("post.err")) {
        std::vector<std::string> argv{
            "/bin/sh", "-c", "exec \"$@\" 2>\"$0\"", err_path_, RollsafeBinary(), "post", url};
        argv.insert(argv.end(), args.begin(), args.end());
        result_ = std::async(std::launch::async, [argv] { return RunProcess(argv); });
    }
    ~BackgroundPost() {
        if (result_.valid()) result_.wait();
    }

    std::string Stderr() const {
        std::ifstream in(err_path_);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    /// Waits until stderr contains `text`.
    bool WaitForStderr(const std::string& text, Deadline deadline) const {
        while (SteadyClock::now() < deadline) {
            if (Stderr().find(text) != std::string::npos) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    /// Waits for the process (RunProcess bounds it by kMaxTestWait).
    ProcessResult Wait() { return result_.get(); }

  private:
    TempDir dir_;
    std::string err_path_;
    std::future<ProcessResult> result_;
};

/// The `--verbose` lines that describe an attempt ("rollsafe post: attempt N: ...").
std::vector<std::string> AttemptLines(const std::string& err) {
    std::vector<std::string> out;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("rollsafe post: attempt ", 0) == 0) out.push_back(line);
    return out;
}

std::string Describe(const ProcessResult& r, const std::string& err) {
    return "exit " + (r.exit_code ? std::to_string(*r.exit_code) : std::string("<killed>")) +
           "\nstdout:\n" + r.out + "stderr:\n" + err;
}

std::string CountForKey(const std::string& db, const std::string& key) {
    return SqliteOneRow(db,
                        "SELECT count(*) FROM resources WHERE idempotency_key = " + SqlQuote(key));
}

/// The stdout of a successful post is one resource body; returns its id.
std::optional<std::string> ResourceId(const std::string& out) {
    const auto v = ParseJson(out);
    if (!v) return std::nullopt;
    return v->GetString("id");
}

void ExpectAuditClean(const std::string& db) {
    const ProcessResult audit = RunAudit(db);
    ASSERT_TRUE(audit.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*audit.exit_code, 0) << audit.err << audit.out;
}

TEST(PostClient, CreatesExactlyOneResourceAndExitsZero) {
    ServeProcess server({"--drain-delay", "100ms"});
    const ProcessResult r = RunPost(Url(server.ApiPort()), {"--data", R"({"data":{"sku":"A-1"}})",
                                                            "--key", "order-1", "--verbose"});
    ASSERT_TRUE(r.exit_code);
    ASSERT_EQ(*r.exit_code, 0) << Describe(r, r.err);
    const auto v = ParseJson(r.out);
    ASSERT_TRUE(v) << r.out;
    ASSERT_TRUE(v->GetString("id")) << r.out;
    EXPECT_EQ(v->Find("data")->Dump(), R"({"sku":"A-1"})");
    EXPECT_EQ(AttemptLines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(SqliteOneRow(server.DbPath(), "SELECT count(*) FROM resources"), "1");
    EXPECT_EQ(CountForKey(server.DbPath(), "order-1"), "1");
    EXPECT_EQ(SqliteOneRow(server.DbPath(), "SELECT id FROM resources"), *v->GetString("id"));
}

TEST(PostClient, SameKeyTwiceGetsTheReplayOfTheFirstAnswer) {
    ServeProcess server({"--drain-delay", "100ms"});
    const std::vector<std::string> args{"--data", R"({"data":[1,2,3]})", "--key", "same-key",
                                        "--verbose"};
    const ProcessResult first = RunPost(Url(server.ApiPort()), args);
    const ProcessResult second = RunPost(Url(server.ApiPort()), args);
    ASSERT_TRUE(first.exit_code && second.exit_code);
    ASSERT_EQ(*first.exit_code, 0) << Describe(first, first.err);
    ASSERT_EQ(*second.exit_code, 0) << Describe(second, second.err);
    EXPECT_TRUE(ResourceId(first.out)) << first.out;
    EXPECT_EQ(second.out, first.out);
    EXPECT_EQ(AttemptLines(first.err).at(0).find("replayed"), std::string::npos) << first.err;
    EXPECT_NE(AttemptLines(second.err).at(0).find("replayed"), std::string::npos) << second.err;
    EXPECT_EQ(SqliteOneRow(server.DbPath(), "SELECT count(*) FROM resources"), "1");
}

TEST(PostClient, RetriesARefusedConnectionUntilTheServerStarts) {
    const std::uint16_t port = FreePort();
    ASSERT_NE(port, 0);
    BackgroundPost post(Url(port), {"--data", R"({"data":"late"})", "--key", "late-1", "--retries",
                                    "100", "--deadline", "20s", "--verbose"});
    // Start the server only once the client has been refused: the retry is then certain.
    ASSERT_TRUE(post.WaitForStderr("attempt 1: connect failed", DeadlineIn(kMaxTestWait)))
        << post.Stderr();
    ServeOptions o;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.extra_args = {"--drain-delay", "100ms"};
    ServeProcess server(o);
    ASSERT_EQ(server.ApiPort(), port);

    const ProcessResult r = post.Wait();
    const std::string err = post.Stderr();
    ASSERT_TRUE(r.exit_code) << Describe(r, err);
    ASSERT_EQ(*r.exit_code, 0) << Describe(r, err);
    const auto lines = AttemptLines(err);
    ASSERT_GE(lines.size(), 2u) << err;
    EXPECT_NE(lines.front().find("connect failed"), std::string::npos) << err;
    EXPECT_NE(lines.back().find(": 201,"), std::string::npos) << err;
    EXPECT_TRUE(ResourceId(r.out)) << r.out;
    EXPECT_EQ(CountForKey(server.DbPath(), "late-1"), "1");
    EXPECT_EQ(SqliteOneRow(server.DbPath(), "SELECT count(*) FROM resources"), "1");
}

// A replica is stopped while the POST runs: past its shutdown timeout the POST is answered
// 503 + Retry-After and its journal lease released. A replacement on the same address and
// store takes the operation over when the client's retry (same key) arrives.
TEST(PostClient, A503AtTheShutdownDeadlineIsRetriedOnTheReplacementReplica) {
    const std::uint16_t port = FreePort();
    ASSERT_NE(port, 0);
    TempDir dir;
    const std::string db = dir.File("shared.db");
    ServeOptions o;
    o.listen = "127.0.0.1:" + std::to_string(port);
    o.db_path = db;
    o.extra_args = {"--drain-delay", "100ms", "--shutdown-timeout", "200ms"};
    std::optional<ServeProcess> a(std::in_place, o);

    BackgroundPost post(
        Url(port), {"--data", ResourceBody(R"({"n":1})", 1500), "--key", "deadline-1", "--retries",
                    "50", "--deadline", "20s", "--verbose"});
    std::string last;
    ASSERT_TRUE(SqlitePoll(db, "SELECT state FROM journal WHERE key = 'deadline-1'", "in_progress",
                           DeadlineIn(kMaxTestWait), &last))
        << "the POST never started running on replica A: " << last << "\n"
        << post.Stderr();
    ASSERT_TRUE(a->Signal(SIGTERM));
    const auto code = a->WaitExit(DeadlineIn(10s));
    ASSERT_TRUE(code) << "replica A did not exit";
    EXPECT_EQ(*code, 0);
    ASSERT_TRUE(post.WaitForStderr("attempt 1: 503", DeadlineIn(kMaxTestWait))) << post.Stderr();
    a.reset();

    ServeProcess b(o);
    const ProcessResult r = post.Wait();
    const std::string err = post.Stderr();
    ASSERT_TRUE(r.exit_code) << Describe(r, err);
    ASSERT_EQ(*r.exit_code, 0) << Describe(r, err);
    const auto lines = AttemptLines(err);
    ASSERT_GE(lines.size(), 2u) << err;
    EXPECT_NE(lines.front().find("(Retry-After)"), std::string::npos) << err;
    EXPECT_NE(lines.back().find(": 201,"), std::string::npos) << err;
    const auto id = ResourceId(r.out);
    ASSERT_TRUE(id) << r.out;
    EXPECT_EQ(CountForKey(db, "deadline-1"), "1");
    EXPECT_EQ(SqliteOneRow(db, "SELECT id FROM resources"), *id);
    ASSERT_TRUE(b.Signal(SIGTERM));
    ASSERT_TRUE(b.WaitExit(DeadlineIn(10s)));
    ExpectAuditClean(db);
}

TEST(PostClient, A409ForTheRunningKeyIsRetriedUntilTheReplay) {
    // --lease 1s: a running key answers 409 with Retry-After of about a second.
    ServeProcess server({"--drain-delay", "100ms", "--lease", "1s"});
    const std::vector<std::string> args{
        "--data",   ResourceBody(R"({"n":2})", 3000), "--key", "running-1", "--retries", "50",
        "--verbose"};
    BackgroundPost first(Url(server.ApiPort()), args);
    std::string last;
    ASSERT_TRUE(SqlitePoll(server.DbPath(), "SELECT state FROM journal WHERE key = 'running-1'",
                           "in_progress", DeadlineIn(kMaxTestWait), &last))
        << last;
    const ProcessResult second = RunPost(Url(server.ApiPort()), args);
    const ProcessResult original = first.Wait();
    ASSERT_TRUE(original.exit_code && second.exit_code);
    ASSERT_EQ(*original.exit_code, 0) << Describe(original, first.Stderr());
    ASSERT_EQ(*second.exit_code, 0) << Describe(second, second.err);
    EXPECT_EQ(second.out, original.out);
    const auto lines = AttemptLines(second.err);
    ASSERT_GE(lines.size(), 2u) << second.err;
    EXPECT_NE(lines.front().find(": 409,"), std::string::npos) << second.err;
    EXPECT_NE(lines.back().find("replayed"), std::string::npos) << second.err;
    EXPECT_EQ(CountForKey(server.DbPath(), "running-1"), "1");
}

TEST(PostClient, DoesNotRetryA4xx) {
    ServeProcess server({"--drain-delay", "100ms"});
    const ProcessResult r = RunPost(Url(server.ApiPort()),
                                    {"--data", R"({"nodata":1})", "--retries", "5", "--verbose"});
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 1) << Describe(r, r.err);
    const auto lines = AttemptLines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find(": 400,"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not retried"), std::string::npos) << r.err;
    const auto v = ParseJson(r.out);
    ASSERT_TRUE(v) << r.out;
    EXPECT_EQ(v->GetNumber("status"), 400);
    EXPECT_EQ(SqliteOneRow(server.DbPath(), "SELECT count(*) FROM resources"), "0");
}

TEST(PostClient, GivesUpOnAnUnreachableServerWithinTheDeadline) {
    const std::uint16_t port = FreePort();
    ASSERT_NE(port, 0);
    const auto start = SteadyClock::now();
    const ProcessResult r = RunPost(Url(port), {"--data", R"({"data":1})", "--deadline", "1s",
                                                "--retries", "1000", "--verbose"});
    const auto took = SteadyClock::now() - start;
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 1) << Describe(r, r.err);
    EXPECT_LT(took, 2s) << Ms(took) << " ms";
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("gave up after"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("deadline of 1000 ms"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nothing was sent"), std::string::npos) << r.err;
    EXPECT_GE(AttemptLines(r.err).size(), 2u) << r.err;
}

TEST(PostClient, UsageErrorsExitTwoWithoutSending) {
    const std::string ok = "http://127.0.0.1:1/resources";
    const std::vector<std::vector<std::string>> cases{
        {"https://127.0.0.1:1/resources"},
        {"http://example.com/resources"},
        {"not a url"},
        {ok, "--data", "{bad json"},
        {ok, "--header", "no colon"},
        {ok, "--header", "Idempotency-Key: k"},
        {ok, "--key", "has space"},
        {ok, "--deadline", "5"},
        {ok, "--retries", "-1"},
    };
    for (const auto& c : cases) {
        std::vector<std::string> argv{RollsafeBinary(), "post"};
        argv.insert(argv.end(), c.begin(), c.end());
        const ProcessResult r = RunProcess(argv);
        ASSERT_TRUE(r.exit_code) << c[0];
        EXPECT_EQ(*r.exit_code, 2) << c.back() << "\n" << r.err;
        EXPECT_FALSE(r.err.empty()) << c.back();
        EXPECT_EQ(r.err.find("attempt"), std::string::npos) << c.back() << "\n" << r.err;
    }
}

}  // namespace
}  // namespace rollsafe::testing
