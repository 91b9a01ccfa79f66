#include "drill/gateway.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "drill/deploy_nginx.hpp"  // generated from deploy/nginx/

namespace rollsafe::drill {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kStartDeadline = 10s;
constexpr auto kReloadDeadline = 10s;
constexpr auto kControlDeadline = 10s;
constexpr auto kTestDeadline = 10s;
constexpr auto kStopGrace = 5s;
constexpr auto kPoll = 5ms;
/// nginx has no port 0: a port picked by bind(0) and closed again can be taken before nginx
/// binds it, so a start that fails with EADDRINUSE is retried on fresh ports.
constexpr int kBindAttempts = 4;

constexpr const char* kNdkModule = "/usr/lib/nginx/modules/ndk_http_module.so";
constexpr const char* kLuaModule = "/usr/lib/nginx/modules/ngx_http_lua_module.so";
constexpr const char* kLuaDir = "/usr/share/lua/5.1";
constexpr const char* kRestyCore = "/usr/share/lua/5.1/resty/core.lua";

/// The deploy/nginx/ snippets, written into the prefix under their own names and included by
/// absolute path from the proxying location.
constexpr const char* kProxySnippet = "rollsafe-proxy.conf";
constexpr const char* kRetrySnippet = "rollsafe-retry.conf";

std::string ErrnoText(int e) { return std::strerror(e); }

bool IsExecutableFile(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

/// `configured` if it names an executable; else `nginx` from PATH, then /usr/sbin/nginx.
/// Empty when nothing is found; `why` then says what was looked at.
std::string FindNginx(const std::string& configured, std::string* why) {
    if (!configured.empty()) {
        if (IsExecutableFile(configured)) return configured;
        if (why != nullptr) *why = "nginx binary '" + configured + "' not found or not executable";
        return {};
    }
    if (const char* path = std::getenv("PATH"); path != nullptr) {
        std::string_view rest(path);
        while (true) {
            const auto colon = rest.find(':');
            const std::string dir(rest.substr(0, colon));
            if (!dir.empty() && IsExecutableFile(dir + "/nginx")) return dir + "/nginx";
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
    }
    if (IsExecutableFile("/usr/sbin/nginx")) return "/usr/sbin/nginx";
    if (why != nullptr)
        *why = "nginx not found in PATH nor at /usr/sbin/nginx (Debian: apt-get install nginx)";
    return {};
}

std::string ReadFileFrom(const std::string& path, std::uintmax_t offset = 0) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    in.seekg(static_cast<std::streamoff>(offset));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::uintmax_t FileSize(const std::string& path) {
    std::error_code ec;
    const auto n = fs::file_size(path, ec);
    return ec ? 0 : n;
}

/// The lines of nginx's error log worth showing in an exception: everything above notice
/// level, or the last lines when there is none; at most ~2000 characters.
std::string LogExcerpt(const std::string& log) {
    std::string picked;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);)
        if (line.find("[notice]") == std::string::npos &&
            line.find("[info]") == std::string::npos && !line.empty())
            picked += line + "\n";
    if (picked.empty()) picked = log;
    while (!picked.empty() && (picked.back() == '\n' || picked.back() == ' ')) picked.pop_back();
    if (picked.size() > 2000) picked = "..." + picked.substr(picked.size() - 2000);
    return picked.empty() ? "(error log empty)" : picked;
}

void WriteFileAtomic(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << content;
        out.flush();
        if (!out) throw std::runtime_error("gateway: cannot write " + tmp);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("gateway: cannot rename " + tmp + ": " + ErrnoText(errno));
}

class Fd {
  public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() { Reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int Get() const { return fd_; }
    void Reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_;
};

sockaddr_in Loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

std::uint16_t PickFreePort() {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.Get() < 0) throw std::runtime_error("gateway: socket(): " + ErrnoText(errno));
    sockaddr_in a = Loopback(0);
    if (::bind(s.Get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw std::runtime_error("gateway: bind(127.0.0.1:0): " + ErrnoText(errno));
    socklen_t len = sizeof a;
    if (::getsockname(s.Get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("gateway: getsockname(): " + ErrnoText(errno));
    return ntohs(a.sin_port);
}

/// A non-blocking connect to 127.0.0.1:port, waited for until `deadline`. -1 on failure.
int ConnectLoopback(std::uint16_t port, Clock::time_point deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    const sockaddr_in a = Loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return fd;
    if (errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

bool CanConnect(std::uint16_t port) {
    const int fd = ConnectLoopback(port, Clock::now() + 200ms);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

/// A minimal blocking HTTP/1.1 exchange with 127.0.0.1 (`Connection: close`): the status code
/// and the body. Throws on a socket error, a malformed answer or the deadline.
std::pair<int, std::string> HttpExchange(std::uint16_t port, const std::string& method,
                                         const std::string& path, const std::string& body,
                                         Clock::time_point deadline) {
    const std::string where = "http://127.0.0.1:" + std::to_string(port) + path;
    Fd fd(ConnectLoopback(port, deadline));
    if (fd.Get() < 0) throw std::runtime_error("gateway: cannot connect to " + where);
    const std::string req = method + " " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                            "Content-Type: text/plain\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    const auto wait = [&](short events) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd p{fd.Get(), events, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
            throw std::runtime_error("gateway: no answer from " + where + " before the deadline");
    };
    for (std::size_t sent = 0; sent < req.size();) {
        wait(POLLOUT);
        const ssize_t n = ::send(fd.Get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            throw std::runtime_error("gateway: send to " + where + ": " + ErrnoText(errno));
        if (n > 0) sent += static_cast<std::size_t>(n);
    }
    std::string resp;
    while (true) {
        wait(POLLIN);
        char buf[4096];
        const ssize_t n = ::recv(fd.Get(), buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            throw std::runtime_error("gateway: recv from " + where + ": " + ErrnoText(errno));
        }
        resp.append(buf, static_cast<std::size_t>(n));
    }
    const auto sp = resp.find(' ');
    const auto head_end = resp.find("\r\n\r\n");
    if (resp.rfind("HTTP/1.", 0) != 0 || sp == std::string::npos || head_end == std::string::npos)
        throw std::runtime_error("gateway: malformed answer from " + where + ": '" +
                                 resp.substr(0, 200) + "'");
    return {std::atoi(resp.c_str() + sp + 1), resp.substr(head_end + 4)};
}

/// What the child does between fork and exec: its own process group, SIGTERM when the parent
/// thread dies (not SIGKILL: nginx's master answers SIGTERM with a fast shutdown that takes
/// its workers along, while a killed master leaves them orphaned and serving), default signal
/// state (a disposition of SIG_IGN and the blocked mask survive
/// exec, and nginx's master would never see SIGHUP/SIGQUIT if the drill blocks them), stdin
/// and stdout from/to /dev/null, stderr to `err_fd`, no other inherited descriptor. Only
/// async-signal-safe calls: the drill has threads.
[[noreturn]] void ExecChild(const std::vector<char*>& argv, pid_t parent, int err_fd,
                            int report_fd) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2})
        ::signal(sig, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd < 0) ::_exit(127);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(err_fd, 2);
    // Everything but 0-2 and the exec report pipe (which is close-on-exec itself).
    const auto close_between = [](int lo, int hi) {
        if (lo > hi) return;
        if (::syscall(SYS_close_range, static_cast<unsigned>(lo), static_cast<unsigned>(hi), 0) !=
            0)
            for (int fd = lo; fd <= hi && fd < 65536; ++fd) ::close(fd);
    };
    close_between(3, report_fd - 1);
    close_between(report_fd + 1, 1 << 30);
    ::execv(argv[0], argv.data());
    const int e = errno;
    [[maybe_unused]] const ssize_t n = ::write(report_fd, &e, sizeof e);
    ::_exit(127);
}

/// Forks and execs `args` (args[0] a path) with stderr to `err_fd`. Throws when fork or
/// exec fails, naming the program.
pid_t Spawn(const std::vector<std::string>& args, int err_fd) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0)
        throw std::runtime_error("gateway: pipe2(): " + ErrnoText(errno));
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        ::close(report[0]);
        ::close(report[1]);
        throw std::runtime_error("gateway: fork(): " + ErrnoText(e));
    }
    if (pid == 0) ExecChild(argv, parent, err_fd, report[1]);
    // Also from the parent, so the group exists before anyone signals it.
    ::setpgid(pid, pid);
    ::close(report[1]);
    int e = 0;
    ssize_t n;
    do n = ::read(report[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    ::close(report[0]);
    if (n == static_cast<ssize_t>(sizeof e)) {
        int st = 0;
        ::waitpid(pid, &st, 0);
        throw std::runtime_error("gateway: cannot execute " + args[0] + ": " + ErrnoText(e));
    }
    return pid;
}

/// Whether `pid` (our child) has exited, without reaping it: while it is an unreaped zombie
/// neither its pid nor its process group id can be reused, so the group may still be killed.
bool HasExited(pid_t pid) {
    siginfo_t info{};
    info.si_pid = 0;
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return errno == ECHILD;
    return info.si_pid == pid;
}

std::string DescribeStatus(int st) {
    if (WIFEXITED(st)) return "exit code " + std::to_string(WEXITSTATUS(st));
    if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
    return "status " + std::to_string(st);
}

struct RunResult {
    int status = 0;
    std::string output;  ///< stdout and stderr together
};

/// Runs `args` to completion with stdout+stderr captured; killed at `deadline` (throws).
RunResult Run(const std::vector<std::string>& args, Clock::time_point deadline) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0)
        throw std::runtime_error("gateway: pipe2(): " + ErrnoText(errno));
    Fd rd(out[0]);
    pid_t pid;
    try {
        pid = Spawn(args, out[1]);
    } catch (...) {
        ::close(out[1]);
        throw;
    }
    ::close(out[1]);
    // stdout goes to /dev/null in Spawn; nginx -t and -v write to stderr only.
    RunResult r;
    bool timed_out = false;
    while (true) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{rd.Get(), POLLIN, 0};
        const int pr = ::poll(&p, 1, static_cast<int>(left.count()));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        char buf[4096];
        const ssize_t n = ::read(rd.Get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r.output.append(buf, static_cast<std::size_t>(n));
    }
    if (timed_out) ::kill(-pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) throw std::runtime_error("gateway: " + args[0] + " did not finish in time");
    r.status = st;
    return r;
}

/// Worker processes of `master` that accept requests: not zombies, and not in graceful
/// shutdown (nginx retitles those "nginx: worker process is shutting down" as it closes its
/// listening sockets).
std::vector<pid_t> ActiveWorkers(pid_t master) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::string stat = ReadFileFrom("/proc/" + name + "/stat");
        const auto rp = stat.rfind(')');
        if (rp == std::string::npos || rp + 4 > stat.size()) continue;
        std::istringstream fields(stat.substr(rp + 2));
        char state = 0;
        pid_t ppid = 0;
        fields >> state >> ppid;
        if (ppid != master || state == 'Z' || state == 'X') continue;
        const std::string cmd = ReadFileFrom("/proc/" + name + "/cmdline");
        if (cmd.rfind("nginx: worker process", 0) != 0) continue;
        if (cmd.find("shutting down") != std::string::npos) continue;
        out.push_back(static_cast<pid_t>(std::stol(name)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

void CheckEndpoints(const std::vector<std::uint16_t>& endpoints) {
    if (std::find(endpoints.begin(), endpoints.end(), 0) != endpoints.end())
        throw std::runtime_error("gateway: endpoint port 0 in the endpoint list");
}

std::string EndpointList(const std::vector<std::uint16_t>& endpoints) {
    std::string s;
    for (const auto p : endpoints) {
        if (!s.empty()) s += ",";
        s += "127.0.0.1:" + std::to_string(p);
    }
    return s;
}

/// The balancer: endpoints come from the shared dict (parsed once per version and worker),
/// picked round-robin; a retry skips the peers this request already tried while others
/// remain. An empty list sends the request to 127.0.0.1:1, whose refused connection makes
/// nginx answer 502 like an upstream without live servers (ngx.exit(502) here gives 500).
constexpr const char* kBalancerLua = R"LUA(
            local balancer = require "ngx.balancer"
            local gw = package.loaded.rollsafe_gw
            local dict = ngx.shared.rollsafe_eps
            -- version before list: a list is never cached under a newer version than its own
            local ver = dict:get("ver") or 0
            if ver ~= gw.ver then
                local list = {}
                for host, port in string.gmatch(dict:get("eps") or "", "([^,:]+):(%d+)") do
                    list[#list + 1] = { host = host, port = tonumber(port), key = host .. ":" .. port }
                end
                gw.list = list
                gw.ver = ver
            end
            local list = gw.list
            local n = #list
            if n == 0 then
                local ok, err = balancer.set_current_peer("127.0.0.1", 1)
                if not ok then ngx.log(ngx.ERR, "rollsafe balancer: ", err) end
                return
            end
            local ctx = ngx.ctx
            local tried = ctx.rollsafe_tried
            if not tried then
                tried = {}
                ctx.rollsafe_tried = tried
                if gw.retry and n > 1 then
                    -- capped by proxy_next_upstream_tries as well
                    local ok, err = balancer.set_more_tries(math.min(n - 1, 2))
                    if not ok then ngx.log(ngx.ERR, "rollsafe balancer: ", err) end
                end
            end
            local pick
            for _ = 1, n do
                gw.rr = gw.rr % n + 1
                if not tried[list[gw.rr].key] then
                    pick = list[gw.rr]
                    break
                end
            end
            if not pick then
                gw.rr = gw.rr % n + 1
                pick = list[gw.rr]
            end
            tried[pick.key] = true
            local ok, err = balancer.set_current_peer(pick.host, pick.port)
            if not ok then
                ngx.log(ngx.ERR, "rollsafe balancer: set_current_peer ", pick.key, ": ", err)
                return ngx.exit(500)
            end
)LUA";

/// POST: replaces the list ("127.0.0.1:P,127.0.0.1:Q", may be empty); GET: shows it.
constexpr const char* kControlLua = R"LUA(
                local dict = ngx.shared.rollsafe_eps
                local method = ngx.req.get_method()
                if method == "GET" then
                    ngx.say(dict:get("eps") or "")
                    return
                end
                if method ~= "POST" then
                    return ngx.exit(405)
                end
                ngx.req.read_body()
                local body = ngx.req.get_body_data() or ""
                for item in string.gmatch(body, "[^,]+") do
                    if not string.match(item, "^127%.0%.0%.1:%d+$") then
                        ngx.status = 400
                        ngx.say("bad endpoint '", item, "'")
                        return
                    end
                end
                local ok, err = dict:set("eps", body)
                if not ok then
                    ngx.status = 500
                    ngx.say("shared dict: ", err)
                    return
                end
                ngx.say("ok ", dict:incr("ver", 1, 0))
)LUA";

std::string RenderConfig(const GatewayOptions& o, std::uint16_t port, std::uint16_t control_port,
                         const std::vector<std::uint16_t>& endpoints) {
    const std::string& p = o.prefix;
    const bool lua = o.mode == GatewayMode::kNginxLua;
    std::string c;
    if (lua) {
        c += "load_module " + std::string(kNdkModule) + ";\n";
        c += "load_module " + std::string(kLuaModule) + ";\n";
    }
    c += "daemon off;\nmaster_process on;\nworker_processes 1;\n";
    c += "pid " + p + "/nginx.pid;\n";
    c += "error_log " + p + "/error.log notice;\n";
    c += "events { worker_connections 4096; }\n";
    c += "http {\n";
    c += "    log_format rollsafe '$remote_addr [$time_local] \"$request\" $status "
         "$body_bytes_sent rt=$request_time upstream=$upstream_addr "
         "ustatus=$upstream_status urt=$upstream_response_time key=$http_idempotency_key';\n";
    c += "    access_log " + p + "/access.log rollsafe;\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
        c += "    " + std::string(t) + "_temp_path " + p + "/tmp/" + t + ";\n";
    // Bodies and responses stay in memory (rollsafe-proxy.conf: client_body_buffer_size as
    // large as client_max_body_size, proxy_max_temp_file_size 0), which the drill relies on:
    // the workers (user nobody when started as root) may not be allowed into the prefix.
    if (lua) {
        c += "    lua_package_path \"" + std::string(kLuaDir) + "/?.lua;;\";\n";
        c += "    lua_shared_dict rollsafe_eps 1m;\n";
        c += std::string("    init_by_lua_block {\n") +
             "        package.loaded.rollsafe_gw = { rr = 0, ver = -1, list = {}, retry = " +
             (o.retry ? "true" : "false") + " }\n    }\n";
    }
    c += "    upstream rollsafe_backends {\n";
    if (lua) {
        c += "        server 0.0.0.1;  # placeholder: the balancer picks the peer\n";
        c += "        balancer_by_lua_block {" + std::string(kBalancerLua) + "        }\n";
    } else if (endpoints.empty()) {
        c += "        server 127.0.0.1:1 down;  # no endpoints: 502 without a connect\n";
    } else {
        // max_fails=0: no passive health marking, like ingress-nginx's Lua balancer; an
        // endpoint that refuses is retried past per request instead of being benched 10 s.
        for (const auto ep : endpoints)
            c += "        server 127.0.0.1:" + std::to_string(ep) + " max_fails=0;\n";
    }
    // After the balancer: the keepalive module wraps whatever peer getter precedes it.
    c += "        keepalive 32;\n        keepalive_timeout 60s;\n    }\n";
    c += "    server {\n        listen 127.0.0.1:" + std::to_string(port) + ";\n";
    // The proxy settings are deploy/nginx/'s (as in its rollsafe.conf), not repeated here.
    c += "        location / {\n";
    c += "            include " + p + "/" + kProxySnippet + ";\n";
    if (o.retry)
        c += "            include " + p + "/" + kRetrySnippet + ";\n";
    else
        c += "            proxy_next_upstream off;  # --gateway-retry off\n";
    c += "            proxy_pass http://rollsafe_backends;\n";
    c += "        }\n    }\n";
    if (lua) {
        c += "    server {\n        listen 127.0.0.1:" + std::to_string(control_port) + ";\n";
        c += "        access_log off;\n";
        c += "        client_max_body_size 64k;\n        client_body_buffer_size 64k;\n";
        c += "        location = /endpoints {\n            content_by_lua_block {" +
             std::string(kControlLua) + "            }\n        }\n";
        c += "        location / { return 404; }\n    }\n";
    }
    c += "}\n";
    return c;
}

/// `nginx -v` once per binary.
std::string NginxVersion(const std::string& binary) {
    static std::mutex mu;
    static std::map<std::string, std::string> cache;
    std::lock_guard lock(mu);
    if (auto it = cache.find(binary); it != cache.end()) return it->second;
    std::string v = "?";
    try {
        const RunResult r = Run({binary, "-v"}, Clock::now() + 5s);
        if (const auto at = r.output.find("nginx/"); at != std::string::npos) {
            v = r.output.substr(at + 6);
            v = v.substr(0, v.find_first_of(" \r\n"));
        }
    } catch (const std::exception&) {
    }
    cache.emplace(binary, v);
    return v;
}

}  // namespace

const char* ToString(GatewayMode m) {
    switch (m) {
        case GatewayMode::kNginx:
            return "nginx";
        case GatewayMode::kNginxLua:
            return "nginx-lua";
    }
    return "?";
}

bool GatewayAvailable(GatewayMode mode, std::string* why) {
    std::string reason;
    if (FindNginx("", &reason).empty()) {
        if (why != nullptr) *why = std::string(ToString(mode)) + ": " + reason;
        return false;
    }
    if (mode == GatewayMode::kNginxLua) {
        for (const char* f : {kNdkModule, kLuaModule, kRestyCore})
            if (::access(f, R_OK) != 0) {
                if (why != nullptr)
                    *why = std::string("nginx-lua needs Debian's libnginx-mod-http-lua (") + f +
                           " missing)";
                return false;
            }
    }
    if (why != nullptr) why->clear();
    return true;
}

Gateway::Gateway(GatewayOptions options, const std::vector<std::uint16_t>& endpoints)
    : options_(std::move(options)) {
    std::string why;
    const std::string binary = FindNginx(options_.nginx_binary, &why);
    if (binary.empty()) throw std::runtime_error("gateway: " + why);
    options_.nginx_binary = binary;  // resolved once; Describe and reloads use the same one
    if (options_.mode == GatewayMode::kNginxLua && !GatewayAvailable(options_.mode, &why))
        throw std::runtime_error("gateway: " + why);
    if (options_.prefix.empty()) throw std::runtime_error("gateway: options.prefix is empty");
    std::error_code ec;
    if (!fs::is_directory(options_.prefix, ec))
        throw std::runtime_error("gateway: prefix '" + options_.prefix + "' is not a directory");
    options_.prefix = fs::absolute(options_.prefix).lexically_normal().string();
    while (options_.prefix.size() > 1 && options_.prefix.back() == '/') options_.prefix.pop_back();
    // The prefix goes into nginx.conf unquoted.
    if (options_.prefix.find_first_of(" \t\n;{}\"'$#\\") != std::string::npos)
        throw std::runtime_error("gateway: prefix '" + options_.prefix +
                                 "' has a character nginx.conf cannot take unquoted");
    CheckEndpoints(endpoints);
    fs::create_directories(options_.prefix + "/logs", ec);
    fs::create_directories(options_.prefix + "/tmp", ec);
    if (ec)
        throw std::runtime_error("gateway: cannot create directories in '" + options_.prefix +
                                 "': " + ec.message());
    // Both, whatever `retry` says: the prefix then shows the whole shipped config.
    WriteFileAtomic(options_.prefix + "/" + kProxySnippet, deploy_nginx::kProxyConf);
    WriteFileAtomic(options_.prefix + "/" + kRetrySnippet, deploy_nginx::kRetryConf);

    const std::string& p = options_.prefix;
    const std::string conf = p + "/nginx.conf";
    const std::string log = p + "/error.log";
    const std::string stderr_path = p + "/nginx.stderr";
    const std::vector<std::string> base = {binary, "-p", p + "/", "-c", conf, "-e", log};
    const bool lua = options_.mode == GatewayMode::kNginxLua;

    for (int attempt = 1;; ++attempt) {
        port_ = PickFreePort();
        control_port_ = 0;
        while (lua && (control_port_ == 0 || control_port_ == port_))
            control_port_ = PickFreePort();
        WriteFileAtomic(conf, RenderConfig(options_, port_, control_port_, endpoints));
        if (attempt == 1) {
            std::vector<std::string> test = base;
            test.push_back("-t");
            const RunResult r = Run(test, Clock::now() + kTestDeadline);
            if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
                throw std::runtime_error("gateway: '" + binary + " -t' rejected " + conf + " (" +
                                         DescribeStatus(r.status) + "): " + r.output);
        }
        const auto log_offset = FileSize(log);
        Fd err_fd(::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        if (err_fd.Get() < 0)
            throw std::runtime_error("gateway: cannot open " + stderr_path + ": " +
                                     ErrnoText(errno));
        pid_ = Spawn(base, err_fd.Get());
        err_fd.Reset();

        // Ready: the port accepts and a worker runs (the master installs its signal handlers
        // only after binding, so an early SIGHUP/SIGQUIT would kill it outright).
        const auto deadline = Clock::now() + kStartDeadline;
        bool ready = false;
        while (Clock::now() < deadline) {
            if (HasExited(pid_)) break;
            if (CanConnect(port_) && (!lua || CanConnect(control_port_)) &&
                !ActiveWorkers(pid_).empty()) {
                ready = true;
                break;
            }
            std::this_thread::sleep_for(kPoll);
        }
        if (ready) break;
        const bool exited = HasExited(pid_);
        Stop();
        const std::string text = ReadFileFrom(log, log_offset) + ReadFileFrom(stderr_path);
        if (exited && text.find("Address already in use") != std::string::npos &&
            attempt < kBindAttempts)
            continue;
        throw std::runtime_error(
            std::string("gateway: nginx ") +
            (exited ? "exited during start" : "did not accept connections within 10 s") +
            " (port " + std::to_string(port_) + "); " + log + ": " + LogExcerpt(text));
    }
    try {
        if (lua) SetEndpoints(endpoints);
    } catch (...) {
        Stop();
        throw;
    }
    endpoints_ = endpoints;
}

Gateway::~Gateway() {
    try {
        Stop();
    } catch (...) {
    }
}

void Gateway::SetEndpoints(const std::vector<std::uint16_t>& endpoints) {
    if (pid_ <= 0) throw std::runtime_error("gateway: SetEndpoints on a stopped gateway");
    CheckEndpoints(endpoints);
    if (HasExited(pid_))
        throw std::runtime_error(
            "gateway: nginx (pid " + std::to_string(pid_) + ") has exited; " + options_.prefix +
            "/error.log: " + LogExcerpt(ReadFileFrom(options_.prefix + "/error.log")));
    if (options_.mode == GatewayMode::kNginxLua) {
        const auto [status, body] =
            HttpExchange(control_port_, "POST", "/endpoints", EndpointList(endpoints),
                         Clock::now() + kControlDeadline);
        if (status != 200)
            throw std::runtime_error("gateway: control port answered " + std::to_string(status) +
                                     " to the endpoint list: " + body);
        endpoints_ = endpoints;
        return;
    }

    const std::string& p = options_.prefix;
    const std::string conf = p + "/nginx.conf";
    const std::string candidate = p + "/nginx.conf.next";
    const std::string log = p + "/error.log";
    WriteFileAtomic(candidate, RenderConfig(options_, port_, control_port_, endpoints));
    const RunResult r =
        Run({options_.nginx_binary, "-p", p + "/", "-c", candidate, "-e", log, "-t"},
            Clock::now() + kTestDeadline);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        throw std::runtime_error("gateway: '" + options_.nginx_binary + " -t' rejected " +
                                 candidate + " (" + DescribeStatus(r.status) + "): " + r.output);
    if (::rename(candidate.c_str(), conf.c_str()) != 0)
        throw std::runtime_error("gateway: cannot rename " + candidate + ": " + ErrnoText(errno));

    const std::vector<pid_t> old = ActiveWorkers(pid_);
    const auto log_offset = FileSize(log);
    if (::kill(pid_, SIGHUP) != 0)
        throw std::runtime_error("gateway: SIGHUP to nginx: " + ErrnoText(errno));
    // Done when no worker of the old generation accepts any more and a new one runs. A failed
    // reload leaves the old workers serving and logs [emerg].
    const auto deadline = Clock::now() + kReloadDeadline;
    while (true) {
        const std::vector<pid_t> now = ActiveWorkers(pid_);
        const bool replaced = !now.empty() && std::none_of(now.begin(), now.end(), [&](pid_t w) {
            return std::find(old.begin(), old.end(), w) != old.end();
        });
        if (replaced) break;
        const std::string fresh = ReadFileFrom(log, log_offset);
        if (fresh.find("[emerg]") != std::string::npos)
            throw std::runtime_error("gateway: nginx reload failed: " + LogExcerpt(fresh));
        if (HasExited(pid_))
            throw std::runtime_error("gateway: nginx exited during reload: " + LogExcerpt(fresh));
        if (Clock::now() >= deadline)
            throw std::runtime_error("gateway: nginx reload did not take effect within 10 s: " +
                                     LogExcerpt(fresh));
        std::this_thread::sleep_for(kPoll);
    }
    ++reloads_;
    endpoints_ = endpoints;
}

std::string Gateway::Url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string Gateway::Describe() const {
    std::string s = "nginx " + NginxVersion(options_.nginx_binary);
    s += options_.mode == GatewayMode::kNginxLua ? ", lua balancer (no reload)"
                                                 : ", upstream block (reload per change)";
    s += options_.retry ? ", gateway retry on" : ", gateway retry off";
    return s;
}

void Gateway::Stop() {
    if (pid_ <= 0) return;
    const pid_t pid = pid_;
    pid_ = -1;
    // Graceful: workers finish their requests and close idle connections, then the master
    // reaps them and exits.
    ::kill(pid, SIGQUIT);
    const auto deadline = Clock::now() + kStopGrace;
    while (!HasExited(pid) && Clock::now() < deadline) std::this_thread::sleep_for(kPoll);
    // Whatever is left of the group (workers whose master was killed, or all of it after the
    // grace period); the master is not reaped yet, so the group id is still ours.
    ::kill(-pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
}

}  // namespace rollsafe::drill
