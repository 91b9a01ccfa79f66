/// @file
/// @brief A child process the drill supervises: started with fork+exec in its own process
/// group, killed with the drill (PR_SET_PDEATHSIG), its output read line by line.
///
/// Its own process group lets the drill end a child *and everything it started* with one
/// kill(-pgid) (nginx's workers, a rollout command's kubectl). Thread-safe: any thread may
/// signal, poll or wait; exactly one of them reaps.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace rollsafe::drill {

struct ChildOptions {
    /// argv[0] is looked up in PATH when it has no '/'.
    std::vector<std::string> argv;
    /// Set in the child's environment on top of the drill's own.
    std::vector<std::pair<std::string, std::string>> env;
    /// Every line the child writes to stdout or stderr is appended here (with a newline);
    /// empty: not kept.
    std::string log_path;
    /// Called on the reader thread for every complete output line (without the newline).
    std::function<void(const std::string&)> on_line;
};

class Child {
  public:
    /// Starts the child. Throws std::runtime_error naming the program and errno's words when
    /// it cannot be started (fork fails, exec fails).
    explicit Child(ChildOptions options);
    /// Kills the whole process group (SIGKILL) if the child still runs, reaps it and joins
    /// the reader (which reads what is left for at most 1 s more: something that left the
    /// group may hold the output pipe open).
    ~Child();
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t Pid() const { return pid_; }

    /// Sends `signo` to the child only. False when it has already been reaped.
    bool Signal(int signo);
    /// Sends `signo` to the child's process group (the child and what it started), unless
    /// the child was reaped.
    void SignalGroup(int signo);

    /// Reaps the child if it has exited, killing (SIGKILL) whatever is left in its process
    /// group first; true once it has (and stays true).
    bool Exited();
    /// Waits until the child exits or `timeout` passes (polling every 5 ms). Returns the exit
    /// status in shell convention (code, or 128 + signal) or nullopt on timeout.
    std::optional<int> WaitExit(std::chrono::milliseconds timeout);
    /// The exit status once reaped.
    std::optional<int> ExitStatus();
    /// When the exit was first observed (steady clock).
    std::optional<std::chrono::steady_clock::time_point> ExitedAt();

    /// Ends the child for good: SIGTERM to the group, then SIGKILL to the group after `grace`;
    /// reaps it. Returns the exit status.
    int Terminate(std::chrono::milliseconds grace);

  private:
    void ReaderLoop(int fd);

    ChildOptions options_;
    pid_t pid_ = -1;
    std::thread reader_;
    std::atomic<bool> stop_reader_{false};
    std::mutex mu_;
    std::optional<int> status_;
    std::optional<std::chrono::steady_clock::time_point> exited_at_;
};

/// "exit 0", "signal 9 (SIGKILL)", ... for a status from Child::WaitExit.
std::string DescribeStatus(int status);

/// The path of the running executable (/proc/self/exe), so the drill starts replicas of the
/// very binary it runs as.
std::string SelfExecutable();

}  // namespace rollsafe::drill
