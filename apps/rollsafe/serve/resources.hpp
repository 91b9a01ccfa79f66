/// @file
/// @brief The `/resources` endpoints of the reference API (the seed's api-service).
///
/// `POST /resources` `{"data": <any JSON>, "work_ms": 0..max}` → 201, `Location`,
/// `{"id","data","created_at"}`; `GET /resources/{id}` → 200 or 404. `work_ms` is the seed's
/// long operation: it waits without blocking other requests; if the server cancels the request
/// at its shutdown deadline, the operation is released and finished by a retry or the
/// recovery worker (see operations.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "rollsafe/http/router.hpp"
#include "rollsafe/store/store.hpp"
#include "rollsafe/util/clock.hpp"
#include "rollsafe/util/random.hpp"
#include "serve/operations.hpp"

namespace rollsafe::serve {

/// Deepest nesting of arrays and objects accepted in a request body (the body object itself
/// is level 1). Bounds the parser's stack use on hostile input.
inline constexpr int kMaxJsonDepth = 64;

/// The validated body of `POST /resources`.
struct CreateResource {
    std::string data_json;  ///< "data", re-serialized compactly
    std::int64_t work_ms = 0;
};

/// Validates headers and body of a create request. Throws http::ApiError: 415 when the
/// content type is not JSON, 400 naming the problem for malformed JSON, a missing "data",
/// an unknown field, or a `work_ms` that is not an integer in [0, max_work_ms].
CreateResource ParseCreateResource(const http::Request& req, std::int64_t max_work_ms);

/// The JSON representation returned by both endpoints.
std::string RenderResource(const store::Resource& r);

/// Adds `POST /resources` (exactly-once through the journal) and `GET /resources/{id}`.
void AddResourceRoutes(http::Router& router, OperationEnv& env);

/// Adds the ordered ledger: `POST /accounts/{account}/entries` `{"amount": non-zero int64,
/// "memo": string ≤ 256 bytes, "work_ms": int}` → 201 `{"entry_id","account","amount","seq",
/// "balance"}` (422 when the balance would overflow), and `GET /accounts/{account}` →
/// `{"account","balance","entries"}` or 404.
void AddAccountRoutes(http::Router& router, OperationEnv& env);

}  // namespace rollsafe::serve
