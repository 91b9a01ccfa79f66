/// @file
/// @brief The retrying client's decision, as a pure function: after an attempt, retry (and
/// after how long) or stop (and why).
///
/// Deterministic: the only randomness is the injected util::RandomSource, and time enters only
/// as the elapsed duration the caller passes in. Retrying a POST is safe only because every
/// attempt carries the same `Idempotency-Key`: the server's journal turns the retries into one
/// effect (a completed key is replayed, a running one answers 409 + Retry-After). The policy
/// therefore retries every outcome where the request may not have run, may still be running,
/// or may have run without the answer reaching us, and nothing else:
///
/// | outcome | decision |
/// |---|---|
/// | 2xx | stop: kSucceeded |
/// | connect failed, timeout, connection lost before a complete response | retry |
/// | 502, 503, 504 (gateway or replica going away; nothing or a released lease behind it) | retry |
/// | 408, 429 (the server asks us to come back) | retry |
/// | 409 (the same key is still running; its result is replayed once it completes) | retry |
/// | any other status (400, 404, 422, 500, 3xx, ...) | stop: kFinalResponse |
/// | a response that is not HTTP | stop: kNotRetryable |
///
/// A retry is also refused when `max_retries` retries were made (kRetriesExhausted) or when
/// its delay would end at or after the deadline (kDeadline): the client never sleeps past it.
///
/// The delay is full jitter (AWS architecture blog, "Exponential Backoff And Jitter"):
/// uniform in [0, min(backoff_cap, backoff_base * 2^(attempt - 1))]. A `Retry-After` in
/// delta-seconds is a floor on it, itself capped at `retry_after_cap` so that a server cannot
/// park the client for an hour; an HTTP-date or anything unparseable is ignored.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "rollsafe/util/random.hpp"

namespace rollsafe::client {

/// Why an attempt ended without a complete HTTP response.
enum class TransportError {
    kConnect,         ///< the TCP connect failed (refused, unreachable)
    kTimeout,         ///< the attempt's time ran out (connect, send or receive)
    kConnectionLost,  ///< reset or closed before the response was complete
    kProtocol,        ///< the peer answered bytes that are not a valid HTTP/1.1 response
};

/// Lower-case name for messages ("connect", "timeout", "connection lost", "protocol error").
const char* ToString(TransportError e);

/// What one attempt produced: a transport error, or an HTTP status with its `Retry-After`.
struct Outcome {
    std::optional<TransportError> error;     ///< set when there is no response
    int status = 0;                          ///< the response status, 0 with `error`
    std::optional<std::string> retry_after;  ///< the raw `Retry-After` value, if any

    static Outcome Transport(TransportError e) { return Outcome{e, 0, std::nullopt}; }
    static Outcome Response(int status, std::optional<std::string> retry_after = std::nullopt) {
        return Outcome{std::nullopt, status, std::move(retry_after)};
    }
};

/// The knobs of the policy. All durations must be non-negative.
struct RetryOptions {
    /// Retries after the first attempt (so at most max_retries + 1 attempts).
    int max_retries = 5;
    /// From the start of the first attempt; no attempt starts at or after it.
    std::chrono::milliseconds deadline{30'000};
    /// The backoff ceiling of the first retry; it doubles per attempt up to backoff_cap.
    std::chrono::milliseconds backoff_base{100};
    std::chrono::milliseconds backoff_cap{5'000};
    /// The most a `Retry-After` can make the client wait.
    std::chrono::milliseconds retry_after_cap{10'000};
};

/// Why the client stopped.
enum class StopReason {
    kSucceeded,         ///< a 2xx response
    kFinalResponse,     ///< a response that retrying cannot change (4xx, 500, 3xx, ...)
    kNotRetryable,      ///< a transport outcome that retrying cannot change (kProtocol)
    kRetriesExhausted,  ///< max_retries retries were made
    kDeadline,          ///< the next attempt could not start before the deadline
};

/// Lower-case name for messages ("succeeded", "final response", ...).
const char* ToString(StopReason r);

/// The policy's answer for one attempt.
struct Decision {
    bool retry = false;
    /// With `retry`: how long to wait before the next attempt.
    std::chrono::milliseconds delay{0};
    /// With `retry`: the delay is the server's `Retry-After` (capped), not the jitter.
    bool from_retry_after = false;
    /// Without `retry`: why not.
    StopReason reason = StopReason::kSucceeded;
    /// One human-readable sentence: "503 is retryable; retry in 1000 ms (Retry-After)",
    /// "400 is not retryable", "the deadline of 20000 ms would pass during a 1000 ms wait".
    std::string why;
};

/// `Retry-After` as delta-seconds (RFC 9110 §10.2.3: 1*DIGIT, surrounding blanks allowed).
/// Returns nullopt for an HTTP-date, a negative or malformed value; values too large to
/// represent saturate (the caller caps them anyway).
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value);

/// Whether an HTTP status may be retried with the same idempotency key (see the table above).
bool IsRetryableStatus(int status);

/// Decides what to do after attempt number `attempt` (1 = the first) ended with `outcome`,
/// `elapsed` after the first attempt started. Draws from `random` only when it retries.
/// Precondition: attempt >= 1, elapsed >= 0. Thread-safe if `random` is; never throws other
/// than what `random` throws.
Decision Decide(const RetryOptions& options, int attempt, const Outcome& outcome,
                std::chrono::milliseconds elapsed, const util::RandomSource& random);

}  // namespace rollsafe::client
