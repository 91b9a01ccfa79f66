/// @file
/// @brief Maps (method, path) to handlers. Pure: request in, response out.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <string>
#include <vector>

#include "rollsafe/http/context.hpp"
#include "rollsafe/http/message.hpp"

namespace rollsafe::http {

/// A handler computes a response from a request. It never sees the socket. It may throw
/// ApiError (mapped to problem+json); any other exception becomes a 500.
using Handler = std::function<boost::asio::awaitable<Response>(Request&, RequestContext&)>;

/// An error with an HTTP status, turned into problem+json in one place (the server).
struct ApiError : std::runtime_error {
    ApiError(int status, std::string detail, Headers extra = {})
        : std::runtime_error(std::move(detail)), status(status), headers(std::move(extra)) {}
    int status;
    Headers headers;
};

/// Route table. Patterns are literal segments and `{name}` captures of one segment each,
/// e.g. "/accounts/{account}/entries". Not thread-safe to modify; safe to Match concurrently
/// once built.
class Router {
  public:
    void Add(std::string method, std::string pattern, Handler handler);

    struct Match {
        const Handler* handler = nullptr;  ///< null when nothing matched
        std::string route;                 ///< the pattern that matched (for metrics)
        int status = 0;                    ///< 404 or 405 when handler is null
        std::string allow;                 ///< "GET, POST" for 405
    };

    /// Finds the handler for `req`, filling req.params. A path that matches a pattern under a
    /// different method gives 405 with the allowed methods.
    Match Find(Request& req) const;

  private:
    struct Route {
        std::string method;
        std::string pattern;
        std::vector<std::string> segments;
        Handler handler;
    };
    std::vector<Route> routes_;
};

}  // namespace rollsafe::http
