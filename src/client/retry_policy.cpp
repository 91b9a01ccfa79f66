#include "rollsafe/client/retry_policy.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace rollsafe::client {

using std::chrono::milliseconds;

const char* ToString(TransportError e) {
    switch (e) {
        case TransportError::kConnect:
            return "connect failed";
        case TransportError::kTimeout:
            return "timeout";
        case TransportError::kConnectionLost:
            return "connection lost";
        case TransportError::kProtocol:
            return "protocol error";
    }
    return "unknown";
}

const char* ToString(StopReason r) {
    switch (r) {
        case StopReason::kSucceeded:
            return "succeeded";
        case StopReason::kFinalResponse:
            return "final response";
        case StopReason::kNotRetryable:
            return "not retryable";
        case StopReason::kRetriesExhausted:
            return "retries exhausted";
        case StopReason::kDeadline:
            return "deadline";
    }
    return "unknown";
}

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!value.empty() && blank(value.front())) value.remove_prefix(1);
    while (!value.empty() && blank(value.back())) value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    std::int64_t seconds = 0;
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max() / 10 - 9;
    for (char c : value) {
        if (c < '0' || c > '9') return std::nullopt;  // an HTTP-date, or garbage
        if (seconds < kMax) seconds = seconds * 10 + (c - '0');
    }
    return std::chrono::seconds(std::min<std::int64_t>(seconds, kMax / 1000));
}

bool IsRetryableStatus(int status) {
    switch (status) {
        case 408:  // Request Timeout: the server gave up waiting for us
        case 409:  // the same key is still running
        case 429:  // Too Many Requests
        case 502:
        case 503:
        case 504:
            return true;
        default:
            return false;
    }
}

namespace {

Decision Stop(StopReason reason, std::string why) {
    Decision d;
    d.reason = reason;
    d.why = std::move(why);
    return d;
}

std::string Describe(const Outcome& o) {
    if (o.error) return ToString(*o.error);
    return std::to_string(o.status);
}

/// min(cap, base * 2^(attempt - 1)) without overflow.
milliseconds Ceiling(const RetryOptions& opt, int attempt) {
    const std::int64_t base = std::max<std::int64_t>(opt.backoff_base.count(), 0);
    const std::int64_t cap = std::max<std::int64_t>(opt.backoff_cap.count(), 0);
    const int doublings = std::max(attempt - 1, 0);
    if (base == 0) return milliseconds(0);
    if (doublings >= 62 || base > (cap >> doublings)) return milliseconds(cap);
    return milliseconds(base << doublings);
}

}  // namespace

Decision Decide(const RetryOptions& opt, int attempt, const Outcome& outcome, milliseconds elapsed,
                const util::RandomSource& random) {
    if (outcome.error) {
        if (*outcome.error == TransportError::kProtocol)
            return Stop(StopReason::kNotRetryable,
                        "the answer is not HTTP/1.1; retrying would not change it");
    } else if (outcome.status >= 200 && outcome.status <= 299) {
        return Stop(StopReason::kSucceeded, std::to_string(outcome.status) + " is a success");
    } else if (!IsRetryableStatus(outcome.status)) {
        return Stop(StopReason::kFinalResponse,
                    std::to_string(outcome.status) + " is not retryable");
    }
    if (attempt > opt.max_retries)
        return Stop(StopReason::kRetriesExhausted,
                    Describe(outcome) + " after " + std::to_string(attempt) + " attempt" +
                        (attempt == 1 ? "" : "s") + ", the limit of " +
                        std::to_string(opt.max_retries) + " retr" +
                        (opt.max_retries == 1 ? "y" : "ies") + " is reached");

    const milliseconds ceiling = Ceiling(opt, attempt);
    const auto span = static_cast<std::uint64_t>(ceiling.count()) + 1;
    Decision d;
    d.retry = true;
    d.delay = milliseconds(static_cast<std::int64_t>(random() % span));
    if (!outcome.error && outcome.retry_after) {
        if (auto ra = ParseRetryAfter(*outcome.retry_after)) {
            const milliseconds floor = std::min<milliseconds>(*ra, opt.retry_after_cap);
            if (floor > d.delay) {
                d.delay = floor;
                d.from_retry_after = true;
            }
        }
    }
    const std::string wait =
        std::to_string(d.delay.count()) + " ms" + (d.from_retry_after ? " (Retry-After)" : "");
    if (elapsed + d.delay >= opt.deadline)
        return Stop(StopReason::kDeadline, Describe(outcome) + ", and the deadline of " +
                                               std::to_string(opt.deadline.count()) +
                                               " ms would pass during the " + wait + " wait");
    d.why = Describe(outcome) + " is retryable; retry in " + wait;
    return d;
}

}  // namespace rollsafe::client
