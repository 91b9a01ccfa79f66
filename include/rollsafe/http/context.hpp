/// @file
/// @brief What a handler may do besides computing its response: wait, learn that the server
/// has cancelled it, and await work done on other threads (the store).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace rollsafe::http {

/// Per-request context handed to a handler. Lives on the connection's single thread; a
/// handler must not share it with other threads.
class RequestContext {
  public:
    virtual ~RequestContext() = default;

    /// True once the server cancelled this request (shutdown deadline or a second signal).
    /// A cancelled handler must not commit anything new and should return quickly. If what
    /// it returns is a 2xx (its commit had already returned), the client gets it; any other
    /// answer becomes 503 + Retry-After. The connection is closed after it either way.
    virtual bool Cancelled() const = 0;

    /// Waits `d`, or less if the request is cancelled. Returns true if the full time passed,
    /// false if cancelled.
    virtual boost::asio::awaitable<bool> Sleep(std::chrono::milliseconds d) = 0;

    /// The replica's name (for `owner` columns and logs).
    virtual const std::string& ReplicaName() const = 0;
};

/// Adapts a callback-style asynchronous call to an awaitable. `start` receives a callback
/// that may be invoked from any thread, exactly once; the awaiting coroutine resumes on its
/// own executor with the value. `start` runs when the result is awaited.
///
/// Deliberately not a coroutine itself: GCC 12 destroys by-value coroutine parameters that
/// are moved into init-captures twice, so nothing here takes a callable by value across a
/// suspension point.
template <class T, class Start>
auto AwaitCallback(Start&& start) {
    namespace asio = boost::asio;
    return asio::async_initiate<decltype(asio::use_awaitable), void(T)>(
        [](auto handler, auto begin) {
            using H = decltype(handler);
            auto ex = asio::get_associated_executor(handler);
            auto h = std::make_shared<H>(std::move(handler));
            begin(std::function<void(T)>([h, ex](T v) {
                asio::post(ex, [h, v = std::move(v)]() mutable { (*h)(std::move(v)); });
            }));
        },
        asio::use_awaitable, std::forward<Start>(start));
}

}  // namespace rollsafe::http
