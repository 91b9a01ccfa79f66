// The only translation unit that instantiates Beast: keep it that way (each such file costs
// ~20 s of compile time on the CI machine).
#include "rollsafe/http/server.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <ctime>
#include <list>
#include <thread>

#include "rollsafe/util/clock.hpp"
#include "rollsafe/util/log.hpp"

namespace rollsafe::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(use_awaitable);

namespace {

tcp::endpoint ParseEndpoint(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos)
        throw std::runtime_error("listen address '" + text + "' must be HOST:PORT");
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const std::string port_text = text.substr(colon + 1);
    unsigned long port = 0;
    try {
        std::size_t used = 0;
        port = std::stoul(port_text, &used);
        if (used != port_text.size() || port > 65535) throw std::out_of_range("port");
    } catch (const std::exception&) {
        throw std::runtime_error("listen address '" + text + "': bad port '" + port_text + "'");
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
    if (ec)
        throw std::runtime_error("listen address '" + text + "': '" + host +
                                 "' is not an IP address");
    return {addr, static_cast<unsigned short>(port)};
}

std::string HttpDate() {
    // Formatting a date per response is measurable at 50k req/s; once per second per thread.
    thread_local std::time_t cached_sec = 0;
    thread_local std::string cached;
    const std::time_t now = std::time(nullptr);
    if (now != cached_sec) {
        std::tm tm{};
        gmtime_r(&now, &tm);
        char buf[64];
        std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = buf;
        cached_sec = now;
    }
    return cached;
}

struct Loop;

/// What a connection is doing, for the lifecycle's "close idle" and "cancel at deadline".
enum class Phase { kIdle, kReading, kHandling, kWriting };

class Context;

struct Conn {
    explicit Conn(tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
    tcp::socket sock;
    asio::steady_timer timer;
    Phase phase = Phase::kIdle;
    bool timed_out = false;
    std::uint64_t timer_gen = 0;
    Context* ctx = nullptr;                               // set while a handler runs
    std::chrono::steady_clock::time_point write_started;  // valid in kWriting
    bool deadline_cancelled = false;  // its read was cancelled by the shutdown deadline

    /// Cancels the socket's pending operation after `d` unless Disarm() runs first.
    void Arm(std::chrono::milliseconds d, std::shared_ptr<Conn> self) {
        timed_out = false;
        const auto gen = ++timer_gen;
        timer.expires_after(d);
        timer.async_wait([self = std::move(self), gen](boost::system::error_code ec) {
            // A timer that fired just as the read completed must not hit the next operation.
            if (ec || self->timer_gen != gen) return;
            self->timed_out = true;
            boost::system::error_code ignored;
            self->sock.cancel(ignored);
        });
    }
    void Disarm() {
        ++timer_gen;
        timer.cancel();
    }
};

struct Loop {
    // Declared before the io_context: frames destroyed with the io_context unlink themselves
    // from this list, so it must outlive it.
    std::list<std::shared_ptr<Conn>> conns;
    std::list<Context*> background;  // running background tasks (Server::Spawn)
    asio::io_context ioc{1};
    std::thread thread;
};

class Context final : public RequestContext {
  public:
    Context(const std::string& replica, asio::any_io_executor ex) : replica_(replica), ex_(ex) {}
    bool Cancelled() const override { return cancelled_; }
    const std::string& ReplicaName() const override { return replica_; }
    awaitable<bool> Sleep(std::chrono::milliseconds d) override {
        if (cancelled_) co_return false;
        asio::steady_timer t(ex_, d);
        timer_ = &t;
        auto [ec] = co_await t.async_wait(kTuple);
        timer_ = nullptr;
        co_return !ec && !cancelled_;
    }
    void Cancel() {
        cancelled_ = true;
        if (timer_) timer_->cancel();
    }

  private:
    const std::string& replica_;
    asio::any_io_executor ex_;
    bool cancelled_ = false;
    asio::steady_timer* timer_ = nullptr;
};

}  // namespace

struct Server::Impl {
    Impl(ServerOptions o, Router a, Router ad, lifecycle::Lifecycle& l, metrics::Registry& m,
         Probes p)
        : opt(std::move(o)),
          api(std::move(a)),
          admin(std::move(ad)),
          lc(l),
          metrics(m),
          probes(std::move(p)) {
        if (opt.threads <= 0) opt.threads = std::max(1u, std::thread::hardware_concurrency());
        for (int i = 0; i < opt.threads; ++i) loops.push_back(std::make_unique<Loop>());
        auto& ioc0 = loops[0]->ioc;
        api_acc = std::make_unique<tcp::acceptor>(ioc0);
        admin_acc = std::make_unique<tcp::acceptor>(ioc0);
        Bind(*api_acc, opt.listen);
        Bind(*admin_acc, opt.admin_listen);
        drain_timer = std::make_unique<asio::steady_timer>(ioc0);
        deadline_timer = std::make_unique<asio::steady_timer>(ioc0);
        signals = std::make_unique<asio::signal_set>(ioc0);
        AddBuiltinRoutes();
    }

    static void Bind(tcp::acceptor& acc, const std::string& where) {
        const auto ep = ParseEndpoint(where);
        boost::system::error_code ec;
        acc.open(ep.protocol(), ec);
        if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acc.bind(ep, ec);
        if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
    }

    void AddBuiltinRoutes() {
        auto livez = [](Request&, RequestContext&) -> awaitable<Response> {
            co_return Response::Json(200, R"({"status":"alive"})");
        };
        auto readyz = [this](Request&, RequestContext&) -> awaitable<Response> {
            const auto state = lc.GetState();
            const bool deps = probes.dependencies_ready();
            boost::json::object o;
            o["state"] = lifecycle::ToString(state);
            o["dependencies"] = deps ? "ok" : "unavailable";
            const bool ready = state == lifecycle::State::kReady && deps;
            o["status"] = ready ? "ready" : "not ready";
            co_return Response::Json(ready ? 200 : 503, boost::json::serialize(o));
        };
        api.Add("GET", "/livez", livez);
        api.Add("GET", "/readyz", readyz);
        admin.Add("GET", "/livez", livez);
        admin.Add("GET", "/readyz", readyz);
        admin.Add("GET", "/health", readyz);
        admin.Add("GET", "/metrics", [this](Request&, RequestContext&) -> awaitable<Response> {
            Response r;
            r.status = 200;
            r.body = metrics.RenderPrometheus();
            r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
            co_return r;
        });
        admin.Add("GET", "/lifecycle/prestop",
                  [this](Request&, RequestContext& ctx) -> awaitable<Response> {
                      const auto action = lc.OnPreStop();
                      asio::post(loops[0]->ioc, [this, action] { Handle(action); });
                      const auto until = lc.TerminationStartedAt() + lc.GetOptions().drain_delay;
                      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          until - std::chrono::steady_clock::now());
                      if (left.count() > 0) co_await ctx.Sleep(left);
                      boost::json::object o;
                      o["state"] = lifecycle::ToString(lc.GetState());
                      o["drain_delay_ms"] = lc.GetOptions().drain_delay.count();
                      co_return Response::Json(200, boost::json::serialize(o));
                  });
    }

    // ---- lifecycle driver; runs on loop 0 only ----

    void Handle(lifecycle::Action a) {
        using lifecycle::Action;
        switch (a) {
            case Action::kNone:
                break;
            case Action::kStartDrainTimer:
                drain_timer->expires_after(lc.GetOptions().drain_delay);
                drain_timer->async_wait([this](boost::system::error_code ec) {
                    if (!ec) Handle(lc.OnDrainElapsed());
                });
                break;
            case Action::kStartClosing:
                StartClosing();
                break;
            case Action::kDeadlineNow:
                StartClosing();
                CancelInFlight();
                break;
        }
    }

    void StartClosing() {
        if (closing_started) return;
        closing_started = true;
        boost::system::error_code ignored;
        api_acc->close(ignored);
        admin_acc->close(ignored);
        drain_timer->cancel();
        for (auto& l : loops) {
            asio::post(l->ioc, [lp = l.get()] {
                for (auto& c : lp->conns) {
                    if (c->phase == Phase::kIdle) {
                        boost::system::error_code e;
                        c->sock.cancel(e);
                    }
                }
                // Background work (recovery) hands its operations back at once rather than
                // holding the exit: another replica takes them over.
                for (auto* ctx : lp->background) ctx->Cancel();
            });
        }
        deadline_timer->expires_after(lc.GetOptions().shutdown_timeout);
        deadline_timer->async_wait([this](boost::system::error_code ec) {
            if (!ec) Handle(lc.OnDeadline());
        });
        CheckFinished();
    }

    void CancelInFlight() {
        util::LogEvent("deadline", {{"in_flight", in_flight.load()}});
        CheckFinished();
        for (auto& l : loops) {
            asio::post(l->ioc, [lp = l.get()] {
                for (auto& c : lp->conns) {
                    boost::system::error_code e;
                    if (c->phase == Phase::kHandling && c->ctx)
                        c->ctx->Cancel();
                    else if (c->phase == Phase::kWriting)
                        c->Arm(std::chrono::milliseconds(1000), c);  // a last second to finish
                    else {
                        // A request still arriving is answered 503 too; an idle one just goes.
                        c->deadline_cancelled = c->phase == Phase::kReading;
                        c->sock.cancel(e);
                    }
                }
            });
        }
    }

    void CheckFinished() {
        if (finished.load() || !closing_started || in_flight.load() != 0) return;
        finished.store(true);
        const auto drained = std::chrono::steady_clock::now() - lc.TerminationStartedAt();
        metrics.SetDrainDuration(std::chrono::duration<double>(drained).count());
        signals->cancel();
        deadline_timer->cancel();
        lc.MarkStopped();
        for (auto& l : loops) l->ioc.stop();
    }

    void RequestDone() {
        metrics.AddInFlight(-1);
        // After the finish, loops are stopping and loop 0 may already be gone: post nothing.
        if (in_flight.fetch_sub(1) == 1 && !finished.load() &&
            lc.GetState() >= lifecycle::State::kDraining)
            asio::post(loops[0]->ioc, [this] { CheckFinished(); });
    }

    void WaitSignal() {
        signals->async_wait([this](boost::system::error_code ec, int sig) {
            if (ec) return;
            util::LogEvent("signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                                      {"in_flight", in_flight.load()}});
            Handle(lc.OnSignal());
            WaitSignal();
        });
    }

    // ---- connections ----

    Loop& NextLoop() { return *loops[next_loop.fetch_add(1) % loops.size()]; }

    awaitable<void> Accept(tcp::acceptor& acc, bool is_admin) {
        for (;;) {
            Loop& loop = NextLoop();
            auto [ec, sock] = co_await acc.async_accept(loop.ioc, kTuple);
            if (ec) {
                if (!acc.is_open() || ec == asio::error::operation_aborted) co_return;
                // Out of descriptors or similar: back off instead of spinning.
                asio::steady_timer t(acc.get_executor(), std::chrono::milliseconds(50));
                co_await t.async_wait(kTuple);
                continue;
            }
            boost::system::error_code ignored;
            sock.set_option(tcp::no_delay(true), ignored);
            tcp::socket s(std::move(sock));
            if (!is_admin && connections.load() >= opt.max_connections) {
                metrics.CountRejectedConnection();
                asio::co_spawn(loop.ioc, Reject(std::move(s)), asio::detached);
                continue;
            }
            asio::co_spawn(loop.ioc, Session(loop, std::move(s), is_admin), asio::detached);
        }
    }

    awaitable<void> Reject(tcp::socket s) {
        auto res = Response::Problem(503, "too many open connections; retry shortly");
        res.With("Retry-After", std::to_string(opt.retry_after_seconds));
        const std::string wire =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
            "application/problem+json\r\nRetry-After: " +
            std::to_string(opt.retry_after_seconds) +
            "\r\nConnection: close\r\nContent-Length: " + std::to_string(res.body.size()) +
            "\r\n\r\n" + res.body;
        co_await asio::async_write(s, asio::buffer(wire), kTuple);
        boost::system::error_code ignored;
        s.shutdown(tcp::socket::shutdown_send, ignored);
    }

    Response DeadlineResponse() const {
        Response r = Response::Problem(
            503,
            "the server is shutting down; the request was cancelled before it was read "
            "in full; retry with the same Idempotency-Key");
        r.With("Retry-After", std::to_string(opt.retry_after_seconds));
        return r;
    }

    struct Outcome {
        Response res;
        bool close = false;
        std::string route;
    };

    awaitable<void> Session(Loop& loop, tcp::socket sock, bool is_admin) {
        auto conn = std::make_shared<Conn>(std::move(sock));
        loop.conns.push_front(conn);
        auto it = loop.conns.begin();
        if (!is_admin) connections.fetch_add(1);
        metrics.AddConnections(1);
        struct Unlink {
            Impl* self;
            Loop& loop;
            std::list<std::shared_ptr<Conn>>::iterator it;
            bool is_admin;
            ~Unlink() {
                loop.conns.erase(it);
                if (!is_admin) self->connections.fetch_sub(1);
                self->metrics.AddConnections(-1);
            }
        } unlink{this, loop, it, is_admin};

        beast::flat_buffer buf;
        bool lingering = false;
        const Router& router = is_admin ? admin : api;
        for (;;) {
            if (buf.size() == 0) {
                // Idle keep-alive: no byte of a next request yet. Closing cancels only these.
                if (lc.GetState() >= lifecycle::State::kClosing) break;
                conn->phase = Phase::kIdle;
                conn->Arm(opt.idle_timeout, conn);
                auto [ec, n] = co_await conn->sock.async_read_some(buf.prepare(8192), kTuple);
                conn->Disarm();
                if (ec) break;
                buf.commit(n);
            }
            conn->phase = Phase::kReading;
            in_flight.fetch_add(1);
            metrics.AddInFlight(1);
            struct Done {
                Impl* self;
                ~Done() { self->RequestDone(); }
            } done{this};
            const auto started = std::chrono::steady_clock::now();

            Outcome out;
            Request req;
            bool have_request = false;
            {
                bhttp::request_parser<bhttp::string_body> parser;
                parser.header_limit(static_cast<std::uint32_t>(opt.header_limit));
                parser.body_limit(opt.body_limit);
                conn->Arm(opt.header_timeout, conn);
                auto [ec, n] = co_await bhttp::async_read_header(conn->sock, buf, parser, kTuple);
                conn->Disarm();
                (void)n;
                if (ec) {
                    if (conn->timed_out) {
                        out = {Response::Problem(
                                   408, "request headers not received within " +
                                            std::to_string(opt.header_timeout.count()) + " ms"),
                               true, "unparsed"};
                    } else if (ec == bhttp::error::body_limit) {
                        // Beast checks a declared Content-Length against the limit as soon as
                        // it parses the header.
                        out = {
                            Response::Problem(413, "request body exceeds the limit of " +
                                                       std::to_string(opt.body_limit) + " bytes"),
                            true, "unparsed"};
                    } else if (ec == bhttp::error::header_limit) {
                        out = {
                            Response::Problem(431, "request line and headers exceed " +
                                                       std::to_string(opt.header_limit) + " bytes"),
                            true, "unparsed"};
                    } else if (conn->deadline_cancelled) {
                        out = {DeadlineResponse(), true, "unparsed"};
                    } else if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                               ec == asio::error::operation_aborted ||
                               ec == asio::error::connection_reset ||
                               ec == bhttp::error::partial_message) {
                        break;  // peer went away, or we are shutting the connection
                    } else {
                        out = {Response::Problem(400, "malformed request: " + ec.message()), true,
                               "unparsed"};
                    }
                } else {
                    auto& h = parser.get();
                    const bool has_te = h.count(bhttp::field::transfer_encoding) > 0;
                    const bool has_cl = h.count(bhttp::field::content_length) > 0;
                    const bool body_method = h.method() == bhttp::verb::post ||
                                             h.method() == bhttp::verb::put ||
                                             h.method() == bhttp::verb::patch;
                    if (has_te && has_cl) {
                        out = {Response::Problem(400,
                                                 "Content-Length together with "
                                                 "Transfer-Encoding is not allowed"),
                               true, "unparsed"};
                    } else if (has_te && !IEquals(h[bhttp::field::transfer_encoding], "chunked")) {
                        out = {
                            Response::Problem(400, "only Transfer-Encoding: chunked is accepted"),
                            true, "unparsed"};
                    } else if (body_method && !has_cl && !has_te) {
                        out = {Response::Problem(411,
                                                 "a request body needs Content-Length or "
                                                 "Transfer-Encoding: chunked"),
                               true, "unparsed"};
                    } else if (parser.content_length() &&
                               *parser.content_length() > opt.body_limit) {
                        out = {
                            Response::Problem(413, "request body of " +
                                                       std::to_string(*parser.content_length()) +
                                                       " bytes exceeds the limit of " +
                                                       std::to_string(opt.body_limit) + " bytes"),
                            true, "unparsed"};
                    } else {
                        bool ok = true;
                        if (!parser.is_done()) {
                            if (auto e = h[bhttp::field::expect]; IEquals(e, "100-continue")) {
                                static constexpr std::string_view kContinue =
                                    "HTTP/1.1 100 Continue\r\n\r\n";
                                conn->phase = Phase::kWriting;
                                auto [wec, wn] = co_await asio::async_write(
                                    conn->sock, asio::buffer(kContinue), kTuple);
                                (void)wn;
                                conn->phase = Phase::kReading;
                                if (wec) break;
                            }
                            conn->Arm(opt.body_timeout, conn);
                            auto [bec, bn] =
                                co_await bhttp::async_read(conn->sock, buf, parser, kTuple);
                            conn->Disarm();
                            (void)bn;
                            if (bec) {
                                ok = false;
                                if (conn->timed_out) {
                                    out = {Response::Problem(
                                               408, "request body not received within " +
                                                        std::to_string(opt.body_timeout.count()) +
                                                        " ms"),
                                           true, "unparsed"};
                                } else if (bec == bhttp::error::body_limit) {
                                    out = {Response::Problem(
                                               413, "request body exceeds the limit of " +
                                                        std::to_string(opt.body_limit) + " bytes"),
                                           true, "unparsed"};
                                } else if (conn->deadline_cancelled) {
                                    out = {DeadlineResponse(), true, "unparsed"};
                                } else if (bec == asio::error::operation_aborted ||
                                           bec == bhttp::error::end_of_stream ||
                                           bec == asio::error::eof ||
                                           bec == bhttp::error::partial_message ||
                                           bec == asio::error::connection_reset) {
                                    break;
                                } else {
                                    out = {Response::Problem(
                                               400, "malformed request body: " + bec.message()),
                                           true, "unparsed"};
                                }
                            }
                        }
                        if (ok) {
                            auto msg = parser.release();
                            req.method = std::string(msg.method_string());
                            req.target = std::string(msg.target());
                            const auto q = req.target.find('?');
                            req.path = req.target.substr(0, q);
                            req.headers.reserve(8);
                            for (const auto& f : msg)
                                req.headers.emplace_back(std::string(f.name_string()),
                                                         std::string(f.value()));
                            req.body = std::move(msg.body());
                            out.close = !msg.keep_alive();
                            have_request = true;
                        }
                    }
                }
            }

            if (have_request) {
                auto match = router.Find(req);
                out.route = match.route;
                if (!match.handler) {
                    out.res = match.status == 405
                                  ? Response::Problem(405, "method " + req.method +
                                                               " is not allowed on " + req.path)
                                  : Response::Problem(404, "no route for " + req.path);
                    if (match.status == 405) out.res.With("Allow", match.allow);
                } else {
                    Context ctx(opt.replica_name, conn->sock.get_executor());
                    conn->phase = Phase::kHandling;
                    conn->ctx = &ctx;
                    try {
                        out.res = co_await (*match.handler)(req, ctx);
                    } catch (const ApiError& e) {
                        out.res = Response::Problem(e.status, e.what());
                        for (const auto& h : e.headers) out.res.headers.push_back(h);
                    } catch (const std::exception& e) {
                        util::LogEvent("handler_error", {{"path", req.path}, {"error", e.what()}});
                        out.res = Response::Problem(500, "internal error");
                    }
                    conn->ctx = nullptr;
                    if (ctx.Cancelled()) {
                        // The handler decides what a cancellation means: a commit that already
                        // returned is acknowledged as it is. Anything else becomes 503 with
                        // Retry-After, and the connection ends either way.
                        out.close = true;
                        if (out.res.status < 200 || out.res.status >= 300) {
                            if (out.res.status != 503)
                                out.res = Response::Problem(
                                    503,
                                    "the server is shutting down; the request was "
                                    "cancelled; retry with the same Idempotency-Key");
                            if (!out.res.Header("Retry-After"))
                                out.res.With("Retry-After",
                                             std::to_string(opt.retry_after_seconds));
                        }
                    }
                }
            }

            // Build and write the response.
            const bool draining = lc.ShouldClose();
            const bool keep_alive = !out.close && !draining;
            bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.res.status), 11};
            for (auto& [k, v] : out.res.headers) res.insert(k, v);
            res.set(bhttp::field::date, HttpDate());
            if (draining) res.set("x-envoy-immediate-health-check-fail", "true");
            res.body() = std::move(out.res.body);
            res.keep_alive(keep_alive);
            res.prepare_payload();
            // Counted before the write: a client that has its answer must find it in /metrics.
            const auto latency = std::chrono::steady_clock::now() - started;
            metrics.RecordRequest(out.route, out.res.status, latency);
            conn->phase = Phase::kWriting;
            conn->write_started = std::chrono::steady_clock::now();  // see SweepWriters
            auto [wec, wn] = co_await bhttp::async_write(conn->sock, res, kTuple);
            (void)wn;
            if (opt.access_log) {
                boost::json::object o;
                o["method"] = have_request ? req.method : "-";
                o["path"] = have_request ? req.path : "-";
                o["status"] = out.res.status;
                o["latency_us"] =
                    std::chrono::duration_cast<std::chrono::microseconds>(latency).count();
                if (have_request)
                    if (auto key = req.Header("Idempotency-Key")) o["idempotency_key"] = *key;
                if (draining) o["draining"] = true;
                util::LogEvent("request", std::move(o));
            }
            if (wec || !keep_alive) {
                boost::system::error_code ignored;
                conn->sock.shutdown(tcp::socket::shutdown_send, ignored);
                if (!wec) lingering = true;
                break;
            }
        }
        conn->phase = Phase::kIdle;
        if (lingering) {
            // Lingering close: bytes the client sent that we never read (a pipelined request,
            // the rest of an oversized body) would make close() send a reset, and a reset can
            // destroy our response in the client's receive buffer. Read and drop them until the
            // client closes, bounded in time and bytes. Not in flight: exit does not wait.
            std::array<char, 4096> sink;
            std::size_t dropped = 0;
            conn->Arm(std::chrono::milliseconds(2000), conn);
            while (dropped < 256 * 1024) {
                auto [ec, n] = co_await conn->sock.async_read_some(asio::buffer(sink), kTuple);
                if (ec) break;
                dropped += n;
            }
            conn->Disarm();
        }
    }

    awaitable<void> RunBackground(Loop& loop, BackgroundTask task, bool counted) {
        Context ctx(opt.replica_name, loop.ioc.get_executor());
        loop.background.push_front(&ctx);
        auto it = loop.background.begin();
        struct Unlink {
            Impl* self;
            Loop& loop;
            std::list<Context*>::iterator it;
            bool counted;
            ~Unlink() {
                loop.background.erase(it);
                if (counted) self->RequestDone();
            }
        } unlink{this, loop, it, counted};
        if (lc.GetState() >= lifecycle::State::kClosing) ctx.Cancel();
        try {
            co_await task(ctx);
        } catch (const std::exception& e) {
            util::LogEvent("background_error", {{"error", e.what()}});
        }
    }

    void Spawn(BackgroundTask task, bool counted) {
        if (finished.load()) return;
        if (counted) {
            in_flight.fetch_add(1);
            metrics.AddInFlight(1);
        }
        Loop& loop = NextLoop();
        asio::co_spawn(loop.ioc, RunBackground(loop, std::move(task), counted), asio::detached);
    }

    // A client that stops reading must not hold a connection (or the process, past its
    // deadline) forever. A timer per response cost measurable throughput; one sweep per loop
    // and second cancels writes that have run longer than --body-timeout.
    awaitable<void> SweepWriters(Loop& loop) {
        asio::steady_timer t(loop.ioc);
        for (;;) {
            t.expires_after(std::chrono::seconds(1));
            auto [ec] = co_await t.async_wait(kTuple);
            if (ec) co_return;
            const auto now = std::chrono::steady_clock::now();
            for (auto& c : loop.conns) {
                if (c->phase == Phase::kWriting && now - c->write_started > opt.body_timeout) {
                    boost::system::error_code e;
                    c->sock.cancel(e);
                }
            }
        }
    }

    void Run() {
        lc.Subscribe([this](lifecycle::State from, lifecycle::State to) {
            metrics.SetLifecycleState(static_cast<int>(to));
            const auto since = lc.GetState() >= lifecycle::State::kDraining
                                   ? std::chrono::steady_clock::now() - lc.TerminationStartedAt()
                                   : std::chrono::steady_clock::duration{};
            util::LogEvent(
                "lifecycle",
                {{"from", lifecycle::ToString(from)},
                 {"to", lifecycle::ToString(to)},
                 {"in_flight", in_flight.load()},
                 {"since_termination_ms",
                  std::chrono::duration_cast<std::chrono::milliseconds>(since).count()}});
        });
        signals->add(SIGTERM);
        signals->add(SIGINT);
        WaitSignal();
        for (auto& l : loops) asio::co_spawn(l->ioc, SweepWriters(*l), asio::detached);
        asio::co_spawn(loops[0]->ioc, Accept(*api_acc, false), asio::detached);
        asio::co_spawn(loops[0]->ioc, Accept(*admin_acc, true), asio::detached);
        lc.MarkReady();
        for (std::size_t i = 1; i < loops.size(); ++i)
            loops[i]->thread = std::thread([lp = loops[i].get()] {
                auto guard = asio::make_work_guard(lp->ioc);
                lp->ioc.run();
            });
        {
            auto guard = asio::make_work_guard(loops[0]->ioc);
            loops[0]->ioc.run();
        }
        for (auto& l : loops)
            if (l->thread.joinable()) l->thread.join();
    }

    ServerOptions opt;
    Router api;
    Router admin;
    lifecycle::Lifecycle& lc;
    metrics::Registry& metrics;
    Probes probes;
    std::atomic<std::int64_t> in_flight{0};
    std::atomic<std::size_t> connections{0};
    std::atomic<std::size_t> next_loop{0};
    bool closing_started = false;       // loop 0 only
    std::atomic<bool> finished{false};  // written on loop 0 only
    std::vector<std::unique_ptr<Loop>> loops;
    std::unique_ptr<tcp::acceptor> api_acc;
    std::unique_ptr<tcp::acceptor> admin_acc;
    std::unique_ptr<asio::steady_timer> drain_timer;
    std::unique_ptr<asio::steady_timer> deadline_timer;
    std::unique_ptr<asio::signal_set> signals;
};

Server::Server(ServerOptions options, Router api, Router admin, lifecycle::Lifecycle& lifecycle,
               metrics::Registry& metrics, Probes probes)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(api), std::move(admin), lifecycle,
                                   metrics, std::move(probes))) {}

Server::~Server() {
    // Acceptors, timers and the signal set belong to loop 0's io_context: release them first.
    impl_->signals.reset();
    impl_->drain_timer.reset();
    impl_->deadline_timer.reset();
    impl_->api_acc.reset();
    impl_->admin_acc.reset();
}

unsigned short Server::ApiPort() const { return impl_->api_acc->local_endpoint().port(); }
unsigned short Server::AdminPort() const { return impl_->admin_acc->local_endpoint().port(); }

void Server::Run() { impl_->Run(); }

void Server::Spawn(BackgroundTask task, bool counted) { impl_->Spawn(std::move(task), counted); }

}  // namespace rollsafe::http
