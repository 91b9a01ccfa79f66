/// @file
/// @brief Exactly-once execution of the reference API's POSTs over the operation journal:
/// claim → (reserve → work → finalize) → replay, shared by request handlers and the recovery
/// worker. See docs/journal.md.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "rollsafe/http/context.hpp"
#include "rollsafe/http/message.hpp"
#include "rollsafe/store/store.hpp"
#include "rollsafe/util/clock.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::serve {

/// Everything an operation needs from its process. All references must outlive the handlers.
struct OperationEnv {
    store::Store& store;
    const util::Clock& clock;
    util::RandomSource random;
    std::chrono::milliseconds lease{10'000};
    int retry_after_seconds = 1;
    std::int64_t max_work_ms = 600'000;
    /// Test hook: called with "reserved", "worked" or "completed" right after that recovery
    /// point is committed (the integration tests SIGKILL the process there). May be empty.
    std::function<void(const std::string& point)> after_commit;
};

/// A validated request, parsed from the client's body or from the journal row on recovery.
struct Plan {
    enum class Kind { kResource, kEntry };
    Kind kind = Kind::kResource;
    std::int64_t work_ms = 0;
    std::string data_json;  ///< resource: the "data" value
    std::string account;    ///< entry
    std::int64_t amount = 0;
    std::string memo;
};

/// Parses and validates a POST body for `path` ("/resources" or "/accounts/{a}/entries").
/// Throws http::ApiError (400) naming the problem. Content type is checked by the caller.
Plan ParsePlan(const std::string& path, const std::string& body, std::int64_t max_work_ms);

/// The exactly-once POST handler: validates Idempotency-Key (400 when missing or bad) and the
/// content type (415), claims the key, then replays (`Idempotent-Replayed: true`), answers 409
/// + Retry-After (in progress elsewhere) or 422 (same key, different request), or runs the
/// operation to completion. A cancelled request releases its claim before returning.
boost::asio::awaitable<http::Response> HandleIdempotentPost(OperationEnv& env, http::Request& req,
                                                            http::RequestContext& ctx);

/// Drives an operation we own (claimed or taken over) from its recovery point to completion
/// and returns the stored response. If `ctx` is cancelled mid-way the claim is released and
/// a 503 is returned; if ownership was lost (our lease expired and another replica took
/// over) a 409 is returned. Used by the handler and by the recovery worker.
/// `op` must stay alive until the returned awaitable completes.
boost::asio::awaitable<http::Response> RunOperation(OperationEnv& env, const store::Operation& op,
                                                    http::RequestContext& ctx);

/// Serialises a response for the journal and back.
std::string HeadersToJson(const http::Headers& h);
http::Headers HeadersFromJson(const std::string& json);

}  // namespace rollsafe::serve
