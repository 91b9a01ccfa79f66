#include "drill/child.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <stdexcept>

extern char** environ;

namespace rollsafe::drill {
namespace {

std::string ResolveProgram(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    dirs += ":/usr/sbin:/sbin";  // nginx lives in /usr/sbin, often not in a user's PATH
    std::size_t pos = 0;
    while (pos <= dirs.size()) {
        const auto colon = dirs.find(':', pos);
        std::string dir =
            dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
        if (dir.empty()) dir = ".";
        const std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        if (colon == std::string::npos) break;
        pos = colon + 1;
    }
    return name;
}

int Decode(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

/// Runs `job` on one thread that lives as long as the process, and waits for it.
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process: a
/// replica started from a short-lived scenario thread would be killed when that thread
/// returns. Forking from this thread ties every child to the life of the drill itself.
void OnSpawnerThread(const std::function<void()>& job) {
    struct Queue {
        std::mutex mu;
        std::condition_variable cv;
        std::deque<std::function<void()>> jobs;
    };
    static Queue* q = [] {
        auto* queue = new Queue;  // never destroyed: the thread outlives static destruction
        std::thread([queue] {
            for (;;) {
                std::function<void()> next;
                {
                    std::unique_lock lock(queue->mu);
                    queue->cv.wait(lock, [queue] { return !queue->jobs.empty(); });
                    next = std::move(queue->jobs.front());
                    queue->jobs.pop_front();
                }
                next();
            }
        }).detach();
        return queue;
    }();
    std::promise<void> done;
    auto finished = done.get_future();
    {
        std::lock_guard lock(q->mu);
        q->jobs.emplace_back([&] {
            try {
                job();
                done.set_value();
            } catch (...) {
                done.set_exception(std::current_exception());
            }
        });
    }
    q->cv.notify_one();
    finished.get();
}

}  // namespace

std::string SelfExecutable() {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
    return std::string(buf, static_cast<std::size_t>(n));
}

std::string DescribeStatus(int status) {
    if (status >= 128) {
        const int sig = status - 128;
        const char* name = sig == SIGKILL ? " (SIGKILL)" : sig == SIGTERM ? " (SIGTERM)" : "";
        return "signal " + std::to_string(sig) + name;
    }
    return "exit " + std::to_string(status);
}

Child::Child(ChildOptions options) : options_(std::move(options)) {
    if (options_.argv.empty()) throw std::invalid_argument("Child: empty argv");
    const std::string program = ResolveProgram(options_.argv[0]);
    std::vector<char*> cargv;
    for (auto& a : options_.argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string entry(*e);
        const std::string name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto& [k, v] : options_.env) replaced = replaced || name == k;
        if (!replaced) env.push_back(entry);
    }
    for (const auto& [k, v] : options_.env) env.push_back(k + "=" + v);
    std::vector<char*> cenv;
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);

    int out[2], status_pipe[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(status_pipe, O_CLOEXEC) != 0)
        throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();
    pid_t pid = -1;
    int fork_errno = 0;
    OnSpawnerThread([&] {
        pid = ::fork();
        fork_errno = errno;
        if (pid != 0) return;
        // Only async-signal-safe calls until exec: the drill has other threads.
        ::setpgid(0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        if (::dup2(dev_null, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(out[1], 2) < 0) {
            const int e = errno;
            (void)!::write(status_pipe[1], &e, sizeof e);
            ::_exit(127);
        }
        // The drill's own sockets (Asio's are not CLOEXEC) must not live on in a replica or
        // a rollout command: a connection the drill closes would stay open in the child.
        ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        ::execve(program.c_str(), cargv.data(), cenv.data());
        const int e = errno;
        (void)!::write(status_pipe[1], &e, sizeof e);
        ::_exit(127);
    });
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(fork_errno));
    // Also from the parent: a signal sent to the group before the child ran setpgid must
    // still find the group.
    ::setpgid(pid, pid);
    ::close(out[1]);
    ::close(status_pipe[1]);
    if (dev_null >= 0) ::close(dev_null);
    int child_errno = 0;
    ssize_t n;
    do {
        n = ::read(status_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    ::close(status_pipe[0]);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        int st = 0;
        ::waitpid(pid, &st, 0);
        ::close(out[0]);
        throw std::runtime_error("cannot start " + program + ": " + std::strerror(child_errno));
    }
    pid_ = pid;
    reader_ = std::thread([this, fd = out[0]] { ReaderLoop(fd); });
}

Child::~Child() {
    if (!Exited()) {
        SignalGroup(SIGKILL);
        WaitExit(std::chrono::seconds(10));
    }
    // Something that left the group (setsid) may still hold the output pipe open: the reader
    // gets a moment to drain what is left, then gives up instead of waiting for an EOF.
    stop_reader_ = true;
    if (reader_.joinable()) reader_.join();
}

void Child::ReaderLoop(int fd) {
    std::ofstream log;
    if (!options_.log_path.empty()) log.open(options_.log_path, std::ios::app);
    std::string partial;
    char buf[16384];
    std::optional<std::chrono::steady_clock::time_point> give_up_at;
    for (;;) {
        if (stop_reader_.load() && !give_up_at)
            give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        if (give_up_at && std::chrono::steady_clock::now() >= *give_up_at) break;
        pollfd p{fd, POLLIN, 0};
        const int ready = ::poll(&p, 1, 100);
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) continue;
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        partial.append(buf, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (auto nl = partial.find('\n'); nl != std::string::npos;
             nl = partial.find('\n', start)) {
            const std::string line = partial.substr(start, nl - start);
            start = nl + 1;
            if (log.is_open()) log << line << '\n';
            if (options_.on_line) options_.on_line(line);
        }
        partial.erase(0, start);
        if (log.is_open()) log.flush();
    }
    if (!partial.empty()) {
        if (log.is_open()) log << partial << '\n';
        if (options_.on_line) options_.on_line(partial);
    }
    ::close(fd);
}

bool Child::Signal(int signo) {
    std::lock_guard lock(mu_);
    if (status_) return false;
    return ::kill(pid_, signo) == 0;
}

void Child::SignalGroup(int signo) {
    std::lock_guard lock(mu_);
    if (pid_ > 0 && !status_) ::kill(-pid_, signo);
}

bool Child::Exited() {
    std::lock_guard lock(mu_);
    if (status_) return true;
    // Peek first (WNOWAIT): while the exited child is not reaped its pid, and so its process
    // group id, cannot be reused, so killing what is left of the group hits only our own.
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        info.si_pid != pid_)
        return false;
    ::kill(-pid_, SIGKILL);
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, 0);
    if (r == pid_) {
        status_ = Decode(st);
        exited_at_ = std::chrono::steady_clock::now();
        return true;
    }
    return false;
}

std::optional<int> Child::WaitExit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (Exited()) return ExitStatus();
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

std::optional<int> Child::ExitStatus() {
    std::lock_guard lock(mu_);
    return status_;
}

std::optional<std::chrono::steady_clock::time_point> Child::ExitedAt() {
    std::lock_guard lock(mu_);
    return exited_at_;
}

int Child::Terminate(std::chrono::milliseconds grace) {
    if (!Exited()) {
        SignalGroup(SIGTERM);
        if (!WaitExit(grace)) {
            SignalGroup(SIGKILL);
            WaitExit(std::chrono::seconds(10));
        }
    }
    return ExitStatus().value_or(-1);
}

}  // namespace rollsafe::drill
