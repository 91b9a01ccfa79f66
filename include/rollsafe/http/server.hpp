/// @file
/// @brief The HTTP/1.1 server: an API listener and an admin listener, driven by the lifecycle.
///
/// Threading: `threads` event loops, one thread each; the acceptor hands each accepted
/// connection to the next loop in turn (no shared accept queue), and a connection stays on
/// its loop for life. Handlers run on their connection's loop and must not block it.
///
/// Lifecycle (see docs/lifecycle.md): SIGTERM/SIGINT or `GET /lifecycle/prestop` on the admin
/// listener start draining; during draining everything is served and every response carries
/// `Connection: close` and `x-envoy-immediate-health-check-fail: true`; then listeners and
/// idle connections close, in-flight requests finish, and Run() returns. At the shutdown
/// deadline (or a second signal) in-flight requests are cancelled and answered 503 +
/// Retry-After.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "rollsafe/http/router.hpp"
#include "rollsafe/lifecycle/lifecycle.hpp"
#include "rollsafe/metrics/registry.hpp"

namespace rollsafe::http {

struct ServerOptions {
    std::string listen = "0.0.0.0:8080";               ///< API listener; port 0 picks a free port
    std::string admin_listen = "0.0.0.0:9090";         ///< admin listener; port 0 picks a free port
    int threads = 0;                                   ///< 0: number of cores
    std::size_t header_limit = 16 * 1024;              ///< request line + headers; over it: 431
    std::size_t body_limit = 1024 * 1024;              ///< over it: 413
    std::chrono::milliseconds header_timeout{10'000};  ///< first byte to end of headers: 408
    std::chrono::milliseconds body_timeout{30'000};    ///< end of headers to end of body: 408
    std::chrono::milliseconds idle_timeout{75'000};    ///< keep-alive idle: connection closed
    std::size_t max_connections = 10'000;              ///< over it: 503 + Retry-After, then close
    int retry_after_seconds = 1;                       ///< Retry-After sent with 503s
    bool access_log = true;                            ///< one JSON line per request
    std::string replica_name;                          ///< shown in logs; defaults to the host name
};

/// Probes the server answers itself, wired to the lifecycle and a store health check.
struct Probes {
    /// Extra readiness condition (e.g. the store answers). Must be cheap and thread-safe.
    std::function<bool()> dependencies_ready = [] { return true; };
};

/// Work the server runs outside any request (e.g. the recovery worker).
using BackgroundTask = std::function<boost::asio::awaitable<void>(RequestContext&)>;

class Server {
  public:
    /// Binds both listeners (throws std::runtime_error with the address on failure). Routes
    /// for /livez, /readyz, /health, /metrics and /lifecycle/prestop are added by the server.
    Server(ServerOptions options, Router api, Router admin, lifecycle::Lifecycle& lifecycle,
           metrics::Registry& metrics, Probes probes = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Bound ports (useful with port 0).
    unsigned short ApiPort() const;
    unsigned short AdminPort() const;

    /// Runs `task` on one of the event loops. Thread-safe; may be called before Run() (the
    /// task starts when the loops do) or from a handler. A `counted` task is in flight like a
    /// request (the process does not exit while it runs). Every background task is cancelled
    /// (RequestContext::Cancelled, Sleep returns false) as soon as closing begins, so it should
    /// hand its work back and return promptly. Exceptions are logged and swallowed.
    void Spawn(BackgroundTask task, bool counted);

    /// Marks the lifecycle ready, serves until the lifecycle reaches stopped, then returns.
    /// Installs handlers for SIGTERM and SIGINT for its duration.
    void Run();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rollsafe::http
