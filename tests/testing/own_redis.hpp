/// @file
/// @brief A redis-server of a test's own, for tests that kill it (the shared one in
/// ROLLSAFE_TEST_REDIS must keep running for the tests beside them). Header-only, so that unit
/// tests (src/lock) and integration tests both use it.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace rollsafe::testing {

/// redis-server on 127.0.0.1, on a port the kernel just handed out, without persistence (a
/// restart comes back empty), its files in `dir`. Start() may be called again after Stop() (the
/// same port). The destructor kills it.
class OwnRedis {
  public:
    explicit OwnRedis(std::string dir) : dir_(std::move(dir)) {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (s >= 0 && ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0)
            port_ = ntohs(a.sin_port);
        if (s >= 0) ::close(s);
    }
    ~OwnRedis() {
        Resume();
        Stop();
    }
    OwnRedis(const OwnRedis&) = delete;
    OwnRedis& operator=(const OwnRedis&) = delete;

    /// Starts it and waits (at most 10 s) until it answers PING. False when it did not.
    bool Start() {
        if (port_ == 0) return false;
        const std::string port = std::to_string(port_);
        const std::string cmd = "redis-server --bind 127.0.0.1 --port " + port +
                                " --save '' --appendonly no --daemonize yes --dir '" + dir_ +
                                "' --pidfile '" + dir_ + "/redis.pid' --logfile '" + dir_ +
                                "/redis.log'";
        if (std::system(cmd.c_str()) != 0) return false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            std::ifstream f(dir_ + "/redis.pid");
            if ((f >> pid_) && pid_ > 0 &&
                std::system(("redis-cli -p " + port + " ping >/dev/null 2>&1").c_str()) == 0)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return false;
    }

    /// SIGKILLs it (a crash, not a shutdown) and waits (at most 5 s) until it is gone.
    void Stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (::kill(pid_, 0) == 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::remove((dir_ + "/redis.pid").c_str());
        pid_ = 0;
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing, then again.
    void Pause() {
        if (pid_ > 0) ::kill(pid_, SIGSTOP);
    }
    void Resume() {
        if (pid_ > 0) ::kill(pid_, SIGCONT);
    }

    std::string Url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  private:
    std::string dir_;
    int port_ = 0;
    pid_t pid_ = 0;
};

}  // namespace rollsafe::testing
