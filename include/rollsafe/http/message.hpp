/// @file
/// @brief Plain request and response values that handlers see. No sockets, no Beast types.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rollsafe::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

/// A fully read request. Header names keep their case as sent; lookups ignore case.
struct Request {
    std::string method;  ///< "GET", "POST", ...
    std::string target;  ///< as sent, e.g. "/resources/abc?x=1"
    std::string path;    ///< target without the query, percent-decoding not applied
    Headers headers;
    std::string body;
    /// Values captured by the route pattern, e.g. {"id", "abc"} for "/resources/{id}".
    std::vector<std::pair<std::string, std::string>> params;

    /// First header with this name (case-insensitive), if any.
    std::optional<std::string_view> Header(std::string_view name) const;
    /// Route parameter by name; empty when absent.
    std::string_view Param(std::string_view name) const;
};

/// A response to be written. `Content-Length`, `Date`, `Connection` and drain headers are
/// added by the server; handlers set status, body and their own headers.
struct Response {
    int status = 200;
    Headers headers;
    std::string body;

    /// `application/json` response.
    static Response Json(int status, std::string body);
    /// `text/plain; charset=utf-8` response.
    static Response Text(int status, std::string body);
    /// RFC 9457 `application/problem+json` response: {"type","title","status","detail"}.
    /// `title` defaults to the standard reason phrase of `status`.
    static Response Problem(int status, std::string_view detail, std::string_view title = {});

    /// Adds a header (no de-duplication).
    Response& With(std::string name, std::string value) {
        headers.emplace_back(std::move(name), std::move(value));
        return *this;
    }
    std::optional<std::string_view> Header(std::string_view name) const;
};

/// Standard reason phrase, e.g. "Unprocessable Content" for 422.
std::string_view ReasonPhrase(int status);

/// Case-insensitive ASCII comparison of header names.
bool IEquals(std::string_view a, std::string_view b);

}  // namespace rollsafe::http
