#include "testing/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <system_error>

#include <gtest/gtest.h>

#ifndef ROLLSAFE_BINARY
#error "ROLLSAFE_BINARY must be defined to the path of the rollsafe binary"
#endif

extern char** environ;

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kListeningWait = 10s;

[[noreturn]] void ThrowErrno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), what);
}

void CloseFd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

/// argv[0] as a path: itself when it contains '/', else the first executable match in PATH.
std::string ResolveProgram(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!dirs.empty()) {
        const auto colon = dirs.find(':');
        std::string dir(dirs.substr(0, colon));
        dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return name;  // execv fails with ENOENT, reported through spawn_errno
}

struct Spawned {
    pid_t pid = -1;
    int out_fd = -1;
    int err_fd = -1;
    int spawn_errno = 0;
};

/// The test's environment with `overrides` set (replacing variables of the same name), as
/// "NAME=value" strings.
std::vector<std::string> MergedEnvironment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const std::string_view name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto& [k, v] : overrides) replaced = replaced || name == k;
        if (!replaced) env.emplace_back(entry);
    }
    for (const auto& [k, v] : overrides) env.push_back(k + "=" + v);
    return env;
}

/// fork+exec with stdin from /dev/null and stdout/stderr into fresh pipes, with the test's
/// environment plus `env_overrides`. Between fork and exec only async-signal-safe calls are
/// made (the test process has other threads).
Spawned Spawn(const std::vector<std::string>& argv,
              const std::vector<std::pair<std::string, std::string>>& env_overrides = {}) {
    if (argv.empty()) throw std::invalid_argument("Spawn: empty argv");
    const std::string program = ResolveProgram(argv[0]);
    std::vector<char*> cargv;
    cargv.reserve(argv.size() + 1);
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    const std::vector<std::string> env = MergedEnvironment(env_overrides);
    std::vector<char*> cenv;
    cenv.reserve(env.size() + 1);
    for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    int out[2], err[2], status_pipe[2];
    if (::pipe2(out, O_CLOEXEC) != 0) ThrowErrno("pipe2");
    if (::pipe2(err, O_CLOEXEC) != 0) ThrowErrno("pipe2");
    if (::pipe2(status_pipe, O_CLOEXEC) != 0) ThrowErrno("pipe2");
    const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dev_null < 0) ThrowErrno("open /dev/null");
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0) ThrowErrno("fork");
    if (pid == 0) {
        // Child. The server must never outlive the test that started it.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        if (::dup2(dev_null, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0) {
            const int e = errno;
            (void)!::write(status_pipe[1], &e, sizeof e);
            ::_exit(127);
        }
        ::execve(program.c_str(), cargv.data(), cenv.data());
        const int e = errno;
        (void)!::write(status_pipe[1], &e, sizeof e);
        ::_exit(127);
    }

    ::close(out[1]);
    ::close(err[1]);
    ::close(status_pipe[1]);
    ::close(dev_null);
    Spawned s;
    s.pid = pid;
    s.out_fd = out[0];
    s.err_fd = err[0];
    // exec closes the CLOEXEC write end: EOF means success, 4 bytes are exec's errno.
    int child_errno = 0;
    ssize_t n;
    do {
        n = ::read(status_pipe[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    ::close(status_pipe[0]);
    if (n == static_cast<ssize_t>(sizeof child_errno)) {
        s.spawn_errno = child_errno;
        int st = 0;
        ::waitpid(pid, &st, 0);  // the child has already called _exit
        CloseFd(s.out_fd);
        CloseFd(s.err_fd);
        s.pid = -1;
    }
    return s;
}

/// Reads what is available from `fd` into `out`. Returns false on EOF or a hard error.
bool ReadSome(int fd, std::string& out) {
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
            out.append(buf, static_cast<std::size_t>(n));
            return true;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

int PollTimeoutMs(Deadline deadline, int cap_ms) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
            .count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>(left, cap_ms));
}

std::string JoinArgv(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) {
        if (!s.empty()) s += ' ';
        s += a;
    }
    return s;
}

bool IsEvent(const std::string& line, std::string_view event) {
    if (line.find(event) == std::string::npos) return false;  // cheap filter
    const auto v = ParseJson(line);
    if (!v || !v->IsObject()) return false;
    const auto e = v->GetString("event");
    return e && *e == event;
}

}  // namespace

std::string RollsafeBinary() { return ROLLSAFE_BINARY; }

int DecodeWaitStatus(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, SteadyClock::duration timeout) {
    const Deadline deadline = DeadlineIn(timeout);
    ProcessResult r;
    Spawned s = Spawn(argv);
    if (s.spawn_errno != 0) {
        r.spawn_errno = s.spawn_errno;
        return r;
    }
    ::fcntl(s.out_fd, F_SETFL, O_NONBLOCK);
    ::fcntl(s.err_fd, F_SETFL, O_NONBLOCK);
    bool timed_out = false;
    while (s.out_fd >= 0 || s.err_fd >= 0) {
        pollfd fds[2] = {{s.out_fd, POLLIN, 0}, {s.err_fd, POLLIN, 0}};
        const int timeout_ms = PollTimeoutMs(deadline, 100);
        if (timeout_ms == 0 && SteadyClock::now() >= deadline) {
            timed_out = true;
            break;
        }
        const int rc = ::poll(fds, 2, timeout_ms);
        if (rc < 0 && errno != EINTR) ThrowErrno("poll");
        if (rc <= 0) continue;
        if (fds[0].revents != 0 && !ReadSome(s.out_fd, r.out)) CloseFd(s.out_fd);
        if (fds[1].revents != 0 && !ReadSome(s.err_fd, r.err)) CloseFd(s.err_fd);
    }
    CloseFd(s.out_fd);
    CloseFd(s.err_fd);
    int st = 0;
    for (;;) {
        const pid_t w = ::waitpid(s.pid, &st, WNOHANG);
        if (w == s.pid) {
            if (!timed_out) r.exit_code = DecodeWaitStatus(st);
            break;
        }
        if (timed_out || SteadyClock::now() >= deadline) {
            ::kill(s.pid, SIGKILL);
            ::waitpid(s.pid, &st, 0);
            break;
        }
        std::this_thread::sleep_for(1ms);
    }
    return r;
}

namespace {
ServeOptions WithArgs(std::vector<std::string> extra_args) {
    ServeOptions o;
    o.extra_args = std::move(extra_args);
    return o;
}
}  // namespace

ServeProcess::ServeProcess(std::vector<std::string> extra_args)
    : ServeProcess(WithArgs(std::move(extra_args))) {}

ServeProcess::ServeProcess(ServeOptions options) {
    db_path_ = options.db_path.empty() ? dir_.Path() + "/t.db" : std::move(options.db_path);
    argv_ = {RollsafeBinary(), "serve",
             "--listen",       options.listen,
             "--admin-listen", "127.0.0.1:0",
             "--store",        options.store_url.empty() ? "sqlite:" + db_path_ : options.store_url,
             "--threads",      std::to_string(options.threads)};
    for (auto& a : options.extra_args) argv_.push_back(std::move(a));

    Spawned s = Spawn(argv_, options.env);
    if (s.spawn_errno != 0)
        throw std::runtime_error("cannot start " + argv_[0] + ": " + std::strerror(s.spawn_errno));
    pid_ = s.pid;
    out_fd_ = s.out_fd;
    err_fd_ = s.err_fd;
    ::fcntl(out_fd_, F_SETFL, O_NONBLOCK);
    ::fcntl(err_fd_, F_SETFL, O_NONBLOCK);
    reader_ = std::thread([this] { ReaderLoop(); });

    try {
        const Deadline deadline = DeadlineIn(kListeningWait);
        const auto listening = WaitForEvent("listening", deadline);
        if (!listening) {
            std::string why = "no \"listening\" line within 10 s";
            if (const auto st = WaitExit(DeadlineIn(0ms)))
                why = "process exited with status " + std::to_string(*st) +
                      " before logging \"listening\"";
            throw std::runtime_error(why + "\ncommand: " + JoinArgv(argv_) + "\n" +
                                     OutputForMessage());
        }
        const auto api = listening->GetNumber("api_port");
        const auto admin = listening->GetNumber("admin_port");
        if (!api || !admin || *api < 1 || *api > 65535 || *admin < 1 || *admin > 65535)
            throw std::runtime_error("\"listening\" line without valid api_port/admin_port: " +
                                     listening->Dump());
        api_port_ = static_cast<std::uint16_t>(*api);
        admin_port_ = static_cast<std::uint16_t>(*admin);
    } catch (...) {
        KillAndReap();
        StopReader();
        throw;
    }
}

ServeProcess::~ServeProcess() {
    KillAndReap();
    StopReader();
    if (::testing::Test::HasFailure()) {
        std::cerr << "---- rollsafe serve (pid " << pid_ << ", " << JoinArgv(argv_)
                  << ") output ----\n"
                  << OutputForMessage() << "---- end of server output ----\n";
    }
}

void ServeProcess::KillAndReap() {
    if (pid_ <= 0 || exit_status_) return;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        exit_status_ = DecodeWaitStatus(st);
        return;
    }
    ::kill(pid_, SIGKILL);
    if (::waitpid(pid_, &st, 0) == pid_) exit_status_ = DecodeWaitStatus(st);
}

void ServeProcess::StopReader() {
    stop_reader_.store(true);
    if (reader_.joinable()) reader_.join();
    CloseFd(out_fd_);
    CloseFd(err_fd_);
}

void ServeProcess::ReaderLoop() {
    bool out_open = true;
    bool err_open = true;
    while (out_open || err_open) {
        pollfd fds[2] = {{out_open ? out_fd_ : -1, POLLIN, 0},
                         {err_open ? err_fd_ : -1, POLLIN, 0}};
        const int rc = ::poll(fds, 2, 20);
        if (rc < 0 && errno != EINTR) break;
        if (rc <= 0) {
            // Only give up on the pipes once the child is gone (killed by the destructor).
            if (stop_reader_.load()) break;
            continue;
        }
        std::string out_chunk;
        std::string err_chunk;
        if (out_open && fds[0].revents != 0) out_open = ReadSome(out_fd_, out_chunk);
        if (err_open && fds[1].revents != 0) err_open = ReadSome(err_fd_, err_chunk);
        {
            std::lock_guard lock(mu_);
            err_ += err_chunk;
            partial_out_ += out_chunk;
            std::size_t start = 0;
            for (;;) {
                const auto nl = partial_out_.find('\n', start);
                if (nl == std::string::npos) break;
                std::string line = partial_out_.substr(start, nl - start);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                lines_.push_back(std::move(line));
                start = nl + 1;
            }
            partial_out_.erase(0, start);
            if (!out_open) {
                if (!partial_out_.empty()) lines_.push_back(std::move(partial_out_));
                partial_out_.clear();
                out_closed_ = true;
            }
        }
        cv_.notify_all();
    }
    {
        std::lock_guard lock(mu_);
        out_closed_ = true;
    }
    cv_.notify_all();
}

bool ServeProcess::Signal(int signo) {
    if (pid_ <= 0 || exit_status_) return false;
    return ::kill(pid_, signo) == 0;
}

std::optional<int> ServeProcess::WaitExit(Deadline deadline) {
    if (exit_status_) return exit_status_;
    if (pid_ <= 0) return std::nullopt;
    for (;;) {
        int st = 0;
        const pid_t w = ::waitpid(pid_, &st, WNOHANG);
        if (w == pid_) {
            exit_status_ = DecodeWaitStatus(st);
            exited_at_ = SteadyClock::now();
            return exit_status_;
        }
        if (w < 0 && errno != EINTR) return std::nullopt;
        if (SteadyClock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(1ms);
    }
}

bool ServeProcess::Running() { return !WaitExit(SteadyClock::now()).has_value(); }

std::vector<std::string> ServeProcess::Lines() const {
    std::lock_guard lock(mu_);
    return lines_;
}

std::string ServeProcess::Stderr() const {
    std::lock_guard lock(mu_);
    return err_;
}

template <typename Pred>
std::optional<std::string> ServeProcess::WaitForLineIf(Pred pred, Deadline deadline,
                                                       std::size_t from_line) const {
    std::unique_lock lock(mu_);
    std::size_t next = from_line;
    for (;;) {
        for (; next < lines_.size(); ++next)
            if (pred(lines_[next])) return lines_[next];
        if (out_closed_) return std::nullopt;
        if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
            for (; next < lines_.size(); ++next)
                if (pred(lines_[next])) return lines_[next];
            return std::nullopt;
        }
    }
}

std::optional<std::string> ServeProcess::WaitForLine(std::string_view substring, Deadline deadline,
                                                     std::size_t from_line) const {
    return WaitForLineIf(
        [substring](const std::string& line) { return line.find(substring) != std::string::npos; },
        deadline, from_line);
}

std::optional<JsonValue> ServeProcess::WaitForEvent(std::string_view event, Deadline deadline,
                                                    std::size_t from_line) const {
    const auto line = WaitForLineIf([event](const std::string& l) { return IsEvent(l, event); },
                                    deadline, from_line);
    if (!line) return std::nullopt;
    return ParseJson(*line);
}

std::vector<JsonValue> ServeProcess::Events(std::string_view event) const {
    std::vector<JsonValue> out;
    for (const auto& line : Lines())
        if (IsEvent(line, event)) out.push_back(*ParseJson(line));
    return out;
}

std::string ServeProcess::OutputForMessage() const {
    std::lock_guard lock(mu_);
    std::string s = "stdout:\n";
    for (const auto& l : lines_) s += "  " + l + "\n";
    if (!partial_out_.empty()) s += "  " + partial_out_ + " (no newline)\n";
    s += "stderr:\n" + err_;
    if (!err_.empty() && err_.back() != '\n') s += '\n';
    return s;
}

}  // namespace rollsafe::testing
