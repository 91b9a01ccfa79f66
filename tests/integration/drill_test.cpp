// `rollsafe drill` end to end: real replicas, a real nginx, the retrying client, the audit and
// the reports. Short versions of the README's main job, so that CI fails on any lost,
// duplicated, half-done or failed request — and proof that the audit fails when the layers
// that prevent those are switched off.
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/temp_dir.hpp"
#include "testing/test_store.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// A short run of every scenario: rolling, node drain and crash, each at least once, with
/// shorter delays than the defaults so that it fits in CI.
std::vector<std::string> ShortDrill(const TempDir& dir) {
    return {RollsafeBinary(), "drill",
            "--scenario",     "all",
            "--requests",     "300",
            "--concurrency",  "16",
            "--work-ms",      "0..800",
            "--drain-delay",  "1s",
            "--endpoint-lag", "0.2s..0.8s",
            "--lease",        "2s",
            "--max-duration", "90s",
            "--seed",         "7",
            "--work-dir",     dir.File("work"),
            "--report",       dir.File("report.json"),
            "--html",         dir.File("report.html")};
}

std::string ReadFile(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

JsonValue LoadReport(const std::string& path) {
    std::string error;
    auto v = ParseJson(ReadFile(path), &error);
    if (!v || !v->IsObject()) throw std::runtime_error("bad report " + path + ": " + error);
    return *v;
}

double Count(const JsonValue& report, const char* key) {
    const auto* verdict = report.Find("verdict");
    if (verdict == nullptr) return -1;
    return verdict->GetNumber(key).value_or(-1);
}

/// Pids of live processes whose command line mentions `needle` (the drill passes its work
/// directory to every replica and to nginx).
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
    std::vector<pid_t> found;
    DIR* proc = ::opendir("/proc");
    if (proc == nullptr) return found;
    while (dirent* e = ::readdir(proc)) {
        const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0 || pid == ::getpid()) continue;
        std::string cmdline = ReadFile(std::string("/proc/") + e->d_name + "/cmdline");
        for (auto& c : cmdline)
            if (c == '\0') c = ' ';
        std::string stat = ReadFile(std::string("/proc/") + e->d_name + "/stat");
        const auto close_paren = stat.rfind(')');
        const bool zombie = close_paren != std::string::npos && close_paren + 2 < stat.size() &&
                            stat[close_paren + 2] == 'Z';
        if (!zombie && cmdline.find(needle) != std::string::npos) found.push_back(pid);
    }
    ::closedir(proc);
    return found;
}

TEST(Drill, ShortRunOfEveryScenarioLosesNothing) {
    TempDir dir;
    const auto r = RunProcess(ShortDrill(dir), 240s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("drill: PASS"), std::string::npos) << r.out;

    const JsonValue report = LoadReport(dir.File("report.json"));
    EXPECT_GE(Count(report, "requests"), 300);
    EXPECT_EQ(Count(report, "acknowledged"), Count(report, "requests"));
    for (const char* k : {"failed", "lost", "duplicated", "half_done", "balance_mismatches"})
        EXPECT_EQ(Count(report, k), 0) << k << "\n" << r.out;

    // Every scenario ran, and the crash really killed a replica that was serving.
    std::vector<std::string> phases;
    if (const auto* p = report.Find("phases"); p != nullptr && p->IsArray())
        for (const auto& ph : p->AsArray()) phases.push_back(ph.GetString("name").value_or(""));
    for (const char* want : {"rolling", "drain", "crash"})
        EXPECT_NE(std::find(phases.begin(), phases.end(), want), phases.end()) << want;
    int killed = 0, drained_with_traffic = 0, replicas = 0;
    if (const auto* rs = report.Find("replicas"); rs != nullptr && rs->IsArray()) {
        for (const auto& rep : rs->AsArray()) {
            ++replicas;
            if (const auto* k = rep.Find("sigkilled"); k != nullptr && k->IsBool() && k->AsBool())
                ++killed;
            if (rep.GetNumber("served_while_draining").value_or(0) > 0) ++drained_with_traffic;
        }
    }
    // 3 initial + 3 rolled + 2 drained + 1 crash replacement, at least.
    EXPECT_GE(replicas, 9);
    EXPECT_GE(killed, 1);
    // The endpoint lag kept traffic flowing to draining replicas, and it was served.
    EXPECT_GE(drained_with_traffic, 1);

    // Every process the drill started is gone.
    EXPECT_TRUE(ProcessesMentioning(dir.File("work")).empty());

    // The HTML report renders in a real browser and has its timeline.
    const std::string html = ReadFile(dir.File("report.html"));
    EXPECT_NE(html.find("<svg id=\"timeline\""), std::string::npos);
    const auto render =
        RunProcess({"bash", std::string(ROLLSAFE_SOURCE_DIR) + "/tests/drill/html_render_test.sh",
                    dir.File("report.html"), dir.File("report.png")},
                   120s);
    ASSERT_TRUE(render.exit_code.has_value()) << "chromium timed out";
    EXPECT_EQ(*render.exit_code, 0) << render.out << render.err;
    EXPECT_TRUE(std::filesystem::exists(dir.File("report.png")));
}

/// Replaces the value after `flag` in `argv`, or appends both.
void SetFlag(std::vector<std::string>* argv, const std::string& flag, const std::string& value) {
    auto it = std::find(argv->begin(), argv->end(), flag);
    if (it != argv->end() && it + 1 != argv->end()) {
        *(it + 1) = value;
    } else {
        argv->push_back(flag);
        argv->push_back(value);
    }
}

const JsonValue* Member(const JsonValue& v, const char* key) {
    const JsonValue* m = v.Find(key);
    if (m == nullptr) ADD_FAILURE() << "no \"" << key << "\" in the report";
    return m;
}

/// Replicas the report says were SIGKILLed; every other one must have exited 0 (a replica
/// that failed its shutdown, or a sanitizer report at exit, shows here).
int SigkilledAndCheckExits(const JsonValue& report) {
    int killed = 0;
    if (const auto* rs = report.Find("replicas"); rs != nullptr && rs->IsArray()) {
        for (const auto& rep : rs->AsArray()) {
            if (const auto* k = rep.Find("sigkilled"); k != nullptr && k->IsBool() && k->AsBool())
                ++killed;
            else
                EXPECT_EQ(rep.GetString("exit").value_or(""), "exit 0")
                    << rep.GetString("name").value_or("?");
        }
    }
    return killed;
}

// Issue 5: the drill on PostgreSQL loses nothing across every scenario; and a second drill on
// the same store (same --seed: its accounts used to be the first run's) judges only its own
// rows, reporting what was wrong in the store before it apart.
TEST(DrillOnPostgres, EveryScenarioLosesNothingAndALaterRunJudgesOnlyItsOwnRows) {
    // scripts/test.sh (and so CI) always provides ROLLSAFE_TEST_PG: running without is a failure.
    const TestStore schema("postgres");
    ASSERT_TRUE(schema.ok());

    // ---- every scenario on a fresh schema ----
    TempDir dir;
    auto argv = ShortDrill(dir);
    SetFlag(&argv, "--store", schema.Url());
    const auto r = RunProcess(argv, 240s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("drill: PASS"), std::string::npos) << r.out;
    const JsonValue report = LoadReport(dir.File("report.json"));
    const double requests = Count(report, "requests");
    EXPECT_GE(requests, 300);
    EXPECT_EQ(Count(report, "acknowledged"), requests);
    for (const char* k : {"failed", "lost", "duplicated", "half_done", "balance_mismatches"})
        EXPECT_EQ(Count(report, k), 0) << k << "\n" << r.out;
    const JsonValue* config = Member(report, "config");
    ASSERT_NE(config, nullptr);
    EXPECT_EQ(config->GetString("store").value_or(""), schema.Url());
    const JsonValue* before = Member(report, "store_before");
    ASSERT_NE(before, nullptr);
    const JsonValue* read = before->Find("read");
    EXPECT_TRUE(read != nullptr && read->IsBool() && read->AsBool());
    EXPECT_EQ(before->GetNumber("operations").value_or(-1), 0);
    std::vector<std::string> phases;
    if (const auto* p = report.Find("phases"); p != nullptr && p->IsArray())
        for (const auto& ph : p->AsArray()) phases.push_back(ph.GetString("name").value_or(""));
    for (const char* want : {"rolling", "drain", "crash"})
        EXPECT_NE(std::find(phases.begin(), phases.end(), want), phases.end()) << want;
    EXPECT_GE(SigkilledAndCheckExits(report), 1);
    EXPECT_TRUE(ProcessesMentioning(dir.File("work")).empty());

    // ---- another app's broken rows, then a short run with the same seed ----
    ASSERT_TRUE(Psql(schema.Url(),
                     "INSERT INTO accounts(account, balance, last_seq) VALUES ('other-app', 5, 0);"
                     "INSERT INTO resources(id, data, created_at, idempotency_key) VALUES "
                     "('other-1', '{}', '2026-01-01T00:00:00.000Z', 'other-key')"));
    TempDir dir2;
    auto again = ShortDrill(dir2);
    SetFlag(&again, "--store", schema.Url());
    SetFlag(&again, "--scenario", "crash");
    SetFlag(&again, "--requests", "100");
    SetFlag(&again, "--work-ms", "0..300");  // shorter than the first run: the test's budget
    SetFlag(&again, "--lease", "1s");
    const auto r2 = RunProcess(again, 240s);
    ASSERT_TRUE(r2.exit_code.has_value()) << "drill timed out\n" << r2.out << r2.err;
    EXPECT_EQ(*r2.exit_code, 0) << r2.out << r2.err;
    EXPECT_NE(r2.out.find("drill: PASS"), std::string::npos) << r2.out;
    EXPECT_NE(r2.out.find("(the store also holds 2 problems from before this run)"),
              std::string::npos)
        << r2.out;
    EXPECT_NE(r2.out.find("already in the store before this run, not counted"), std::string::npos)
        << r2.out;
    EXPECT_NE(r2.err.find("the store already holds " +
                          std::to_string(static_cast<long long>(requests)) + " journal rows"),
              std::string::npos)
        << r2.err;
    const JsonValue report2 = LoadReport(dir2.File("report.json"));
    for (const char* k : {"failed", "lost", "duplicated", "half_done", "balance_mismatches"})
        EXPECT_EQ(Count(report2, k), 0) << k << "\n" << r2.out;
    EXPECT_EQ(Count(report2, "earlier_problems"), 2) << r2.out;
    EXPECT_NE(report.GetString("run_id").value_or("a"), report2.GetString("run_id").value_or("a"))
        << "two runs with one seed must not share their accounts";
    const JsonValue* before2 = Member(report2, "store_before");
    ASSERT_NE(before2, nullptr);
    EXPECT_EQ(before2->GetNumber("operations").value_or(-1), requests);
    EXPECT_EQ(before2->GetNumber("problems").value_or(-1), 2);
    EXPECT_GE(SigkilledAndCheckExits(report2), 1);
    EXPECT_TRUE(ProcessesMentioning(dir2.File("work")).empty());
}

TEST(Drill, WithoutRetriesDrainDelayAndGatewayRetryTheAuditReportsFailures) {
    TempDir dir;
    auto argv = ShortDrill(dir);
    for (const char* a : {"--no-retry", "--no-drain-delay", "--no-prestop", "--gateway-retry"})
        argv.push_back(a);
    argv.push_back("off");
    const auto r = RunProcess(argv, 240s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("drill: FAIL"), std::string::npos) << r.out;
    const JsonValue report = LoadReport(dir.File("report.json"));
    EXPECT_GT(Count(report, "failed"), 0) << r.out;
    const auto* verdict = report.Find("verdict");
    ASSERT_NE(verdict, nullptr);
    const auto* ok = verdict->Find("ok");
    ASSERT_NE(ok, nullptr);
    EXPECT_FALSE(ok->AsBool());
    // The report states the configuration that produced the failures.
    const auto* config = report.Find("config");
    ASSERT_NE(config, nullptr);
    EXPECT_FALSE(config->Find("client_retry")->AsBool());
    EXPECT_FALSE(config->Find("gateway_retry")->AsBool());
    EXPECT_FALSE(config->Find("service_drain_delay")->AsBool());
    EXPECT_TRUE(ProcessesMentioning(dir.File("work")).empty());
}

/// Starts a long drill, waits until `WORK/<marker>` exists, sends SIGINT and checks that the
/// drill exits 130 and that no process it started is left.
void InterruptWhen(const std::string& marker, std::size_t min_running) {
    TempDir dir;
    auto argv = ShortDrill(dir);
    // Enough requests that it would run for the whole --max-duration.
    *(std::find(argv.begin(), argv.end(), "--requests") + 1) = "100000";
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string log = dir.File("drill.out");
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        FILE* out = std::freopen(log.c_str(), "w", stdout);
        (void)out;
        ::dup2(1, 2);
        ::execv(cargv[0], cargv.data());
        ::_exit(127);
    }
    const auto deadline = DeadlineIn(60s);
    bool rolling = false;
    while (SteadyClock::now() < deadline && !rolling && ::waitpid(pid, nullptr, WNOHANG) == 0) {
        rolling = std::filesystem::exists(dir.File("work") + "/" + marker);
        std::this_thread::sleep_for(50ms);
    }
    ASSERT_TRUE(rolling) << ReadFile(log);
    const auto running = ProcessesMentioning(dir.File("work"));
    EXPECT_GE(running.size(), min_running) << "the drill's processes should be running";

    ASSERT_EQ(::kill(pid, SIGINT), 0);
    int status = 0;
    pid_t reaped = 0;
    const auto exit_deadline = DeadlineIn(60s);
    while ((reaped = ::waitpid(pid, &status, WNOHANG)) == 0 && SteadyClock::now() < exit_deadline)
        std::this_thread::sleep_for(20ms);
    if (reaped == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        FAIL() << "the drill did not exit within 60 s of SIGINT\n" << ReadFile(log);
    }
    EXPECT_EQ(DecodeWaitStatus(status), 130) << ReadFile(log);
    const auto left = ProcessesMentioning(dir.File("work"));
    EXPECT_TRUE(left.empty()) << left.size() << " processes left, e.g. pid "
                              << (left.empty() ? 0 : left.front());
}

// Mid-run: the replicas and nginx are up and the rollout is under way.
TEST(Drill, SigintMidRunEndsEveryProcessItStarted) { InterruptWhen("replica-4.log", 5); }

// While the first replicas are still starting, before nginx and the load exist.
TEST(Drill, SigintWhileReplicasStartEndsEveryProcessItStarted) {
    InterruptWhen("replica-1.log", 1);
}

}  // namespace
}  // namespace rollsafe::testing
