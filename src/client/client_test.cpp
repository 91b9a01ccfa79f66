#include "rollsafe/client/client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "testing/fake_clock.hpp"

namespace rollsafe::client {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr auto kMaxTestWait = 20s;

/// What the scripted server does with one request.
struct Reply {
    std::string bytes;   ///< written as is (empty: nothing)
    bool close = false;  ///< close the connection after writing
    bool hang = false;   ///< answer nothing and wait for the client to give up
    static Reply Http(std::string bytes) { return Reply{std::move(bytes), false, false}; }
    static Reply Drop() { return Reply{{}, true, false}; }
    static Reply Hang() { return Reply{{}, false, true}; }
};

std::string Response(int status, const std::string& body, const std::string& extra = {}) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
           extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

/// A one-thread HTTP/1.1 server on 127.0.0.1:0 that answers requests, in order and across
/// connections, from a script, and keeps every request it read. Every wait is bounded.
class ScriptedServer {
  public:
    explicit ScriptedServer(std::vector<Reply> script) : script_(script.begin(), script.end()) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len))
            throw std::runtime_error("cannot listen on 127.0.0.1:0");
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { Loop(); });
    }
    ~ScriptedServer() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }

    std::uint16_t Port() const { return port_; }
    std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/resources"; }
    int Connections() const { return connections_; }
    std::vector<std::string> Requests() const {
        std::lock_guard lock(mu_);
        return requests_;
    }

  private:
    /// Waits for `fd` to be readable; false on timeout or stop.
    bool WaitReadable(int fd, std::chrono::steady_clock::time_point deadline) {
        while (!stop_ && std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 20) > 0) return true;
        }
        return false;
    }

    void Loop() {
        while (!stop_) {
            if (!WaitReadable(fd_, std::chrono::steady_clock::now() + kMaxTestWait)) continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++connections_;
            Serve(c);
            ::close(c);
        }
    }

    /// Serves one connection until the client closes it or the script says so.
    void Serve(int c) {
        const auto deadline = std::chrono::steady_clock::now() + kMaxTestWait;
        std::string buf;
        for (;;) {
            std::size_t end;
            while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
                if (!Read(c, buf, deadline)) return;
            }
            std::size_t length = 0;
            std::smatch m;
            const std::string head = buf.substr(0, end);
            if (std::regex_search(head, m,
                                  std::regex("Content-Length: *([0-9]+)", std::regex::icase)))
                length = std::stoul(m[1]);
            while (buf.size() < end + 4 + length)
                if (!Read(c, buf, deadline)) return;
            Reply reply;
            {
                std::lock_guard lock(mu_);
                requests_.push_back(buf.substr(0, end + 4 + length));
                if (script_.empty()) return;
                reply = script_.front();
                script_.pop_front();
            }
            buf.erase(0, end + 4 + length);
            if (reply.hang) {
                while (Read(c, buf, deadline)) {
                }
                return;
            }
            if (!reply.bytes.empty() &&
                ::send(c, reply.bytes.data(), reply.bytes.size(), MSG_NOSIGNAL) < 0)
                return;
            if (reply.close) return;
        }
    }

    /// Appends what arrives; false on EOF, error, timeout or stop.
    bool Read(int c, std::string& buf, std::chrono::steady_clock::time_point deadline) {
        if (!WaitReadable(c, deadline)) return false;
        char chunk[4096];
        const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    mutable std::mutex mu_;
    std::deque<Reply> script_;
    std::vector<std::string> requests_;
    std::thread thread_;
};

/// The value of header `name` in a raw request, or "" when absent.
std::string HeaderOf(const std::string& request, const std::string& name) {
    std::smatch m;
    if (std::regex_search(request, m,
                          std::regex("\r\n" + name + ": *([^\r]*)\r\n", std::regex::icase)))
        return m[1];
    return {};
}

/// An environment with fixed randomness, a sleep that only records, and the attempts kept.
struct TestEnv {
    std::vector<milliseconds> sleeps;
    std::vector<AttemptRecord> attempts;
    Environment Get(std::uint64_t random_value = 7) {
        Environment env;
        env.random = [random_value] { return random_value; };
        env.sleep = [this](milliseconds d) { sleeps.push_back(d); };
        env.on_attempt = [this](const AttemptRecord& a) { attempts.push_back(a); };
        return env;
    }
};

PostRequest Request(const std::string& url, const std::string& key = "k-1") {
    PostRequest r;
    r.url = url;
    r.body = R"({"data":1})";
    r.idempotency_key = key;
    r.retry.max_retries = 5;
    r.retry.deadline = 15s;
    r.attempt_timeout = 5s;
    return r;
}

TEST(Client, RetriesWithTheSameKeyOnOneKeptAliveConnection) {
    ScriptedServer server({Reply::Http(Response(503, "{}", "Retry-After: 0\r\n")),
                           Reply::Http(Response(201, R"({"id":"a"})"))});
    TestEnv t;
    const PostResult r = Post(Request(server.Url(), "order-42"), t.Get());
    ASSERT_TRUE(r.Succeeded()) << r.why;
    ASSERT_TRUE(r.response);
    EXPECT_EQ(r.response->status, 201);
    EXPECT_EQ(r.response->body, R"({"id":"a"})");
    EXPECT_EQ(r.key, "order-42");
    ASSERT_EQ(r.attempts.size(), 2u);
    EXPECT_EQ(r.attempts[0].status, 503);
    EXPECT_FALSE(r.attempts[0].reused_connection);
    EXPECT_TRUE(r.attempts[1].reused_connection);
    EXPECT_EQ(t.attempts.size(), 2u);
    ASSERT_EQ(t.sleeps.size(), 1u);
    EXPECT_EQ(t.sleeps[0], 7ms);  // jitter 7 % 101; Retry-After 0 is no floor
    EXPECT_EQ(server.Connections(), 1);

    const auto requests = server.Requests();
    ASSERT_EQ(requests.size(), 2u);
    for (const auto& req : requests) {
        EXPECT_EQ(req.rfind("POST /resources HTTP/1.1\r\n", 0), 0u) << req;
        EXPECT_EQ(HeaderOf(req, "Idempotency-Key"), "order-42");
        EXPECT_EQ(HeaderOf(req, "Content-Type"), "application/json");
        EXPECT_EQ(HeaderOf(req, "Connection"), "keep-alive");
        EXPECT_EQ(HeaderOf(req, "Host"), "127.0.0.1:" + std::to_string(server.Port()));
        EXPECT_TRUE(req.ends_with("\r\n\r\n{\"data\":1}")) << req;
    }
}

TEST(Client, ReconnectsAfterConnectionClose) {
    ScriptedServer server(
        {Reply{Response(503, "{}", "Connection: close\r\nRetry-After: 1\r\n"), true, false},
         Reply::Http(Response(201, "{}"))});
    TestEnv t;
    const PostResult r = Post(Request(server.Url()), t.Get());
    ASSERT_TRUE(r.Succeeded()) << r.why;
    ASSERT_EQ(r.attempts.size(), 2u);
    EXPECT_FALSE(r.attempts[1].reused_connection);
    EXPECT_EQ(server.Connections(), 2);
    ASSERT_EQ(t.sleeps.size(), 1u);
    EXPECT_EQ(t.sleeps[0], 1000ms);  // the Retry-After floor
    EXPECT_TRUE(r.attempts[0].decision.from_retry_after);
}

TEST(Client, RetriesAConnectionLostBeforeTheAnswerAndRecordsTheReplay) {
    ScriptedServer server(
        {Reply::Drop(), Reply::Http(Response(201, "{}", "Idempotent-Replayed: true\r\n"))});
    TestEnv t;
    const PostResult r = Post(Request(server.Url()), t.Get());
    ASSERT_TRUE(r.Succeeded()) << r.why;
    ASSERT_EQ(r.attempts.size(), 2u);
    EXPECT_EQ(r.attempts[0].error, TransportError::kConnectionLost);
    EXPECT_TRUE(r.attempts[0].sent);
    EXPECT_FALSE(r.attempts[0].replayed);
    EXPECT_TRUE(r.attempts[1].replayed);
    const auto requests = server.Requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(HeaderOf(requests[0], "Idempotency-Key"), HeaderOf(requests[1], "Idempotency-Key"));
}

TEST(Client, RetriesAnAttemptThatTimesOut) {
    ScriptedServer server({Reply::Hang(), Reply::Http(Response(201, "{}"))});
    TestEnv t;
    PostRequest req = Request(server.Url());
    req.attempt_timeout = 200ms;
    const PostResult r = Post(req, t.Get());
    ASSERT_TRUE(r.Succeeded()) << r.why;
    ASSERT_EQ(r.attempts.size(), 2u);
    EXPECT_EQ(r.attempts[0].error, TransportError::kTimeout);
    EXPECT_EQ(server.Connections(), 2);
}

TEST(Client, DoesNotRetryAFinalAnswerOrAProtocolError) {
    {
        ScriptedServer server({Reply::Http(Response(400, R"({"status":400})"))});
        TestEnv t;
        const PostResult r = Post(Request(server.Url()), t.Get());
        EXPECT_EQ(r.reason, StopReason::kFinalResponse);
        EXPECT_EQ(r.attempts.size(), 1u);
        ASSERT_TRUE(r.response);
        EXPECT_EQ(r.response->body, R"({"status":400})");
        EXPECT_TRUE(t.sleeps.empty());
    }
    {
        ScriptedServer server({Reply{"SMTP ready\r\n\r\n", true, false}});
        TestEnv t;
        const PostResult r = Post(Request(server.Url()), t.Get());
        EXPECT_EQ(r.reason, StopReason::kNotRetryable);
        ASSERT_EQ(r.attempts.size(), 1u);
        EXPECT_EQ(r.attempts[0].error, TransportError::kProtocol);
        EXPECT_FALSE(r.response);
    }
}

TEST(Client, GivesUpAtTheDeadlineMeasuredOnTheInjectedClock) {
    // Nothing listens on the port of a closed server: every connect is refused at once.
    std::uint16_t port;
    {
        ScriptedServer closed({});
        port = closed.Port();
    }
    testing::FakeClock clock;
    TestEnv t;
    Environment env = t.Get(/*random_value=*/1'000'000);
    env.clock = &clock;
    env.sleep = [&](milliseconds d) {
        t.sleeps.push_back(d);
        clock.Advance(d);
    };
    PostRequest req = Request("http://127.0.0.1:" + std::to_string(port) + "/");
    req.retry.max_retries = 1000;
    req.retry.deadline = 10s;
    const PostResult r = Post(req, env);
    EXPECT_EQ(r.reason, StopReason::kDeadline) << r.why;
    EXPECT_FALSE(r.response);
    ASSERT_FALSE(r.attempts.empty());
    for (const auto& a : r.attempts) {
        EXPECT_EQ(a.error, TransportError::kConnect);
        EXPECT_FALSE(a.sent);
    }
    milliseconds slept{0};
    for (auto d : t.sleeps) slept += d;
    EXPECT_LT(slept, 10s);
    EXPECT_EQ(r.attempts.size(), t.sleeps.size() + 1);
}

TEST(Client, GeneratesAVersion4UuidKeyFromTheRandomSource) {
    ScriptedServer server({Reply::Http(Response(201, "{}"))});
    TestEnv t;
    const PostResult r = Post(Request(server.Url(), ""), t.Get());
    ASSERT_TRUE(r.Succeeded()) << r.why;
    EXPECT_TRUE(std::regex_match(
        r.key, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
        << r.key;
    EXPECT_EQ(HeaderOf(server.Requests().at(0), "Idempotency-Key"), r.key);
}

TEST(Client, ExtraHeadersReplaceDefaults) {
    ScriptedServer server({Reply::Http(Response(201, "{}"))});
    TestEnv t;
    PostRequest req = Request(server.Url());
    req.headers = {{"Content-Type", "application/merge-patch+json"}, {"X-Trace", "abc"}};
    ASSERT_TRUE(Post(req, t.Get()).Succeeded());
    const auto sent = server.Requests().at(0);
    EXPECT_EQ(HeaderOf(sent, "Content-Type"), "application/merge-patch+json");
    EXPECT_EQ(HeaderOf(sent, "X-Trace"), "abc");
}

TEST(Client, ParsesHttpUrlsWithIpLiteralsOrLocalhostOnly) {
    auto t = ParseUrl("http://127.0.0.1:8080/resources?x=1");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->address, "127.0.0.1");
    EXPECT_EQ(t->port, 8080);
    EXPECT_EQ(t->host, "127.0.0.1:8080");
    EXPECT_EQ(t->target, "/resources?x=1");

    t = ParseUrl("http://localhost");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->address, "127.0.0.1");
    EXPECT_EQ(t->port, 80);
    EXPECT_EQ(t->host, "localhost");
    EXPECT_EQ(t->target, "/");

    t = ParseUrl("http://[::1]:9/a");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->address, "::1");
    EXPECT_EQ(t->host, "[::1]:9");

    for (const char* bad :
         {"", "localhost:8080/x", "/resources", "https://127.0.0.1/", "ftp://127.0.0.1/",
          "http://example.com/", "http://user@127.0.0.1/", "http://127.0.0.1/#frag",
          "http://127.0.0.1:0/", "http://127.0.0.1:65536/", "http://127.0.0.1:123456/",
          "http:///path"}) {
        std::string why;
        EXPECT_FALSE(ParseUrl(bad, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
    }
}

TEST(Client, RefusesHeadersItMustSetItselfAndMalformedOnes) {
    EXPECT_FALSE(CheckExtraHeader("X-Trace", "abc"));
    EXPECT_FALSE(CheckExtraHeader("Authorization", "Bearer t"));
    EXPECT_FALSE(CheckExtraHeader("Host", "api.example"));
    for (const char* name : {"Idempotency-Key", "content-length", "Connection", "Transfer-Encoding",
                             "Expect", "Upgrade", "TE", "Trailer", "", "Bad Name", "X:Y"})
        EXPECT_TRUE(CheckExtraHeader(name, "v")) << name;
    EXPECT_TRUE(CheckExtraHeader("X-A", "a\r\nInjected: 1"));

    PostRequest req = Request("http://127.0.0.1:1/");
    req.headers = {{"Idempotency-Key", "other"}};
    EXPECT_THROW(Post(req), std::invalid_argument);
    EXPECT_THROW(Post(Request("https://127.0.0.1/")), std::invalid_argument);
    req = Request("http://127.0.0.1:1/");
    req.attempt_timeout = 0ms;
    EXPECT_THROW(Post(req), std::invalid_argument);
}

TEST(ClientGet, SendsOneGetWithConnectionCloseAndReturnsAnyStatus) {
    ScriptedServer server({Reply::Http(Response(200, R"({"id":"r-1","data":[1]})")),
                           Reply::Http(Response(404, R"({"status":404})"))});
    const std::string base = "http://127.0.0.1:" + std::to_string(server.Port());
    std::string error = "untouched";
    const auto ok = Get(base + "/resources/r-1?x=1", 5s, &error);
    ASSERT_TRUE(ok) << error;
    EXPECT_EQ(ok->status, 200);
    EXPECT_EQ(ok->body, R"({"id":"r-1","data":[1]})");
    EXPECT_EQ(ok->Header("content-type"), "application/json");
    EXPECT_EQ(error, "untouched");

    // A 404 is an answer, not an error: returned as is, with no second attempt.
    const auto missing = Get(base + "/resources/r-2", 5s);
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);

    const auto requests = server.Requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0].rfind("GET /resources/r-1?x=1 HTTP/1.1\r\n", 0), 0u) << requests[0];
    EXPECT_EQ(requests[1].rfind("GET /resources/r-2 HTTP/1.1\r\n", 0), 0u) << requests[1];
    for (const auto& req : requests) {
        EXPECT_EQ(HeaderOf(req, "Connection"), "close");
        EXPECT_EQ(HeaderOf(req, "Host"), "127.0.0.1:" + std::to_string(server.Port()));
        EXPECT_EQ(HeaderOf(req, "Idempotency-Key"), "");
        EXPECT_TRUE(req.ends_with("\r\n\r\n")) << "a GET has no body: " << req;
    }
    EXPECT_EQ(server.Connections(), 2);  // one connection per call
}

TEST(ClientGet, ReportsARefusedConnectAndATimeoutWithoutAResponse) {
    std::uint16_t port;
    {
        ScriptedServer closed({});
        port = closed.Port();
    }
    std::string error;
    EXPECT_FALSE(Get("http://127.0.0.1:" + std::to_string(port) + "/", 5s, &error));
    EXPECT_EQ(error.rfind("connect: ", 0), 0u) << error;

    ScriptedServer hang({Reply::Hang()});
    const auto start = std::chrono::steady_clock::now();
    error.clear();
    EXPECT_FALSE(Get(hang.Url(), 200ms, &error));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_EQ(error.rfind("receive: ", 0), 0u) << error;

    ScriptedServer garbage({Reply{"SMTP ready\r\n\r\n", true, false}});
    error.clear();
    EXPECT_FALSE(Get(garbage.Url(), 5s, &error));
    EXPECT_FALSE(error.empty());
}

TEST(ClientGet, RefusesWhatPostRefuses) {
    EXPECT_THROW(Get("https://127.0.0.1/", 1s), std::invalid_argument);
    EXPECT_THROW(Get("http://example.com/", 1s), std::invalid_argument);
    EXPECT_THROW(Get("http://127.0.0.1:1/", 0ms), std::invalid_argument);
}

}  // namespace
}  // namespace rollsafe::client
