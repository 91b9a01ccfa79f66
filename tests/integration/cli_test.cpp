// The command line: --version, usage errors, and a store that cannot be opened.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/process.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// `rollsafe serve` on loopback with port 0 and a temporary store, plus `extra`. Even if a
/// bad flag were accepted, the process would bind nothing shared (and is killed at the
/// timeout).
std::vector<std::string> ServeArgs(const TempDir& dir, std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        RollsafeBinary(), "serve",       "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0", "--store",  "sqlite:" + dir.Path() + "/t.db"};
    for (auto& e : extra) argv.push_back(std::move(e));
    return argv;
}

TEST(Cli, VersionPrintsProjectVersionAndExitsZero) {
    const ProcessResult r = RunProcess({RollsafeBinary(), "--version"}, 10s);
    ASSERT_EQ(r.spawn_errno, 0);
    ASSERT_TRUE(r.exit_code) << "--version did not exit";
    EXPECT_EQ(*r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, std::string("rollsafe ") + ROLLSAFE_EXPECTED_VERSION + "\n");
}

TEST(Cli, DurationWithoutUnitIsAUsageErrorOnStderr) {
    TempDir dir;
    const ProcessResult r = RunProcess(ServeArgs(dir, {"--drain-delay", "5"}), 10s);
    ASSERT_TRUE(r.exit_code) << "serve with --drain-delay 5 did not exit (it should not start)";
    EXPECT_NE(*r.exit_code, 0);
    EXPECT_EQ(*r.exit_code, 2) << "contract: usage errors exit 2\nstderr: " << r.err;
    EXPECT_NE(r.err.find("drain-delay"), std::string::npos)
        << "stderr should name the bad flag: " << r.err;
    EXPECT_EQ(r.out.find("\"listening\""), std::string::npos) << "it started listening";
}

TEST(Cli, EveryServeFlagCanComeFromTheEnvironmentAndTheCommandLineWins) {
    ServeOptions o;
    o.env = {{"ROLLSAFE_DRAIN_DELAY", "1500ms"}, {"ROLLSAFE_SHUTDOWN_TIMEOUT", "7s"}};
    o.extra_args = {"--shutdown-timeout", "9s"};
    ServeProcess p(o);
    const auto listening = p.WaitForEvent("listening", DeadlineIn(kMaxTestWait));
    ASSERT_TRUE(listening);
    EXPECT_EQ(listening->GetNumber("drain_delay_ms"), 1500);
    EXPECT_EQ(listening->GetNumber("shutdown_timeout_ms"), 9000);

    // A bad value from the environment is the same usage error as on the command line.
    TempDir dir;
    std::vector<std::string> argv = ServeArgs(dir, {});
    argv.insert(argv.begin(), {"env", "ROLLSAFE_DRAIN_DELAY=5"});
    const ProcessResult r = RunProcess(argv, 10s);
    ASSERT_TRUE(r.exit_code);
    EXPECT_EQ(*r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("drain-delay"), std::string::npos) << r.err;
}

TEST(Cli, OtherBadFlagValuesAreUsageErrors) {
    const std::vector<std::vector<std::string>> bad = {
        {"--drain-delay", "5x"}, {"--shutdown-timeout", "1 s"}, {"--header-timeout", "ms"},
        {"--threads", "many"},   {"--sync", "sometimes"},       {"--max-connections", "lots"},
        {"--pg-pool", "0"},      {"--pg-batch", "0"},           {"--pg-batch", "65"},
        {"--no-such-flag"},
    };
    for (const auto& extra : bad) {
        TempDir dir;
        std::string shown;
        for (const auto& e : extra) shown += e + " ";
        const ProcessResult r = RunProcess(ServeArgs(dir, extra), 10s);
        ASSERT_TRUE(r.exit_code) << shown << ": did not exit";
        EXPECT_EQ(*r.exit_code, 2) << shown << "\nstderr: " << r.err;
        EXPECT_FALSE(r.err.empty()) << shown << ": no message on stderr";
    }
}

TEST(Cli, UnopenableStoreExitsOneWithMessageNamingThePath) {
    TempDir dir;
    const std::string path = dir.Path() + "/missing-dir/x.db";
    const ProcessResult r =
        RunProcess({RollsafeBinary(), "serve", "--listen", "127.0.0.1:0", "--admin-listen",
                    "127.0.0.1:0", "--store", "sqlite:" + path},
                   10s);
    ASSERT_TRUE(r.exit_code) << "serve with an unopenable store did not exit";
    EXPECT_NE(*r.exit_code, 0);
    EXPECT_EQ(*r.exit_code, 1) << "contract: a store that cannot be opened exits 1";
    // The message may be on stderr or in a JSON log line on stdout; either way it names the path.
    EXPECT_TRUE(r.err.find(path) != std::string::npos || r.out.find(path) != std::string::npos)
        << "no message naming the store path\nstderr: " << r.err << "\nstdout: " << r.out;
    EXPECT_EQ(r.out.find("\"listening\""), std::string::npos) << "it started listening";
}

}  // namespace
}  // namespace rollsafe::testing
