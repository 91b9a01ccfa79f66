// Untrusted input: every malformed, oversized, slow or misdirected request gets the status the
// contract names, as application/problem+json, and the server keeps serving others.

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// Sends `raw` on a fresh connection and reads one response. The connection is returned so
/// the test can check what happens to it afterwards.
HttpResponse SendRawRequest(std::uint16_t port, std::string_view raw,
                            HttpConnection* keep = nullptr) {
    HttpConnection c = HttpConnection::Connect(port);
    if (!c.IsOpen()) {
        HttpResponse r;
        r.error = c.ConnectError();
        return r;
    }
    HttpResponse r;
    if (const int err = c.SendRaw(raw); err != 0) {
        r = c.ReadResponse(DeadlineIn(1s));
        if (!r.complete) r.error = err;
    } else {
        r = c.ReadResponse();
    }
    if (keep != nullptr) *keep = std::move(c);
    return r;
}

/// The response told the client the connection ends, and the server then closed it in order.
void ExpectClosedAfter(const HttpResponse& r, HttpConnection& conn) {
    EXPECT_TRUE(r.HasToken("Connection", "close")) << r.Describe();
    const PeerClose closed = conn.WaitForPeerClose(DeadlineIn(2s));
    EXPECT_EQ(closed, PeerClose::kClosed) << "connection after the error: " << ToString(closed);
}

// Every POST carries its own Idempotency-Key, so each case reaches the check it is about.
std::string PostHead() {
    static int n = 0;
    return "POST /resources HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Idempotency-Key: bad-input-" +
           std::to_string(++n) + "\r\n";
}

TEST(BadInput, MalformedRequestLineGets400AndConnectionClosed) {
    ServeProcess server;
    HttpConnection conn;
    const HttpResponse r = SendRawRequest(server.ApiPort(), "THIS IS NOT HTTP\r\n\r\n", &conn);
    EXPECT_TRUE(IsProblem(r, 400));
    ExpectClosedAfter(r, conn);
}

TEST(BadInput, MalformedHeaderLineGets400AndConnectionClosed) {
    ServeProcess server;
    HttpConnection conn;
    const HttpResponse r = SendRawRequest(
        server.ApiPort(), "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon in this line\r\n\r\n",
        &conn);
    EXPECT_TRUE(IsProblem(r, 400));
    ExpectClosedAfter(r, conn);
}

TEST(BadInput, InvalidJsonGets400ProblemWhoseDetailNamesTheProblem) {
    ServeProcess server;
    // Two different defects must be told apart in "detail" (a generic "bad request" would not
    // name the problem).
    const HttpResponse incomplete =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), R"({"data":)");
    const HttpResponse syntax =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), R"({"data" 1})");
    ASSERT_TRUE(IsProblem(incomplete, 400));
    ASSERT_TRUE(IsProblem(syntax, 400));
    const auto a = ProblemBody(incomplete);
    const auto b = ProblemBody(syntax);
    const std::string detail_a = *a->GetString("detail");
    const std::string detail_b = *b->GetString("detail");
    EXPECT_FALSE(detail_a.empty());
    EXPECT_NE(detail_a, *a->GetString("title")) << "detail should say more than the title";
    EXPECT_NE(detail_a, detail_b) << "incomplete JSON and a syntax error got the same detail: "
                                  << detail_a;
}

TEST(BadInput, BodyOverLimitGets413) {
    ServeProcess server({"--body-limit", "1024"});
    const std::string padding(2048, 'x');
    const std::string big = ResourceBody("\"" + padding + "\"");
    const HttpResponse r = Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), big);
    EXPECT_TRUE(IsProblem(r, 413));

    // The limit is the flag's: a body just under it is accepted.
    const std::string fits = ResourceBody("\"" + std::string(900, 'y') + "\"");
    ASSERT_LT(fits.size(), 1024u);
    const HttpResponse ok = Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), fits);
    EXPECT_EQ(ok.status, 201) << ok.Describe();
}

TEST(BadInput, PostWithoutContentLengthGets411) {
    ServeProcess server;
    const HttpResponse r = SendRawRequest(server.ApiPort(), PostHead() + "\r\n");
    EXPECT_TRUE(IsProblem(r, 411));
}

// A chunked body is a length too (RFC 9112 6.3): only a POST with neither framing gets 411.
TEST(BadInput, ChunkedPostIsAcceptedAsFramed) {
    ServeProcess server;
    const HttpResponse r = SendRawRequest(
        server.ApiPort(),
        PostHead() + "Transfer-Encoding: chunked\r\n\r\na\r\n{\"data\":1}\r\n0\r\n\r\n");
    EXPECT_EQ(r.status, 201);
}

TEST(BadInput, NonJsonContentTypeGets415) {
    ServeProcess server;
    const HttpResponse r = Fetch(server.ApiPort(), "POST", "/resources",
                                 {{"Content-Type", "text/plain"}}, ResourceBody("1"));
    EXPECT_TRUE(IsProblem(r, 415));
}

TEST(BadInput, UnknownPathGets404) {
    ServeProcess server;
    const HttpResponse r = Fetch(server.ApiPort(), "GET", "/no-such-route");
    EXPECT_TRUE(IsProblem(r, 404));
}

TEST(BadInput, UnknownResourceIdGets404) {
    ServeProcess server;
    const HttpResponse r = Fetch(server.ApiPort(), "GET", "/resources/no-such-id");
    EXPECT_TRUE(IsProblem(r, 404));
}

TEST(BadInput, WrongMethodGets405WithAllow) {
    ServeProcess server;
    const HttpResponse r = Fetch(server.ApiPort(), "DELETE", "/resources");
    EXPECT_TRUE(IsProblem(r, 405));
    EXPECT_TRUE(r.HasToken("Allow", "POST")) << "Allow must list POST for /resources\n"
                                             << r.Describe();

    const HttpResponse livez = Fetch(server.ApiPort(), "PUT", "/livez", {}, "x");
    EXPECT_TRUE(IsProblem(livez, 405));
    EXPECT_TRUE(livez.HasToken("Allow", "GET")) << livez.Describe();
}

TEST(BadInput, WorkMsOutOfRangeOrWrongTypeGets400) {
    ServeProcess server;  // default --max-work-ms 600000
    for (const char* work_ms : {"-1", "600001", "\"5\"", "1.5", "null", "true"}) {
        const std::string body = std::string(R"({"data":1,"work_ms":)") + work_ms + "}";
        const HttpResponse r = Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), body);
        EXPECT_TRUE(IsProblem(r, 400)) << "work_ms " << work_ms;
    }
    // The bounds themselves are fine (0 here; the upper one in the next test).
    const HttpResponse ok =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), ResourceBody("1", 0));
    EXPECT_EQ(ok.status, 201) << ok.Describe();
}

TEST(BadInput, WorkMsAboveMaxWorkMsFlagGets400) {
    ServeProcess server({"--max-work-ms", "300"});
    const HttpResponse over =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), ResourceBody("1", 301));
    EXPECT_TRUE(IsProblem(over, 400));
    const HttpResponse at_max =
        Fetch(server.ApiPort(), "POST", "/resources", JsonHeaders(), ResourceBody("1", 300));
    EXPECT_EQ(at_max.status, 201) << at_max.Describe();
}

TEST(BadInput, HeadersNotCompleteWithinHeaderTimeoutGet408AndClose) {
    ServeProcess server({"--header-timeout", "500ms"});
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    const auto connected = SteadyClock::now();
    ASSERT_EQ(conn.SendRaw("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"), 0);  // no blank line

    const HttpResponse r = conn.ReadResponse(connected + 5s);
    EXPECT_TRUE(IsProblem(r, 408));
    if (r.complete) {
        const double at = MsBetween(connected, r.received_at);
        EXPECT_GE(at, 500.0 - 10) << "408 before the header timeout";
        EXPECT_LE(at, 500.0 + 1500) << "408 long after the header timeout";
    }
    ExpectClosedAfter(r, conn);
}

TEST(BadInput, BodyNotCompleteWithinBodyTimeoutGets408AndClose) {
    ServeProcess server({"--body-timeout", "500ms"});
    HttpConnection conn = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(conn.IsOpen());
    const auto sent = SteadyClock::now();
    ASSERT_EQ(conn.SendRaw(PostHead() + "Content-Length: 100\r\n\r\n{\"data\":"), 0);

    const HttpResponse r = conn.ReadResponse(sent + 5s);
    EXPECT_TRUE(IsProblem(r, 408));
    if (r.complete) {
        const double at = MsBetween(sent, r.received_at);
        EXPECT_GE(at, 500.0 - 10) << "408 before the body timeout";
        EXPECT_LE(at, 500.0 + 1500) << "408 long after the body timeout";
    }
    ExpectClosedAfter(r, conn);
}

TEST(BadInput, ContentLengthWithTransferEncodingGets400) {
    ServeProcess server;
    HttpConnection conn;
    const HttpResponse r = SendRawRequest(server.ApiPort(),
                                          PostHead() +
                                              "Content-Length: 10\r\nTransfer-Encoding: "
                                              "chunked\r\n\r\na\r\n{\"data\":1}\r\n0\r\n\r\n",
                                          &conn);
    EXPECT_TRUE(IsProblem(r, 400));
    // RFC 9112 §6.1: a server that answers such a request must close the connection.
    ExpectClosedAfter(r, conn);
}

TEST(BadInput, HeadersOverLimitGet431) {
    ServeProcess server({"--header-limit", "1024"});
    const HttpResponse r =
        Fetch(server.ApiPort(), "GET", "/livez", {{"X-Padding", std::string(2048, 'a')}});
    EXPECT_TRUE(IsProblem(r, 431));
    const HttpResponse small =
        Fetch(server.ApiPort(), "GET", "/livez", {{"X-Padding", std::string(512, 'a')}});
    EXPECT_EQ(small.status, 200) << small.Describe();
}

TEST(BadInput, OverMaxConnectionsGets503RetryAfterThenClose) {
    constexpr int kMax = 3;
    ServeProcess server({"--max-connections", std::to_string(kMax)});
    std::vector<HttpConnection> held;
    for (int i = 0; i < kMax; ++i) {
        HttpConnection c = HttpConnection::Connect(server.ApiPort());
        ASSERT_TRUE(c.IsOpen());
        const HttpResponse r = c.Request("GET", "/livez");
        ASSERT_EQ(r.status, 200) << "connection " << i + 1 << " of " << kMax << ": "
                                 << r.Describe();
        held.push_back(std::move(c));
    }

    HttpConnection extra = HttpConnection::Connect(server.ApiPort());
    ASSERT_TRUE(extra.IsOpen());
    // The server may answer at once on accept; only send a request if it does not.
    HttpResponse r = extra.ReadResponse(DeadlineIn(500ms));
    if (!r.complete && r.timed_out && extra.Buffered().empty()) {
        ASSERT_EQ(extra.SendRequest("GET", "/livez"), 0);
        r = extra.ReadResponse();
    }
    EXPECT_TRUE(IsProblem(r, 503));
    EXPECT_TRUE(r.Header("Retry-After").has_value()) << r.Describe();
    ExpectClosedAfter(r, extra);

    // Recovery: once a slot is free, new connections are served again.
    held.back().Close();
    held.pop_back();
    const auto ok = PollUntilStatus(server.ApiPort(), "/livez", 200, DeadlineIn(2s));
    EXPECT_TRUE(ok) << "no 200 after a connection slot was freed";
}

TEST(ProblemJson, EveryErrorResponseIsProblemJson) {
    ServeProcess server({"--body-limit", "1024", "--header-limit", "2048"});
    struct Case {
        const char* what;
        std::string raw;
        int status;
    };
    const std::vector<Case> cases = {
        {"malformed request line", "NOT HTTP AT ALL\r\n\r\n", 400},
        {"invalid JSON", BuildRequest("POST", "/resources", JsonHeaders(), "{nope"), 400},
        {"body over limit",
         BuildRequest("POST", "/resources", JsonHeaders(),
                      ResourceBody("\"" + std::string(2000, 'z') + "\"")),
         413},
        {"POST without Content-Length", PostHead() + "\r\n", 411},
        {"wrong content type",
         BuildRequest("POST", "/resources", {{"Content-Type", "text/plain"}}, ResourceBody("1")),
         415},
        {"unknown path", BuildRequest("GET", "/nowhere"), 404},
        {"unknown resource", BuildRequest("GET", "/resources/unknown"), 404},
        {"wrong method", BuildRequest("PATCH", "/resources", JsonHeaders(), ResourceBody("1")),
         405},
        {"work_ms out of range",
         BuildRequest("POST", "/resources", JsonHeaders(), ResourceBody("1", -5)), 400},
        {"Content-Length with Transfer-Encoding",
         PostHead() + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"headers over limit", BuildRequest("GET", "/livez", {{"X-Big", std::string(3000, 'b')}}),
         431},
    };
    for (const auto& c : cases) {
        const HttpResponse r = SendRawRequest(server.ApiPort(), c.raw);
        EXPECT_TRUE(IsProblem(r, c.status)) << c.what;
    }
    // None of that disturbed the server.
    const HttpResponse livez = Fetch(server.ApiPort(), "GET", "/livez");
    EXPECT_EQ(livez.status, 200) << livez.Describe();
}

}  // namespace
}  // namespace rollsafe::testing
