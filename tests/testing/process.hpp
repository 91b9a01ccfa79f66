/// @file
/// @brief Child processes for multi-process tests: the real `rollsafe` binary under test
/// (ServeProcess) and short-lived commands (RunProcess), with every wait bounded.
///
/// Children are started with fork+exec and PR_SET_PDEATHSIG=SIGKILL, so a crashed or
/// timed-out test never leaves a server behind. Nothing here is specific to one test; the
/// path of the binary comes from the compile definition `ROLLSAFE_BINARY`.
#pragma once

#include <sys/types.h>
#include "testing/temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "testing/mini_json.hpp"

namespace rollsafe::testing {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

/// The one upper bound for any wait in a test (userver's kMaxTestWaitTime). Waits that the
/// contract bounds more tightly use their own, shorter deadline.
inline constexpr std::chrono::seconds kMaxTestWait{20};

/// `now + d`.
inline Deadline DeadlineIn(SteadyClock::duration d) { return SteadyClock::now() + d; }

/// Milliseconds from `from` to `to` (negative when `to` is earlier), for messages and bounds.
inline double MsBetween(SteadyClock::time_point from, SteadyClock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

/// `d` in (fractional) milliseconds.
inline double Ms(SteadyClock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

/// Path of the binary under test (the `ROLLSAFE_BINARY` compile definition).
std::string RollsafeBinary();

/// A fresh directory from mkdtemp(3) under $TMPDIR (or /tmp), removed recursively on

/// Exit status in shell convention: the exit code, or 128 + signal number when killed.
int DecodeWaitStatus(int status);

/// Outcome of RunProcess.
struct ProcessResult {
    std::optional<int> exit_code;  ///< nullopt when the deadline passed (child was killed)
    std::string out;               ///< everything written to stdout
    std::string err;               ///< everything written to stderr
    int spawn_errno = 0;           ///< non-zero when the program could not be started
};

/// Runs `argv` (argv[0] is looked up in PATH when it has no '/') to completion with stdin
/// from /dev/null, collecting stdout and stderr. After `timeout` the child is killed with
/// SIGKILL and `exit_code` is empty. Thread-safe.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         SteadyClock::duration timeout = kMaxTestWait);

/// How to start a ServeProcess, beyond what every one gets.
struct ServeOptions {
    /// Appended to the command line after the defaults.
    std::vector<std::string> extra_args;
    /// The SQLite file for `--store sqlite:`. Empty: `t.db` in a fresh temporary directory that
    /// the process owns. Several processes may share one file (replicas of one service), and a
    /// process may be started on the file of one that died (a restart).
    std::string db_path;
    /// When set, `--store <store_url>` replaces `--store sqlite:<db_path>` (e.g. a
    /// `postgres://` URL; several replicas share it).
    std::string store_url;
    /// Variables set in the child's environment on top of the test's own (replacing a variable
    /// of the same name), e.g. `{"ROLLSAFE_TEST_CRASH_AFTER", "worked"}`.
    std::vector<std::pair<std::string, std::string>> env;
    /// `--threads`.
    int threads = 2;
    /// `--listen`: port 0 picks a free port; a fixed one (on 127.0.0.1) is for tests that need
    /// a client to find a restarted server at the same address.
    std::string listen = "127.0.0.1:0";
};

/// The `rollsafe serve` binary, started on loopback with port 0 for both listeners (or
/// ServeOptions::listen for the API one), a store in a fresh temporary directory (or
/// ServeOptions::db_path) and two threads (or ServeOptions::threads):
///
///   rollsafe serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
///                  --store sqlite:<tmp>/t.db --threads 2 <extra_args...>
///
/// Its stdout and stderr are read by a background thread that keeps every line. The
/// constructor returns once the `"event":"listening"` line has been parsed; it throws
/// std::runtime_error (with the output seen so far) when that line does not come within
/// 10 s or the process exits first. The destructor kills the process (SIGKILL) if it is
/// still running and, when the current test has failed, prints the server's output.
///
/// Thread-safety: Lines/WaitForLine/Stderr may be called from any thread; Signal/WaitExit from
/// one thread at a time.
class ServeProcess {
  public:
    explicit ServeProcess(std::vector<std::string> extra_args = {});
    explicit ServeProcess(ServeOptions options);
    ~ServeProcess();
    ServeProcess(const ServeProcess&) = delete;
    ServeProcess& operator=(const ServeProcess&) = delete;

    pid_t Pid() const { return pid_; }
    std::uint16_t ApiPort() const { return api_port_; }
    std::uint16_t AdminPort() const { return admin_port_; }
    /// The SQLite database file (the path inside `--store sqlite:`).
    const std::string& DbPath() const { return db_path_; }
    /// The full command line, for messages.
    const std::vector<std::string>& Argv() const { return argv_; }

    /// Sends `signo` to the process. Returns false if it has already been reaped.
    bool Signal(int signo);

    /// Waits until the process exits or `deadline` passes. Returns the exit status (see
    /// DecodeWaitStatus) or nullopt on timeout. Once reaped, returns the same status again.
    std::optional<int> WaitExit(Deadline deadline);

    /// When the exit was observed by WaitExit (polled every millisecond), if it was.
    std::optional<SteadyClock::time_point> ExitedAt() const { return exited_at_; }

    /// True while the process has not been reaped and waitpid(WNOHANG) does not see it gone.
    bool Running();

    /// Every complete stdout line so far (without the newline).
    std::vector<std::string> Lines() const;
    /// Everything written to stderr so far.
    std::string Stderr() const;

    /// Waits for a stdout line containing `substring`, looking at lines with index >=
    /// `from_line`. Returns the first such line, or nullopt when the deadline passes or stdout
    /// is closed without one.
    std::optional<std::string> WaitForLine(std::string_view substring, Deadline deadline,
                                           std::size_t from_line = 0) const;

    /// Waits for a stdout line that is a JSON object whose "event" is `event` (e.g. "exit",
    /// "lifecycle"), looking at lines with index >= `from_line`, and returns it parsed.
    std::optional<JsonValue> WaitForEvent(std::string_view event, Deadline deadline,
                                          std::size_t from_line = 0) const;

    /// Every stdout line that is a JSON object with "event" equal to `event`, parsed.
    std::vector<JsonValue> Events(std::string_view event) const;

    /// Stdout and stderr as one text block, for failure messages.
    std::string OutputForMessage() const;

  private:
    template <typename Pred>
    std::optional<std::string> WaitForLineIf(Pred pred, Deadline deadline,
                                             std::size_t from_line) const;
    void ReaderLoop();
    void KillAndReap();
    void StopReader();

    TempDir dir_;
    std::string db_path_;
    std::vector<std::string> argv_;
    pid_t pid_ = -1;
    std::optional<int> exit_status_;
    std::optional<SteadyClock::time_point> exited_at_;
    std::uint16_t api_port_ = 0;
    std::uint16_t admin_port_ = 0;

    int out_fd_ = -1;
    int err_fd_ = -1;
    std::thread reader_;
    std::atomic<bool> stop_reader_{false};

    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::vector<std::string> lines_;
    std::string partial_out_;
    std::string err_;
    bool out_closed_ = false;
};

}  // namespace rollsafe::testing
