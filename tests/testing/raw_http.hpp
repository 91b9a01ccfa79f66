/// @file
/// @brief A tiny blocking HTTP/1.1 client over one TCP connection to 127.0.0.1, for black-box
/// tests that need control over bytes, timing and connection state (keep-alive,
/// pipelining, half-sent requests, resets).
///
/// Every operation takes a deadline. Nothing is retried and nothing is hidden: a refused
/// connect, a reset, a peer close and a timeout are all reported as such, so tests can assert
/// on them. Responses are framed by Content-Length, by chunked encoding, or (when neither is
/// present and the status allows a body) by the peer closing the connection; interim 1xx
/// responses are skipped.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "testing/process.hpp"

namespace rollsafe::testing {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// Case-insensitive ASCII comparison.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

/// One response, or what was seen instead of one.
struct HttpResponse {
    int status = 0;  ///< 0 when no complete status line was received
    std::string reason;
    Headers headers;  ///< in received order, names as sent
    std::string body;
    bool complete = false;        ///< a full response (headers and framed body) was read
    bool closed_by_peer = false;  ///< EOF was seen while reading this response
    bool reset = false;           ///< the connection was reset (ECONNRESET / EPIPE)
    bool timed_out = false;       ///< the deadline passed first
    int error = 0;  ///< errno of a failed connect/send/recv (ECONNREFUSED for a refused connect)
    std::string protocol_error;  ///< set when the bytes received are not a valid response
    SteadyClock::time_point received_at{};  ///< when the response was complete

    /// The first header named `name` (case-insensitive).
    std::optional<std::string> Header(std::string_view name) const;
    /// True when some header `name` holds `token` in its comma-separated list
    /// (case-insensitive), e.g. HasToken("Connection", "close").
    bool HasToken(std::string_view name, std::string_view token) const;
    /// Status, headers, body (truncated) and flags, for assertion messages.
    std::string Describe() const;
};

/// What WaitForPeerClose observed.
enum class PeerClose {
    kClosed,        ///< orderly EOF (FIN)
    kReset,         ///< ECONNRESET
    kTimeout,       ///< still open at the deadline
    kDataReceived,  ///< the peer sent more bytes instead (kept for ReadResponse)
};
const char* ToString(PeerClose p);

/// One client connection. Movable, not copyable; closes on destruction.
class HttpConnection {
  public:
    /// Connects to 127.0.0.1:`port`. On failure the connection is not open and
    /// ConnectError() holds the errno (ECONNREFUSED when nothing listens).
    static HttpConnection Connect(std::uint16_t port, Deadline deadline = DeadlineIn(kMaxTestWait));

    HttpConnection() = default;
    HttpConnection(HttpConnection&& other) noexcept;
    HttpConnection& operator=(HttpConnection&& other) noexcept;
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;
    ~HttpConnection();

    bool IsOpen() const { return fd_ >= 0; }
    int ConnectError() const { return connect_error_; }
    bool Refused() const;
    std::uint16_t Port() const { return port_; }

    /// Writes all of `bytes`. Returns 0, or the errno that stopped it (EPIPE, ECONNRESET,
    /// ETIMEDOUT at the deadline, EBADF when not connected).
    int SendRaw(std::string_view bytes, Deadline deadline = DeadlineIn(kMaxTestWait));

    /// Sends a request built by BuildRequest. Returns like SendRaw.
    int SendRequest(std::string_view method, std::string_view target, const Headers& headers = {},
                    std::string_view body = {}, Deadline deadline = DeadlineIn(kMaxTestWait));

    /// Reads the next response. Bytes after it stay buffered for the next call (pipelining).
    HttpResponse ReadResponse(Deadline deadline = DeadlineIn(kMaxTestWait));

    /// SendRequest + ReadResponse.
    HttpResponse Request(std::string_view method, std::string_view target,
                         const Headers& headers = {}, std::string_view body = {},
                         Deadline deadline = DeadlineIn(kMaxTestWait));

    /// Waits until the peer closes the connection (or sends data, or resets it).
    PeerClose WaitForPeerClose(Deadline deadline = DeadlineIn(kMaxTestWait));

    /// Bytes received but not yet consumed by ReadResponse.
    const std::string& Buffered() const { return buffer_; }

    void Close();

  private:
    enum class Fill { kData, kEof, kReset, kTimeout, kError };
    /// Receives more bytes into buffer_ (waiting until the deadline).
    Fill FillBuffer(Deadline deadline, int* err);

    int fd_ = -1;
    int connect_error_ = 0;
    std::uint16_t port_ = 0;
    std::string buffer_;
    bool eof_ = false;
    bool reset_ = false;
};

/// The bytes of a request: request line, `Host: 127.0.0.1` unless given, the headers, and
/// `Content-Length` when the body is non-empty or the method is POST/PUT/PATCH (unless a
/// Content-Length or Transfer-Encoding header is given), then the body.
std::string BuildRequest(std::string_view method, std::string_view target,
                         const Headers& headers = {}, std::string_view body = {});

/// Connect + Request + close: one request on a fresh connection. When the connect fails the
/// response has status 0 and `error` set.
HttpResponse Fetch(std::uint16_t port, std::string_view method, std::string_view target,
                   const Headers& headers = {}, std::string_view body = {},
                   Deadline deadline = DeadlineIn(kMaxTestWait));

}  // namespace rollsafe::testing
