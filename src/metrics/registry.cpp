#include "rollsafe/metrics/registry.hpp"

#include <charconv>

namespace rollsafe::metrics {

void Registry::RecordRequest(const std::string& route, int status,
                             std::chrono::nanoseconds latency) {
    const double s = std::chrono::duration<double>(latency).count();
    std::lock_guard lock(mu_);
    ++requests_[{route, status}];
    for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i)
        if (s <= kLatencyBuckets[i]) ++bucket_counts_[i];
    ++latency_count_;
    latency_sum_ += s;
}

void Registry::SetDrainDuration(double seconds) {
    std::lock_guard lock(mu_);
    drain_seconds_ = seconds;
}

namespace {
std::string EscapeLabel(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}
// Shortest text that reads back as the same double, as the Prometheus clients print it
// ("0.1", not "0.10000000000000001"): dashboards select buckets by the label's text.
std::string Num(double v) {
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
    return std::string(buf, res.ptr);
}
}  // namespace

void Registry::CountLockEvent(const std::string& outcome) {
    std::lock_guard lock(mu_);
    ++lock_events_[outcome];
}

std::string Registry::RenderPrometheus() const {
    std::string out;
    std::lock_guard lock(mu_);
    out += "# HELP rollsafe_http_requests_total Finished HTTP requests by route and status.\n";
    out += "# TYPE rollsafe_http_requests_total counter\n";
    for (const auto& [k, n] : requests_)
        out += "rollsafe_http_requests_total{route=\"" + EscapeLabel(k.first) + "\",status=\"" +
               std::to_string(k.second) + "\"} " + std::to_string(n) + "\n";
    out +=
        "# HELP rollsafe_http_request_duration_seconds Time from a request's first byte to "
        "its response being ready.\n";
    out += "# TYPE rollsafe_http_request_duration_seconds histogram\n";
    for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i)
        out += "rollsafe_http_request_duration_seconds_bucket{le=\"" + Num(kLatencyBuckets[i]) +
               "\"} " + std::to_string(bucket_counts_[i]) + "\n";
    out += "rollsafe_http_request_duration_seconds_bucket{le=\"+Inf\"} " +
           std::to_string(latency_count_) + "\n";
    out += "rollsafe_http_request_duration_seconds_sum " + Num(latency_sum_) + "\n";
    out += "rollsafe_http_request_duration_seconds_count " + std::to_string(latency_count_) + "\n";
    out += "# HELP rollsafe_http_in_flight_requests Requests read but not yet answered.\n";
    out += "# TYPE rollsafe_http_in_flight_requests gauge\n";
    out += "rollsafe_http_in_flight_requests " + std::to_string(InFlight()) + "\n";
    out += "# HELP rollsafe_http_connections Open client connections.\n";
    out += "# TYPE rollsafe_http_connections gauge\n";
    out += "rollsafe_http_connections " + std::to_string(Connections()) + "\n";
    out +=
        "# HELP rollsafe_http_rejected_connections_total Connections refused over "
        "--max-connections.\n";
    out += "# TYPE rollsafe_http_rejected_connections_total counter\n";
    out += "rollsafe_http_rejected_connections_total " +
           std::to_string(rejected_connections_.load(std::memory_order_relaxed)) + "\n";
    if (!lock_events_.empty()) {
        out +=
            "# HELP rollsafe_account_lock_total Account lock events (--lock redis) by outcome.\n";
        out += "# TYPE rollsafe_account_lock_total counter\n";
        for (const auto& [outcome, n] : lock_events_)
            out += "rollsafe_account_lock_total{outcome=\"" + EscapeLabel(outcome) + "\"} " +
                   std::to_string(n) + "\n";
    }
    out +=
        "# HELP rollsafe_lifecycle_state 0 starting, 1 ready, 2 draining, 3 closing, 4 stopped.\n";
    out += "# TYPE rollsafe_lifecycle_state gauge\n";
    out += "rollsafe_lifecycle_state " + std::to_string(lifecycle_state_.load()) + "\n";
    out += "# HELP rollsafe_drain_duration_seconds Termination start to last request finished.\n";
    out += "# TYPE rollsafe_drain_duration_seconds gauge\n";
    out += "rollsafe_drain_duration_seconds " + Num(drain_seconds_) + "\n";
    return out;
}

}  // namespace rollsafe::metrics
