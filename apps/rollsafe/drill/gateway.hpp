/// @file
/// @brief The drill's real gateway: an nginx started under a temporary prefix in front of the
/// replicas, whose endpoint list the drill changes the way an endpoint controller would.
///
/// Two modes:
/// - `kNginx`: an `upstream` block listing the endpoints; a change rewrites the config and
///   reloads nginx (SIGHUP), as a config-reloading ingress does. Old workers finish their
///   requests; the upstream keep-alive pool does not survive the reload.
/// - `kNginxLua`: the upstream is picked by `balancer_by_lua` from a shared dict that a
///   control location on a second loopback port updates; no reload, so the upstream
///   keep-alive pool survives endpoint changes, as in ingress-nginx and Kong. Needs Debian's
///   `libnginx-mod-http-lua`.
///
/// Both: the proxying location runs the settings users adopt from deploy/nginx/, embedded
/// at build time and written into the prefix: `include rollsafe-proxy.conf` (upstream
/// keep-alive via HTTP/1.1 and `Connection: ""`, timeouts, body limits, buffering) and, with
/// `retry` on, `include rollsafe-retry.conf` (`proxy_next_upstream error timeout http_502
/// http_503 non_idempotent`, safe because every POST carries an idempotency key; 3 tries,
/// 10 s); with `retry` off, `proxy_next_upstream off`. The generated part is what must be
/// dynamic: ports, prefix paths, the upstream block or Lua balancer, the control server. The
/// upstream keep-alive timeout (60 s, as in deploy/nginx/rollsafe.conf) stays below the
/// replicas' idle timeout (75 s). No passive health marking (`max_fails=0` in kNginx, none in
/// the Lua balancer): a refused endpoint is retried past per request, never benched.
/// `prefix/access.log` has one line per request with `$upstream_addr` and `$upstream_status`
/// (all tries), `prefix/error.log` nginx's notices and errors.
///
/// Only 127.0.0.1. Every method but the destructor may throw std::runtime_error with a
/// sentence that names the cause (and nginx's own words, e.g. from `nginx -t` or the error
/// log). Not thread-safe: one thread drives it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rollsafe::drill {

enum class GatewayMode { kNginx, kNginxLua };

/// "nginx" or "nginx-lua".
const char* ToString(GatewayMode m);

struct GatewayOptions {
    GatewayMode mode = GatewayMode::kNginxLua;
    /// proxy_next_upstream as above; off: `proxy_next_upstream off`.
    bool retry = true;
    /// Directory for nginx.conf, logs, pid and temp dirs; must exist and be writable.
    std::string prefix;
    /// The nginx binary; empty: `nginx` from PATH, then /usr/sbin/nginx.
    std::string nginx_binary;
    // No timeout options: the upstream timeouts are those of deploy/nginx/rollsafe-proxy.conf
    // (connect 1 s, send/read 60 s), so the drill measures the config users adopt.
};

/// A running nginx (master + one worker) that the destructor stops.
class Gateway {
  public:
    /// Writes the config (and the deploy/nginx/ snippets it includes), checks it with
    /// `nginx -t`, starts nginx in the foreground
    /// (`daemon off`, in its own process group, sent SIGTERM if the thread that constructs the
    /// Gateway dies: nginx's fast shutdown then stops its workers too), and returns once the
    /// gateway port accepts connections and a worker runs (deadline 10 s; a port taken
    /// between picking and binding is retried on a fresh one). `endpoints` are the replica
    /// API ports on 127.0.0.1; may be empty.
    Gateway(GatewayOptions options, const std::vector<std::uint16_t>& endpoints);
    /// Stops nginx (SIGQUIT, then SIGKILL to its process group after 5 s) and reaps it.
    ~Gateway();
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    /// Replaces the endpoint list and returns once nginx uses the new one: kNginx rewrites
    /// the config and reloads (returns when the new worker generation has started, deadline
    /// 10 s); kNginxLua posts the list to the control port (no reload). An empty list is
    /// allowed (the gateway then answers 502).
    void SetEndpoints(const std::vector<std::uint16_t>& endpoints);

    /// The URL clients send to, e.g. "http://127.0.0.1:41234".
    std::string Url() const;
    std::uint16_t Port() const { return port_; }
    pid_t MasterPid() const { return pid_; }
    /// Reloads done so far (kNginx); 0 in kNginxLua.
    int Reloads() const { return reloads_; }
    /// A one-line description for the report, e.g.
    /// "nginx 1.22.1, lua balancer (no reload), gateway retry on".
    std::string Describe() const;

    /// Stops nginx now (as the destructor); idempotent.
    void Stop();

  private:
    GatewayOptions options_;
    std::uint16_t port_ = 0;
    std::uint16_t control_port_ = 0;
    pid_t pid_ = -1;
    int reloads_ = 0;
    std::vector<std::uint16_t> endpoints_;
};

/// Whether `mode` can run here (nginx found; for kNginxLua also the Lua module), and if not,
/// why — e.g. "nginx-lua needs Debian's libnginx-mod-http-lua (not installed)".
bool GatewayAvailable(GatewayMode mode, std::string* why = nullptr);

}  // namespace rollsafe::drill
