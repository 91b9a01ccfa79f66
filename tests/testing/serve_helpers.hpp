/// @file
/// @brief Building blocks shared by the integration tests of `rollsafe serve`: request bodies,
/// polling probes with a deadline, and gtest predicates for problem+json responses.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/raw_http.hpp"

namespace rollsafe::testing {

/// Time given to a request sent on one connection to reach the server before the test acts
/// on another channel (a signal). Verified afterwards where the server reports it (the
/// lifecycle line's in_flight).
inline constexpr std::chrono::milliseconds kLetRequestArrive{300};

/// `{"data":<data_json>,"work_ms":<work_ms>}`, without "work_ms" when it is not given.
std::string ResourceBody(std::string_view data_json, std::optional<long long> work_ms = {});

/// Headers for a JSON POST with `Idempotency-Key: key`, or a fresh unique key when `key` is
/// empty.
Headers JsonHeaders(std::string_view key = {});

/// Opens a connection and sends `POST /resources` with `work_ms` (not waiting for the
/// answer). The connection is not open when connect or send failed.
HttpConnection StartPost(std::uint16_t port, long long work_ms, std::string_view key,
                         std::string_view data_json = R"({"probe":true})");

/// The body of a 201/200 resource response.
struct ResourceView {
    std::string id;
    JsonValue data;
    std::string created_at;
};
/// Parses `{"id","data","created_at"}`; nullopt when the body is not that shape.
std::optional<ResourceView> ParseResource(const HttpResponse& r);

/// Repeats `GET path` on fresh connections (1 ms apart) until one answers `status`; returns that
/// response, or nullopt at the deadline. The last other response is stored in `last`.
std::optional<HttpResponse> PollUntilStatus(std::uint16_t port, std::string_view path, int status,
                                            Deadline deadline, HttpResponse* last = nullptr);

/// Tries to connect every millisecond until a connect is refused; returns when that happened.
/// `last_error` receives the last connect error seen (0 if connects kept succeeding).
std::optional<SteadyClock::time_point> PollUntilRefused(std::uint16_t port, Deadline deadline,
                                                        int* last_error = nullptr);

/// The response is `status` with `Content-Type: application/problem+json` and a body
/// `{"type": string, "title": string, "status": <status>, "detail": string}`.
::testing::AssertionResult IsProblem(const HttpResponse& r, int status);

/// The parsed problem body (call after IsProblem succeeded).
std::optional<JsonValue> ProblemBody(const HttpResponse& r);

/// Runs `rollsafe audit --store sqlite:<db_path>` (or `--store <db_path>` when it is a
/// `postgres://` URL) to completion (bounded by kMaxTestWait).
/// Its contract: exit 0 when the store is clean, 1 with one JSON line per problem on stderr.
ProcessResult RunAudit(const std::string& db_path);

/// The sum of all samples of metric `name` (any labels) in Prometheus text, or nullopt
/// when there is none.
std::optional<double> SumMetric(std::string_view prometheus_text, std::string_view name);

}  // namespace rollsafe::testing
