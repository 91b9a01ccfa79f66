/// @file
/// @brief The retrying client: one JSON POST with an idempotency key, retried until it lands,
/// the answer is final, or the retries or the deadline run out; and a one-attempt GET for
/// reading results back.
///
/// Every attempt of one Post carries the *same* `Idempotency-Key`, which is what makes
/// retrying a POST safe: the server's journal executes a key once, replays the stored answer
/// to every later attempt (`Idempotent-Replayed: true`) and answers 409 + Retry-After while
/// it is still running. What is retried and how long the client waits is decided by the pure
/// policy in retry_policy.hpp.
///
/// Scope: `http://` only, and the host must be an IP literal or `localhost` (127.0.0.1): no
/// TLS and no name resolution, so an attempt never blocks outside its timeout. Blocking: Post
/// and Get return when they are done, on the calling thread, with their own I/O context.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rollsafe/client/retry_policy.hpp"
#include "rollsafe/util/clock.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::client {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// Where a URL points, as the client uses it.
struct Target {
    std::string address;  ///< the IP literal to connect to (`localhost` becomes 127.0.0.1)
    std::uint16_t port = 80;
    std::string host;    ///< the `Host` header: the URL's host, with `:port` unless 80
    std::string target;  ///< the request target: path (at least "/") and `?query`
};

/// Parses an absolute `http://` URL (RFC 3986, with Boost.URL). Returns nullopt and, when
/// `error` is given, a sentence saying what is wrong, for: another scheme (https included),
/// user info, a fragment, a host that is neither an IPv4/IPv6 literal nor `localhost`, or a
/// port outside 1–65535.
std::optional<Target> ParseUrl(std::string_view url, std::string* error = nullptr);

/// Checks one extra request header. Returns nullopt when it may be sent, else why not: the
/// name must be an RFC 9110 token and the value must not contain CR, LF or NUL; the names the
/// client sets itself for correctness (`Idempotency-Key`, `Content-Length`, `Connection`,
/// `Transfer-Encoding`, `Expect`, `Upgrade`, `TE`, `Trailer`) are refused. `Content-Type` and
/// `Host` may be overridden.
std::optional<std::string> CheckExtraHeader(std::string_view name, std::string_view value);

/// One POST to make.
struct PostRequest {
    std::string url;
    std::string body;  ///< sent as is with `Content-Type: application/json`
    /// Empty: a fresh random (v4) UUID from Environment::random. Either way, every attempt
    /// sends the same key.
    std::string idempotency_key;
    /// Extra headers (see CheckExtraHeader), replacing a default of the same name.
    Headers headers;
    RetryOptions retry;
    /// The most one attempt (connect, send, receive) may take; also bounded by what is left
    /// of `retry.deadline`. Must be positive.
    std::chrono::milliseconds attempt_timeout{10'000};
    /// Responses with a larger body are a protocol error (not retried).
    std::size_t response_body_limit = 16 * 1024 * 1024;
};

/// A complete HTTP response.
struct Response {
    int status = 0;
    std::string reason;
    Headers headers;  ///< in received order
    std::string body;

    /// The first header named `name` (case-insensitive).
    std::optional<std::string> Header(std::string_view name) const;
};

/// What one attempt did, and what the policy decided after it.
struct AttemptRecord {
    int number = 0;                       ///< 1 = the first attempt
    std::optional<TransportError> error;  ///< set when no complete response arrived
    std::string error_detail;             ///< the system's words for `error` (with the phase)
    int status = 0;                       ///< the response status, 0 with `error`
    bool replayed = false;                ///< the response had `Idempotent-Replayed: true`
    bool reused_connection = false;       ///< sent on a kept-alive connection
    /// The connection was up and sending began: the server may have executed the request
    /// even when no answer came back. False only when the connect itself failed.
    bool sent = false;
    std::chrono::milliseconds latency{0};  ///< from the start of the attempt to its end
    Decision decision;                     ///< retry after `decision.delay`, or stop
};

/// The outcome of Post.
struct PostResult {
    std::string key;  ///< the idempotency key every attempt sent
    std::vector<AttemptRecord> attempts;
    /// The last attempt's response; nullopt when the last attempt got none.
    std::optional<Response> response;
    StopReason reason = StopReason::kSucceeded;
    std::string why;                       ///< the last decision's sentence
    std::chrono::milliseconds elapsed{0};  ///< from the first attempt to the stop

    /// A 2xx response arrived.
    bool Succeeded() const { return reason == StopReason::kSucceeded; }
};

/// What Post reads time and randomness from, and how it waits; tests substitute all three.
struct Environment {
    const util::Clock* clock = &util::SystemClock::Instance();
    /// Draws the generated key and the jitter.
    util::RandomSource random = util::SystemRandom();
    /// Waits between attempts; empty: std::this_thread::sleep_for.
    std::function<void(std::chrono::milliseconds)> sleep;
    /// Called after each attempt with its record (decision included), before the wait.
    std::function<void(const AttemptRecord&)> on_attempt;
};

/// Sends `request.body` as `POST` to `request.url` with `Content-Type: application/json`,
/// `Idempotency-Key` and `Connection: keep-alive`, and retries as RetryOptions and the policy
/// say, on one kept-alive connection that is reopened after an error or a response with
/// `Connection: close`. Blocks until done; never throws for network or HTTP outcomes, which
/// are all in the result. Throws std::invalid_argument for an unusable request (a URL
/// ParseUrl refuses, a header CheckExtraHeader refuses, a non-positive attempt timeout or
/// deadline). Thread-safe: concurrent calls share nothing but `env`.
PostResult Post(const PostRequest& request, const Environment& env = {});

/// The largest response body Get accepts; a larger one is an error (a ledger account with
/// many entries is the biggest answer the drill reads).
inline constexpr std::size_t kGetBodyLimit = 64 * 1024 * 1024;

/// Sends one `GET` to `url` with `Accept: application/json, application/problem+json` and
/// `Connection: close`, on a fresh connection, and reads the answer. One attempt, no retry:
/// callers that want retries loop themselves (a GET is safe to repeat). `timeout` bounds the
/// whole exchange (connect, send, receive). Returns the response whatever its status;
/// nullopt when no complete response arrived (connect refused, timeout, connection lost, a
/// malformed answer or a body over kGetBodyLimit), with `error`, when given, set to the phase
/// and the system's words (e.g. "connect: Connection refused"). Blocks on the calling thread
/// with its own I/O context; never throws for network or HTTP outcomes. Throws
/// std::invalid_argument for a URL ParseUrl refuses or a non-positive timeout. Thread-safe.
std::optional<Response> Get(const std::string& url, std::chrono::milliseconds timeout,
                            std::string* error = nullptr);

}  // namespace rollsafe::client
