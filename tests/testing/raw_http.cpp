#include "testing/raw_http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rollsafe::testing {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

int PollMs(Deadline deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now())
            .count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>(left + 1, 60'000));
}

/// Parses a chunked body starting at data[0]. Returns true when complete (body in `body`,
/// bytes used in `consumed`); false when more bytes are needed or on error (`error` set).
bool DecodeChunked(std::string_view data, std::string& body, std::size_t& consumed,
                   std::string& error) {
    body.clear();
    std::size_t pos = 0;
    for (;;) {
        const auto eol = data.find("\r\n", pos);
        if (eol == std::string_view::npos) return false;
        std::string_view size_line = data.substr(pos, eol - pos);
        if (const auto semi = size_line.find(';'); semi != std::string_view::npos)
            size_line = size_line.substr(0, semi);
        size_line = Trim(size_line);
        if (size_line.empty()) {
            error = "empty chunk size line";
            return false;
        }
        std::size_t size = 0;
        for (const char c : size_line) {
            int d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                d = c - 'A' + 10;
            else {
                error = "bad chunk size '" + std::string(size_line) + "'";
                return false;
            }
            size = size * 16 + static_cast<std::size_t>(d);
        }
        pos = eol + 2;
        if (size == 0) {
            // Trailer section: header lines until an empty line.
            for (;;) {
                const auto tl = data.find("\r\n", pos);
                if (tl == std::string_view::npos) return false;
                const bool empty = tl == pos;
                pos = tl + 2;
                if (empty) {
                    consumed = pos;
                    return true;
                }
            }
        }
        if (data.size() < pos + size + 2) return false;
        body.append(data.substr(pos, size));
        if (data.substr(pos + size, 2) != "\r\n") {
            error = "chunk not followed by CRLF";
            return false;
        }
        pos += size + 2;
    }
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (Lower(a[i]) != Lower(b[i])) return false;
    return true;
}

std::optional<std::string> HttpResponse::Header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (EqualsIgnoreCase(k, name)) return v;
    return std::nullopt;
}

bool HttpResponse::HasToken(std::string_view name, std::string_view token) const {
    for (const auto& [k, v] : headers) {
        if (!EqualsIgnoreCase(k, name)) continue;
        std::string_view rest = v;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            if (EqualsIgnoreCase(Trim(rest.substr(0, comma)), token)) return true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return false;
}

std::string HttpResponse::Describe() const {
    std::string s;
    if (status != 0) {
        s += "HTTP " + std::to_string(status) + " " + reason + "\n";
        for (const auto& [k, v] : headers) s += "  " + k + ": " + v + "\n";
        constexpr std::size_t kMaxBody = 2000;
        s += "  body (" + std::to_string(body.size()) + " bytes): " + body.substr(0, kMaxBody) +
             (body.size() > kMaxBody ? "..." : "") + "\n";
    } else {
        s += "no response\n";
    }
    s += "  [complete=" + std::to_string(complete) +
         " closed_by_peer=" + std::to_string(closed_by_peer) + " reset=" + std::to_string(reset) +
         " timed_out=" + std::to_string(timed_out);
    if (error != 0) s += " error=" + std::string(std::strerror(error));
    if (!protocol_error.empty()) s += " protocol_error=" + protocol_error;
    s += "]";
    return s;
}

const char* ToString(PeerClose p) {
    switch (p) {
        case PeerClose::kClosed:
            return "closed (FIN)";
        case PeerClose::kReset:
            return "reset (RST)";
        case PeerClose::kTimeout:
            return "still open at the deadline";
        case PeerClose::kDataReceived:
            return "peer sent more data";
    }
    return "?";
}

HttpConnection HttpConnection::Connect(std::uint16_t port, Deadline deadline) {
    HttpConnection c;
    c.port_ = port;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        c.connect_error_ = errno;
        return c;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        for (;;) {
            rc = ::poll(&p, 1, PollMs(deadline));
            if (rc < 0 && errno == EINTR) continue;
            break;
        }
        if (rc == 0) {
            ::close(fd);
            c.connect_error_ = ETIMEDOUT;
            return c;
        }
        int so_error = 0;
        socklen_t len = sizeof so_error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error != 0) {
            ::close(fd);
            c.connect_error_ = so_error;
            return c;
        }
    } else if (rc != 0) {
        c.connect_error_ = errno;
        ::close(fd);
        return c;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.fd_ = fd;
    return c;
}

HttpConnection::HttpConnection(HttpConnection&& other) noexcept { *this = std::move(other); }

HttpConnection& HttpConnection::operator=(HttpConnection&& other) noexcept {
    if (this != &other) {
        Close();
        fd_ = std::exchange(other.fd_, -1);
        connect_error_ = other.connect_error_;
        port_ = other.port_;
        buffer_ = std::move(other.buffer_);
        eof_ = other.eof_;
        reset_ = other.reset_;
    }
    return *this;
}

HttpConnection::~HttpConnection() { Close(); }

void HttpConnection::Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

bool HttpConnection::Refused() const { return connect_error_ == ECONNREFUSED; }

int HttpConnection::SendRaw(std::string_view bytes, Deadline deadline) {
    if (fd_ < 0) return EBADF;
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd_, POLLOUT, 0};
            const int rc = ::poll(&p, 1, PollMs(deadline));
            if (rc == 0 && SteadyClock::now() >= deadline) return ETIMEDOUT;
            continue;
        }
        return errno;
    }
    return 0;
}

int HttpConnection::SendRequest(std::string_view method, std::string_view target,
                                const Headers& headers, std::string_view body, Deadline deadline) {
    return SendRaw(BuildRequest(method, target, headers, body), deadline);
}

HttpConnection::Fill HttpConnection::FillBuffer(Deadline deadline, int* err) {
    if (reset_) return Fill::kReset;
    if (eof_) return Fill::kEof;
    if (fd_ < 0) {
        *err = EBADF;
        return Fill::kError;
    }
    for (;;) {
        pollfd p{fd_, POLLIN, 0};
        const int rc = ::poll(&p, 1, PollMs(deadline));
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) {
            if (SteadyClock::now() >= deadline) return Fill::kTimeout;
            continue;
        }
        char buf[65536];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) {
            buffer_.append(buf, static_cast<std::size_t>(n));
            return Fill::kData;
        }
        if (n == 0) {
            eof_ = true;
            return Fill::kEof;
        }
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNRESET) {
            reset_ = true;
            return Fill::kReset;
        }
        *err = errno;
        return Fill::kError;
    }
}

HttpResponse HttpConnection::ReadResponse(Deadline deadline) {
    HttpResponse r;
    // Reports why more bytes did not come; returns false when the caller should give up.
    auto fill = [&](bool eof_completes) -> bool {
        int err = 0;
        switch (FillBuffer(deadline, &err)) {
            case Fill::kData:
                return true;
            case Fill::kEof:
                r.closed_by_peer = true;
                if (!eof_completes && r.protocol_error.empty() && !buffer_.empty())
                    r.protocol_error = "connection closed in the middle of a response";
                return false;
            case Fill::kReset:
                r.reset = true;
                return false;
            case Fill::kTimeout:
                r.timed_out = true;
                return false;
            case Fill::kError:
                r.error = err;
                return false;
        }
        return false;
    };

    for (;;) {
        std::size_t header_end;
        while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
            if (!fill(false)) return r;
        }
        r = HttpResponse{};
        std::string_view head(buffer_.data(), header_end);
        const auto first_eol = head.find("\r\n");
        std::string_view status_line = head.substr(0, first_eol);
        // "HTTP/1.1 200 OK"
        if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12 ||
            status_line[8] != ' ') {
            r.protocol_error = "bad status line '" + std::string(status_line) + "'";
            return r;
        }
        int status = 0;
        for (std::size_t i = 9; i < 12; ++i) {
            if (status_line[i] < '0' || status_line[i] > '9') {
                r.protocol_error = "bad status code in '" + std::string(status_line) + "'";
                return r;
            }
            status = status * 10 + (status_line[i] - '0');
        }
        r.status = status;
        r.reason = std::string(Trim(status_line.substr(12)));
        std::string_view rest =
            first_eol == std::string_view::npos ? std::string_view{} : head.substr(first_eol + 2);
        while (!rest.empty()) {
            const auto eol = rest.find("\r\n");
            std::string_view line = rest.substr(0, eol);
            rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
            const auto colon = line.find(':');
            if (colon == std::string_view::npos) {
                r.protocol_error = "header line without ':' '" + std::string(line) + "'";
                return r;
            }
            r.headers.emplace_back(std::string(line.substr(0, colon)),
                                   std::string(Trim(line.substr(colon + 1))));
        }
        const std::size_t body_start = header_end + 4;

        if (status >= 100 && status < 200) {  // interim response: skip it
            buffer_.erase(0, body_start);
            continue;
        }

        if (r.HasToken("Transfer-Encoding", "chunked")) {
            for (;;) {
                std::size_t consumed = 0;
                std::string error;
                if (DecodeChunked(std::string_view(buffer_).substr(body_start), r.body, consumed,
                                  error)) {
                    buffer_.erase(0, body_start + consumed);
                    break;
                }
                if (!error.empty()) {
                    r.protocol_error = error;
                    return r;
                }
                if (!fill(false)) return r;
            }
        } else if (const auto cl = r.Header("Content-Length")) {
            std::size_t length = 0;
            if (cl->empty() || cl->find_first_not_of("0123456789") != std::string::npos) {
                r.protocol_error = "bad Content-Length '" + *cl + "'";
                return r;
            }
            length = std::stoull(*cl);
            while (buffer_.size() < body_start + length)
                if (!fill(false)) return r;
            r.body = buffer_.substr(body_start, length);
            buffer_.erase(0, body_start + length);
        } else if (status == 204 || status == 304) {
            buffer_.erase(0, body_start);
        } else {
            // Body delimited by the end of the connection.
            while (fill(true)) {
            }
            if (!r.closed_by_peer) return r;  // reset, timeout or error before EOF
            r.body = buffer_.substr(body_start);
            buffer_.clear();
        }
        r.complete = true;
        r.closed_by_peer = r.closed_by_peer || eof_;
        r.received_at = SteadyClock::now();
        return r;
    }
}

HttpResponse HttpConnection::Request(std::string_view method, std::string_view target,
                                     const Headers& headers, std::string_view body,
                                     Deadline deadline) {
    if (const int err = SendRequest(method, target, headers, body, deadline); err != 0) {
        // The server may have answered and closed before reading everything; show that.
        HttpResponse r = ReadResponse(std::min(deadline, DeadlineIn(std::chrono::seconds(1))));
        if (!r.complete) {
            r.error = err;
            r.reset = r.reset || err == ECONNRESET || err == EPIPE;
        }
        return r;
    }
    return ReadResponse(deadline);
}

PeerClose HttpConnection::WaitForPeerClose(Deadline deadline) {
    if (!buffer_.empty()) return PeerClose::kDataReceived;
    int err = 0;
    switch (FillBuffer(deadline, &err)) {
        case Fill::kData:
            return PeerClose::kDataReceived;
        case Fill::kEof:
            return PeerClose::kClosed;
        case Fill::kReset:
            return PeerClose::kReset;
        case Fill::kTimeout:
            return PeerClose::kTimeout;
        case Fill::kError:
            return err == EPIPE ? PeerClose::kReset : PeerClose::kTimeout;
    }
    return PeerClose::kTimeout;
}

std::string BuildRequest(std::string_view method, std::string_view target, const Headers& headers,
                         std::string_view body) {
    bool has_host = false;
    bool has_framing = false;
    for (const auto& [k, v] : headers) {
        has_host = has_host || EqualsIgnoreCase(k, "Host");
        has_framing = has_framing || EqualsIgnoreCase(k, "Content-Length") ||
                      EqualsIgnoreCase(k, "Transfer-Encoding");
    }
    std::string s;
    s.reserve(128 + body.size());
    s.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
    if (!has_host) s += "Host: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) s.append(k).append(": ").append(v).append("\r\n");
    const bool method_has_body = method == "POST" || method == "PUT" || method == "PATCH";
    if (!has_framing && (!body.empty() || method_has_body))
        s += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    s += "\r\n";
    s.append(body);
    return s;
}

HttpResponse Fetch(std::uint16_t port, std::string_view method, std::string_view target,
                   const Headers& headers, std::string_view body, Deadline deadline) {
    HttpConnection c = HttpConnection::Connect(port, deadline);
    if (!c.IsOpen()) {
        HttpResponse r;
        r.error = c.ConnectError();
        return r;
    }
    return c.Request(method, target, headers, body, deadline);
}

}  // namespace rollsafe::testing
