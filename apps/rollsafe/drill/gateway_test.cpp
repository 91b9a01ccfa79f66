// Gateway against real processes: nginx in both modes in front of two `rollsafe serve`
// replicas, everything on 127.0.0.1, every wait bounded.
#include "drill/gateway.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "testing/temp_dir.hpp"

namespace rollsafe::drill {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kMaxWait = 20s;

std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// The number after `"key":` in a JSON line, or -1.
long JsonNumber(const std::string& line, const std::string& key) {
    const auto at = line.find("\"" + key + "\":");
    if (at == std::string::npos) return -1;
    return std::strtol(line.c_str() + at + key.size() + 3, nullptr, 10);
}

/// A `rollsafe serve` replica with its own SQLite file; stdout goes to a file whose first
/// line is the "listening" event.
class Backend {
  public:
    Backend(const std::string& dir, const std::string& name) {
        const std::string out = dir + "/" + name + ".out";
        const std::string err = dir + "/" + name + ".err";
        const std::vector<std::string> args = {
            ROLLSAFE_BINARY,  "serve",       "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--store",  "sqlite:" + dir + "/" + name + ".db",
            "--threads",      "1",           "--name",   name};
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0 || err_fd < 0) throw std::runtime_error("cannot open " + out);
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(out_fd, 1);
            ::dup2(err_fd, 2);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out_fd);
        ::close(err_fd);
        if (pid_ < 0) throw std::runtime_error("fork failed");
        const auto deadline = Clock::now() + kMaxWait;
        while (Clock::now() < deadline) {
            const std::string text = ReadFile(out);
            if (const auto nl = text.find('\n'); nl != std::string::npos) {
                const std::string line = text.substr(0, nl);
                api_port_ = static_cast<std::uint16_t>(JsonNumber(line, "api_port"));
                admin_port_ = static_cast<std::uint16_t>(JsonNumber(line, "admin_port"));
                if (line.find("\"listening\"") == std::string::npos || api_port_ == 0)
                    throw std::runtime_error(name + ": unexpected first line: " + line);
                return;
            }
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error(name + " exited: " + ReadFile(err));
            }
            std::this_thread::sleep_for(10ms);
        }
        throw std::runtime_error(name + " did not print its listening line: " + ReadFile(err));
    }
    ~Backend() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    std::uint16_t ApiPort() const { return api_port_; }

  private:
    pid_t pid_ = -1;
    std::uint16_t api_port_ = 0;
    std::uint16_t admin_port_ = 0;
};

struct Reply {
    int status = 0;
    std::string head;
    std::string body;
};

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to EOF.
Reply Http(std::uint16_t port, const std::string& method, const std::string& path,
           const std::vector<std::string>& headers = {}, const std::string& body = "") {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    timeval tv{static_cast<time_t>(kMaxWait.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        throw std::runtime_error("connect to " + std::to_string(port) + " failed");
    }
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& h : headers) req += h + "\r\n";
    if (!body.empty() || method == "POST")
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        ::close(fd);
        throw std::runtime_error("send failed");
    }
    std::string resp;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    Reply r;
    const auto end = resp.find("\r\n\r\n");
    if (resp.rfind("HTTP/1.", 0) != 0 || end == std::string::npos)
        throw std::runtime_error("bad response: '" + resp.substr(0, 200) + "'");
    r.status = std::atoi(resp.c_str() + resp.find(' ') + 1);
    r.head = resp.substr(0, end);
    r.body = resp.substr(end + 4);
    return r;
}

std::string UniqueKey() {
    static std::atomic<int> n{0};
    return "gw-test-" + std::to_string(::getpid()) + "-" +
           std::to_string(Clock::now().time_since_epoch().count()) + "-" + std::to_string(++n);
}

Reply PostResource(std::uint16_t port, const std::string& key) {
    return Http(port, "POST", "/resources",
                {"Content-Type: application/json", "Idempotency-Key: " + key},
                "{\"data\":{\"x\":1}}");
}

std::string ResourceId(const std::string& body) {
    const std::string tag = "\"id\":\"";
    const auto at = body.find(tag);
    if (at == std::string::npos) return {};
    return body.substr(at + tag.size(), body.find('"', at + tag.size()) - at - tag.size());
}

bool HasResource(const Backend& b, const std::string& id) {
    return Http(b.ApiPort(), "GET", "/resources/" + id).status == 200;
}

/// A port nothing listens on (bound, read, closed).
std::uint16_t DeadPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

struct ProcInfo {
    pid_t pid;
    pid_t ppid;
    pid_t pgrp;
    char state;
    std::string cmdline;
};

std::vector<ProcInfo> Processes() {
    std::vector<ProcInfo> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const std::string stat = ReadFile("/proc/" + name + "/stat");
        const auto rp = stat.rfind(')');
        if (rp == std::string::npos) continue;
        ProcInfo p{};
        p.pid = std::atoi(name.c_str());
        std::istringstream f(stat.substr(rp + 2));
        f >> p.state >> p.ppid >> p.pgrp;
        p.cmdline = ReadFile("/proc/" + name + "/cmdline");
        std::replace(p.cmdline.begin(), p.cmdline.end(), '\0', ' ');
        out.push_back(p);
    }
    return out;
}

/// Live (non-zombie) processes in process group `pgid` or naming `prefix` on their command line.
std::vector<ProcInfo> Leftovers(pid_t pgid, const std::string& prefix) {
    std::vector<ProcInfo> out;
    for (const auto& p : Processes())
        if (p.state != 'Z' && p.state != 'X' &&
            (p.pgrp == pgid || p.cmdline.find(prefix) != std::string::npos))
            out.push_back(p);
    return out;
}

std::vector<pid_t> Workers(pid_t master) {
    std::vector<pid_t> out;
    for (const auto& p : Processes())
        if (p.ppid == master && p.state != 'Z' &&
            p.cmdline.rfind("nginx: worker process", 0) == 0 &&
            p.cmdline.find("shutting down") == std::string::npos)
            out.push_back(p.pid);
    return out;
}

/// Local ports of ESTABLISHED TCP connections to 127.0.0.1:`remote_port` (nginx's side of
/// its upstream connections to a backend), from /proc/net/tcp.
std::set<unsigned> ConnectionsTo(std::uint16_t remote_port) {
    std::set<unsigned> out;
    char want[16];
    std::snprintf(want, sizeof want, "0100007F:%04X", remote_port);
    std::istringstream in(ReadFile("/proc/net/tcp"));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string slot, local, remote, st;
        f >> slot >> local >> remote >> st;
        if (st != "01" || remote != want) continue;
        out.insert(
            static_cast<unsigned>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16)));
    }
    return out;
}

/// Two replicas shared by all tests of the suite.
class GatewayTest : public ::testing::TestWithParam<GatewayMode> {
  protected:
    static void SetUpTestSuite() {
        dir_ = new testing::TempDir();
        b1_ = new Backend(dir_->Path(), "b1");
        b2_ = new Backend(dir_->Path(), "b2");
    }
    static void TearDownTestSuite() {
        delete b1_;
        delete b2_;
        delete dir_;
        b1_ = b2_ = nullptr;
        dir_ = nullptr;
    }
    void SetUp() override {
        std::string why;
        // Both modes are declared dependencies (scripts/install-deps.sh): missing is a failure.
        ASSERT_TRUE(GatewayAvailable(GetParam(), &why)) << why;
        prefix_ = std::make_unique<testing::TempDir>();
    }

    std::unique_ptr<Gateway> Start(bool retry, const std::vector<std::uint16_t>& endpoints) {
        GatewayOptions o;
        o.mode = GetParam();
        o.retry = retry;
        o.prefix = prefix_->Path();
        return std::make_unique<Gateway>(o, endpoints);
    }
    std::string AccessLog() const { return ReadFile(prefix_->Path() + "/access.log"); }

    static testing::TempDir* dir_;
    static Backend* b1_;
    static Backend* b2_;
    std::unique_ptr<testing::TempDir> prefix_;
};

testing::TempDir* GatewayTest::dir_ = nullptr;
Backend* GatewayTest::b1_ = nullptr;
Backend* GatewayTest::b2_ = nullptr;

TEST_P(GatewayTest, RoutesPostsAndFollowsEndpointChange) {
    auto gw = Start(true, {b1_->ApiPort()});
    EXPECT_NE(gw->Describe().find("nginx 1."), std::string::npos) << gw->Describe();
    EXPECT_EQ(gw->Url(), "http://127.0.0.1:" + std::to_string(gw->Port()));
    const pid_t master = gw->MasterPid();

    const std::string key = UniqueKey();
    const Reply r1 = PostResource(gw->Port(), key);
    ASSERT_EQ(r1.status, 201) << r1.head << "\n" << r1.body << "\n" << AccessLog();
    EXPECT_NE(r1.head.find("Location: /resources/"), std::string::npos) << r1.head;
    const std::string id1 = ResourceId(r1.body);
    ASSERT_FALSE(id1.empty()) << r1.body;
    EXPECT_TRUE(HasResource(*b1_, id1));
    EXPECT_FALSE(HasResource(*b2_, id1));
    // The Idempotency-Key reached the replica: a replay answers with the same resource.
    const Reply replay = PostResource(gw->Port(), key);
    EXPECT_EQ(ResourceId(replay.body), id1) << replay.status << " " << replay.body;

    gw->SetEndpoints({b2_->ApiPort()});
    for (int i = 0; i < 3; ++i) {
        const Reply r = PostResource(gw->Port(), UniqueKey());
        ASSERT_EQ(r.status, 201) << r.body << "\n" << AccessLog();
        const std::string id = ResourceId(r.body);
        EXPECT_TRUE(HasResource(*b2_, id)) << id;
        EXPECT_FALSE(HasResource(*b1_, id)) << id;
    }
    EXPECT_EQ(gw->MasterPid(), master);
    EXPECT_EQ(gw->Reloads(), GetParam() == GatewayMode::kNginx ? 1 : 0);
}

TEST_P(GatewayTest, RetryOnPassesRefusedEndpoint) {
    auto gw = Start(true, {DeadPort(), b1_->ApiPort()});
    for (int i = 0; i < 6; ++i) {
        const Reply r = PostResource(gw->Port(), UniqueKey());
        EXPECT_EQ(r.status, 201) << r.body << "\n" << AccessLog();
    }
    // Round-robin sent some of them to the dead port first: nginx logs both tries. The log
    // line is written after the response, so wait for it.
    const auto deadline = Clock::now() + 5s;
    while (AccessLog().find("ustatus=502, 201") == std::string::npos && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    EXPECT_NE(AccessLog().find("ustatus=502, 201"), std::string::npos) << AccessLog();
}

TEST_P(GatewayTest, RetryOffAnswers502ForRefusedEndpoint) {
    auto gw = Start(false, {DeadPort()});
    EXPECT_NE(gw->Describe().find("retry off"), std::string::npos) << gw->Describe();
    const Reply r = PostResource(gw->Port(), UniqueKey());
    EXPECT_EQ(r.status, 502) << r.body;
}

TEST_P(GatewayTest, EmptyEndpointListAnswers502) {
    auto gw = Start(true, {});
    EXPECT_EQ(PostResource(gw->Port(), UniqueKey()).status, 502);
    gw->SetEndpoints({b1_->ApiPort()});
    EXPECT_EQ(PostResource(gw->Port(), UniqueKey()).status, 201) << AccessLog();
    gw->SetEndpoints({});
    EXPECT_EQ(PostResource(gw->Port(), UniqueKey()).status, 502);
}

// kNginxLua keeps its worker and its upstream keep-alive connection to b1 across an endpoint
// change that keeps b1; kNginx reloads, so a new worker opens a new connection.
TEST_P(GatewayTest, KeepAlivePoolAcrossEndpointChange) {
    auto gw = Start(true, {b1_->ApiPort()});
    const std::set<unsigned> before_all = ConnectionsTo(b1_->ApiPort());
    ASSERT_EQ(PostResource(gw->Port(), UniqueKey()).status, 201);
    std::set<unsigned> mine;  // the connection this gateway opened to b1
    for (const unsigned p : ConnectionsTo(b1_->ApiPort()))
        if (!before_all.count(p)) mine.insert(p);
    ASSERT_EQ(mine.size(), 1u);
    const std::vector<pid_t> workers = Workers(gw->MasterPid());
    ASSERT_EQ(workers.size(), 1u);

    gw->SetEndpoints({b1_->ApiPort(), b2_->ApiPort()});
    for (int i = 0; i < 2; ++i) ASSERT_EQ(PostResource(gw->Port(), UniqueKey()).status, 201);
    const std::set<unsigned> after = ConnectionsTo(b1_->ApiPort());
    if (GetParam() == GatewayMode::kNginxLua) {
        EXPECT_EQ(Workers(gw->MasterPid()), workers);
        EXPECT_EQ(after.count(*mine.begin()), 1u) << "keep-alive connection to b1 not reused";
        EXPECT_EQ(gw->Reloads(), 0);
    } else {
        EXPECT_NE(Workers(gw->MasterPid()), workers);
        const bool opened_new = std::any_of(after.begin(), after.end(), [&](unsigned p) {
            return !before_all.count(p) && !mine.count(p);
        });
        EXPECT_TRUE(opened_new);
        EXPECT_EQ(gw->Reloads(), 1);
    }
}

TEST_P(GatewayTest, StopLeavesNoProcess) {
    auto gw = Start(true, {b1_->ApiPort()});
    const pid_t master = gw->MasterPid();
    ASSERT_GT(master, 0);
    ASSERT_EQ(::getpgid(master), master);
    ASSERT_EQ(Workers(master).size(), 1u);
    ASSERT_EQ(PostResource(gw->Port(), UniqueKey()).status, 201);
    const auto t0 = Clock::now();
    gw->Stop();
    EXPECT_LT(Clock::now() - t0, 6s);
    // Workers exit before the master, which reaps them; nothing may be left, not even a zombie
    // in the group (kill on a group of zombies still succeeds).
    EXPECT_TRUE(Leftovers(master, prefix_->Path()).empty());
    errno = 0;
    EXPECT_EQ(::kill(-master, 0), -1);
    EXPECT_EQ(errno, ESRCH);
    gw->Stop();  // idempotent
    EXPECT_THROW(gw->SetEndpoints({b1_->ApiPort()}), std::runtime_error);
}

TEST_P(GatewayTest, DestructorStopsAfterWorkerKilled) {
    pid_t master = -1;
    {
        auto gw = Start(true, {b1_->ApiPort()});
        master = gw->MasterPid();
        // A lost master (SIGKILL) leaves its worker behind; the group kill must get it.
        const auto workers = Workers(master);
        ASSERT_EQ(workers.size(), 1u);
        ::kill(master, SIGKILL);
    }
    const auto deadline = Clock::now() + 5s;
    while (!Leftovers(master, prefix_->Path()).empty() && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);  // the orphaned worker is reaped by init
    EXPECT_TRUE(Leftovers(master, prefix_->Path()).empty());
}

// The drill dies without a chance to stop nginx (SIGKILL): the master gets its parent-death
// signal and takes its worker along.
TEST_P(GatewayTest, OwnerDeathStopsNginx) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    GatewayOptions o;
    o.mode = GetParam();
    o.prefix = prefix_->Path();
    const std::uint16_t port = b1_->ApiPort();
    const pid_t owner = ::fork();
    ASSERT_GE(owner, 0);
    if (owner == 0) {
        ::close(fds[0]);
        try {
            Gateway gw(o, {port});
            const pid_t m = gw.MasterPid();
            if (::write(fds[1], &m, sizeof m) == sizeof m)
                for (int i = 0; i < 600; ++i) ::usleep(100'000);
        } catch (...) {
        }
        ::_exit(1);
    }
    ::close(fds[1]);
    pid_t master = -1;
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kMaxWait).count())) == 1) {
        ASSERT_EQ(::read(fds[0], &master, sizeof master), static_cast<ssize_t>(sizeof master));
    }
    ::close(fds[0]);
    ::kill(owner, SIGKILL);
    ::waitpid(owner, nullptr, 0);
    ASSERT_GT(master, 0) << "the owner process did not start a gateway";
    const auto deadline = Clock::now() + 5s;
    while (!Leftovers(master, prefix_->Path()).empty() && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    for (const auto& left : Leftovers(master, prefix_->Path()))
        ADD_FAILURE() << "left behind: " << left.pid << " " << left.cmdline;
}

// The proxying location runs deploy/nginx/'s snippets: written byte for byte into the prefix,
// included from nginx.conf, none of their directives repeated in the generated part; retry
// off replaces only the retry include. The upstream keep-alive matches rollsafe.conf's.
TEST_P(GatewayTest, ConfigIncludesShippedSnippets) {
    const std::string src = std::string(ROLLSAFE_SOURCE_DIR) + "/deploy/nginx/";
    const std::string proxy = ReadFile(src + "rollsafe-proxy.conf");
    const std::string retry = ReadFile(src + "rollsafe-retry.conf");
    const std::string standalone = ReadFile(src + "rollsafe.conf");
    ASSERT_NE(proxy.find("proxy_http_version 1.1;"), std::string::npos) << src;
    ASSERT_NE(retry.find("proxy_next_upstream error timeout http_502 http_503 non_idempotent;"),
              std::string::npos);
    for (const char* line : {"keepalive 32;", "keepalive_timeout 60s;",
                             "include rollsafe-proxy.conf;", "include rollsafe-retry.conf;"})
        ASSERT_NE(standalone.find(line), std::string::npos) << line;
    std::string p = fs::absolute(prefix_->Path()).lexically_normal().string();
    while (p.size() > 1 && p.back() == '/') p.pop_back();

    for (const bool on : {true, false}) {
        SCOPED_TRACE(on ? "retry on" : "retry off");
        auto gw = Start(on, {b1_->ApiPort()});
        EXPECT_EQ(ReadFile(p + "/rollsafe-proxy.conf"), proxy);
        EXPECT_EQ(ReadFile(p + "/rollsafe-retry.conf"), retry);
        const std::string conf = ReadFile(p + "/nginx.conf");
        const std::string::size_type npos = std::string::npos;
        EXPECT_NE(conf.find("include " + p + "/rollsafe-proxy.conf;"), npos) << conf;
        EXPECT_EQ(conf.find("include " + p + "/rollsafe-retry.conf;") != npos, on) << conf;
        EXPECT_EQ(conf.find("proxy_next_upstream off;") != npos, !on) << conf;
        for (const char* d : {"proxy_http_version", "proxy_set_header", "proxy_connect_timeout",
                              "proxy_read_timeout", "client_max_body_size 2m", "non_idempotent",
                              "proxy_next_upstream_tries 3"})
            EXPECT_EQ(conf.find(d), npos) << d << " repeated in nginx.conf:\n" << conf;
        EXPECT_NE(conf.find("keepalive 32;"), npos) << conf;
        EXPECT_NE(conf.find("keepalive_timeout 60s;"), npos) << conf;
        const Reply r = PostResource(gw->Port(), UniqueKey());
        EXPECT_EQ(r.status, 201) << r.body << "\n" << AccessLog();
    }
}

INSTANTIATE_TEST_SUITE_P(Gateway, GatewayTest,
                         ::testing::Values(GatewayMode::kNginx, GatewayMode::kNginxLua),
                         [](const ::testing::TestParamInfo<GatewayMode>& p) {
                             return p.param == GatewayMode::kNginx ? std::string("nginx")
                                                                   : std::string("nginx_lua");
                         });

TEST(GatewayErrors, BadBinaryPathNamesIt) {
    testing::TempDir dir;
    GatewayOptions o;
    o.mode = GatewayMode::kNginx;
    o.prefix = dir.Path();
    o.nginx_binary = dir.Path() + "/no-such-nginx";
    try {
        Gateway gw(o, {});
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(o.nginx_binary), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
    }
    // An executable that is not nginx fails `nginx -t`, and the message says so.
    o.nginx_binary = "/bin/false";
    try {
        Gateway gw(o, {});
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("-t' rejected"), std::string::npos) << e.what();
    }
}

TEST(GatewayErrors, MissingPrefixAndAvailability) {
    GatewayOptions o;
    o.mode = GatewayMode::kNginx;
    o.prefix = "/nonexistent/rollsafe-gw-prefix";
    EXPECT_THROW({ Gateway gw(o, {}); }, std::runtime_error);
    std::string why = "x";
    EXPECT_TRUE(GatewayAvailable(GatewayMode::kNginx, &why)) << why;
    EXPECT_STREQ(ToString(GatewayMode::kNginxLua), "nginx-lua");
}

}  // namespace
}  // namespace rollsafe::drill
