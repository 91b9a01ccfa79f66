// The one translation unit of the client that instantiates Beast, Asio and Boost.URL.

#include "rollsafe/client/client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <stdexcept>
#include <thread>

namespace rollsafe::client {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace urls = boost::urls;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

bool IsTokenChar(char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

template <class S>
std::string Str(const S& s) {
    return std::string(s.data(), s.size());
}

std::optional<Target> Fail(std::string* error, std::string why) {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
}

milliseconds Since(const util::Clock& clock, util::Clock::Steady start) {
    return std::chrono::duration_cast<milliseconds>(clock.SteadyNow() - start);
}

}  // namespace

std::optional<Target> ParseUrl(std::string_view url, std::string* error) {
    const auto parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
    if (!parsed)
        return Fail(error, "'" + std::string(url) + "' is not an absolute URL (" +
                               parsed.error().message() + ")");
    const urls::url_view u = *parsed;
    if (u.scheme_id() == urls::scheme::https)
        return Fail(error, "https:// is not supported (no TLS): use an http:// URL");
    if (u.scheme_id() != urls::scheme::http)
        return Fail(error, "'" + std::string(url) + "' is not an http:// URL");
    if (!u.has_authority() || u.encoded_host().empty()) return Fail(error, "the URL has no host");
    if (u.has_userinfo()) return Fail(error, "user info in the URL is not supported");
    if (u.has_fragment()) return Fail(error, "a fragment (#...) has no place in a request URL");

    Target t;
    switch (u.host_type()) {
        case urls::host_type::ipv4:
            t.address = Str(u.host_address());
            t.host = t.address;
            break;
        case urls::host_type::ipv6:
            t.address = Str(u.host_address());
            t.host = "[" + t.address + "]";
            break;
        case urls::host_type::name:
            // Resolving names would block outside the attempt's timeout (getaddrinfo has none).
            if (!EqualsIgnoreCase(Str(u.encoded_host()), "localhost"))
                return Fail(error, "the host must be an IP literal or localhost, not '" +
                                       Str(u.encoded_host()) + "'");
            t.address = "127.0.0.1";
            t.host = "localhost";
            break;
        default:
            return Fail(error, "the host must be an IP literal or localhost");
    }
    beast::error_code ec;
    (void)net::ip::make_address(t.address, ec);
    if (ec) return Fail(error, "'" + t.address + "' is not an IP address");

    if (u.has_port() && !u.port().empty()) {
        const std::string p = Str(u.port());
        if (p.size() > 5 || u.port_number() == 0)
            return Fail(error, "port '" + p + "' is not in 1-65535");
        t.port = u.port_number();
        if (t.port != 80) t.host += ":" + p;
    }
    t.target = u.encoded_path().empty() ? "/" : Str(u.encoded_path());
    if (u.has_query()) t.target += "?" + Str(u.encoded_query());
    return t;
}

std::optional<std::string> CheckExtraHeader(std::string_view name, std::string_view value) {
    if (name.empty()) return "a header needs a name";
    for (char c : name)
        if (!IsTokenChar(c)) return "'" + std::string(name) + "' is not a valid header name";
    for (char c : value)
        if (c == '\r' || c == '\n' || c == '\0')
            return "the value of " + std::string(name) + " contains CR, LF or NUL";
    for (std::string_view reserved : {"Idempotency-Key", "Content-Length", "Connection",
                                      "Transfer-Encoding", "Expect", "Upgrade", "TE", "Trailer"})
        if (EqualsIgnoreCase(name, reserved))
            return std::string(reserved) + " is set by the client itself" +
                   (reserved == "Idempotency-Key" ? " (use the key option)" : "");
    return std::nullopt;
}

std::optional<std::string> Response::Header(std::string_view name) const {
    for (const auto& [n, v] : headers)
        if (EqualsIgnoreCase(n, name)) return v;
    return std::nullopt;
}

namespace {

/// One kept-alive connection, driven synchronously: each operation is started asynchronously
/// and the private io_context is run until it completes. tcp_stream's timeouts apply only to
/// asynchronous operations, so this is what bounds connect, send and receive by one
/// per-attempt deadline.
class Connection {
  public:
    struct Result {
        std::optional<TransportError> error;
        std::string detail;
        std::optional<Response> response;
        bool reused = false;
        bool sent = false;
    };

    Result Exchange(const tcp::endpoint& endpoint, const http::request<http::string_body>& req,
                    std::chrono::steady_clock::duration timeout, std::size_t body_limit) {
        Result out;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        out.reused = stream_.has_value();
        if (!stream_) {
            stream_.emplace(ioc_);
            stream_->expires_at(deadline);
            const auto ec = Run([&](auto handler) { stream_->async_connect(endpoint, handler); });
            if (ec) return Failed(out, ec, "connect", TransportError::kConnect);
            beast::error_code ignored;
            stream_->socket().set_option(tcp::no_delay(true), ignored);
        }
        stream_->expires_at(deadline);
        out.sent = true;
        if (const auto ec = Run([&](auto handler) { http::async_write(*stream_, req, handler); }))
            return Failed(out, ec, "send", TransportError::kConnectionLost);

        http::response_parser<http::string_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(body_limit);
        stream_->expires_at(deadline);
        out.sent = true;
        if (const auto ec =
                Run([&](auto handler) { http::async_read(*stream_, buffer_, parser, handler); })) {
            TransportError kind = TransportError::kConnectionLost;
            // Malformed or oversized answers are the peer's fault and will not change; an
            // answer cut short is a lost connection.
            if (ec.category() == http::make_error_code(http::error::bad_version).category() &&
                ec != http::error::end_of_stream && ec != http::error::partial_message)
                kind = TransportError::kProtocol;
            return Failed(out, ec, "receive", kind);
        }
        stream_->expires_never();
        auto msg = parser.release();
        Response r;
        r.status = static_cast<int>(msg.result_int());
        r.reason = Str(msg.reason());
        for (const auto& field : msg.base())
            r.headers.emplace_back(Str(field.name_string()), Str(field.value()));
        r.body = std::move(msg.body());
        if (!msg.keep_alive()) Close();
        out.response = std::move(r);
        return out;
    }

    void Close() {
        if (stream_) {
            beast::error_code ignored;
            stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream_->close();
            stream_.reset();
        }
        buffer_.clear();
    }

    ~Connection() { Close(); }

  private:
    template <class Start>
    beast::error_code Run(Start start) {
        beast::error_code result;
        start([&result](beast::error_code ec, auto&&...) { result = ec; });
        ioc_.restart();
        ioc_.run();
        return result;
    }

    Result& Failed(Result& out, const beast::error_code& ec, const char* phase,
                   TransportError kind) {
        out.error = ec == beast::error::timeout ? TransportError::kTimeout : kind;
        out.detail = std::string(phase) + ": " + ec.message();
        Close();
        return out;
    }

    net::io_context ioc_{1};
    std::optional<beast::tcp_stream> stream_;
    beast::flat_buffer buffer_;
};

}  // namespace

PostResult Post(const PostRequest& request, const Environment& env) {
    std::string url_error;
    const auto target = ParseUrl(request.url, &url_error);
    if (!target) throw std::invalid_argument(url_error);
    for (const auto& [name, value] : request.headers)
        if (auto why = CheckExtraHeader(name, value)) throw std::invalid_argument(*why);
    if (request.attempt_timeout <= milliseconds(0))
        throw std::invalid_argument("the attempt timeout must be positive");
    if (request.retry.deadline <= milliseconds(0))
        throw std::invalid_argument("the deadline must be positive");

    const util::Clock& clock = *env.clock;
    PostResult result;
    result.key =
        request.idempotency_key.empty() ? util::NewUuid(env.random) : request.idempotency_key;

    http::request<http::string_body> req{http::verb::post, target->target, 11};
    req.set(http::field::host, target->host);
    req.set(http::field::user_agent, "rollsafe-client");
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json, application/problem+json");
    req.set("Idempotency-Key", result.key);
    // HTTP/1.1 keeps the connection by default; saying so is for HTTP/1.0 intermediaries.
    req.set(http::field::connection, "keep-alive");
    for (const auto& [name, value] : request.headers) req.set(name, value);
    req.body() = request.body;
    req.prepare_payload();

    const tcp::endpoint endpoint(net::ip::make_address(target->address), target->port);
    Connection conn;
    const auto start = clock.SteadyNow();
    for (int number = 1;; ++number) {
        const auto attempt_start = clock.SteadyNow();
        const milliseconds left = request.retry.deadline - Since(clock, start);
        const milliseconds timeout =
            std::max(milliseconds(1), std::min(request.attempt_timeout, left));
        Connection::Result r = conn.Exchange(endpoint, req, timeout, request.response_body_limit);

        AttemptRecord rec;
        rec.number = number;
        rec.error = r.error;
        rec.error_detail = std::move(r.detail);
        rec.reused_connection = r.reused;
        rec.sent = r.sent;
        rec.latency = Since(clock, attempt_start);
        Outcome outcome;
        if (r.response) {
            rec.status = r.response->status;
            const auto replayed = r.response->Header("Idempotent-Replayed");
            rec.replayed = replayed && EqualsIgnoreCase(*replayed, "true");
            outcome = Outcome::Response(rec.status, r.response->Header("Retry-After"));
        } else {
            outcome = Outcome::Transport(*rec.error);
        }
        rec.decision = Decide(request.retry, number, outcome, Since(clock, start), env.random);
        if (env.on_attempt) env.on_attempt(rec);
        const Decision decision = rec.decision;
        result.attempts.push_back(std::move(rec));
        result.response = std::move(r.response);
        if (!decision.retry) {
            result.reason = decision.reason;
            result.why = decision.why;
            result.elapsed = Since(clock, start);
            return result;
        }
        if (env.sleep)
            env.sleep(decision.delay);
        else
            std::this_thread::sleep_for(decision.delay);
    }
}

std::optional<Response> Get(const std::string& url, milliseconds timeout, std::string* error) {
    std::string url_error;
    const auto target = ParseUrl(url, &url_error);
    if (!target) throw std::invalid_argument(url_error);
    if (timeout <= milliseconds(0)) throw std::invalid_argument("the timeout must be positive");

    http::request<http::string_body> req{http::verb::get, target->target, 11};
    req.set(http::field::host, target->host);
    req.set(http::field::user_agent, "rollsafe-client");
    req.set(http::field::accept, "application/json, application/problem+json");
    // One exchange per call: nothing would ever reuse the connection.
    req.set(http::field::connection, "close");
    req.prepare_payload();

    const tcp::endpoint endpoint(net::ip::make_address(target->address), target->port);
    Connection conn;
    Connection::Result r = conn.Exchange(endpoint, req, timeout, kGetBodyLimit);
    if (!r.response && error != nullptr) *error = r.detail;
    return std::move(r.response);
}

}  // namespace rollsafe::client
