/// @file
/// @brief Process metrics in Prometheus text exposition format.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace rollsafe::metrics {

/// Counters, a latency histogram and gauges for one process. All methods are thread-safe.
class Registry {
  public:
    /// Upper bounds (seconds) of the latency histogram buckets.
    static constexpr std::array<double, 14> kLatencyBuckets{
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

    /// Counts one finished request by route template (e.g. "/resources/{id}") and status, and
    /// adds its latency to the histogram.
    void RecordRequest(const std::string& route, int status, std::chrono::nanoseconds latency);

    void AddInFlight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }
    std::int64_t InFlight() const { return in_flight_.load(std::memory_order_relaxed); }
    void AddConnections(int delta) { connections_.fetch_add(delta, std::memory_order_relaxed); }
    std::int64_t Connections() const { return connections_.load(std::memory_order_relaxed); }
    /// Numeric lifecycle state (0 starting … 4 stopped).
    void SetLifecycleState(int state) { lifecycle_state_.store(state, std::memory_order_relaxed); }
    /// Seconds from termination start to the last in-flight request finishing.
    void SetDrainDuration(double seconds);
    void CountRejectedConnection() {
        rejected_connections_.fetch_add(1, std::memory_order_relaxed);
    }

    /// Counts one event of the account lock (`--lock redis`) by outcome: "acquired", "busy"
    /// (gave up waiting), "unavailable" (the lock service did not answer), "expired" (held too
    /// long to write safely: taken again) or "fenced" (the store refused a stale token).
    void CountLockEvent(const std::string& outcome);

    /// Renders every metric in Prometheus text format 0.0.4.
    std::string RenderPrometheus() const;

  private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, std::uint64_t> requests_;
    std::map<std::string, std::uint64_t> lock_events_;
    std::array<std::uint64_t, kLatencyBuckets.size()> bucket_counts_{};
    std::uint64_t latency_count_ = 0;
    double latency_sum_ = 0;
    double drain_seconds_ = 0;
    std::atomic<std::int64_t> in_flight_{0};
    std::atomic<std::int64_t> connections_{0};
    std::atomic<int> lifecycle_state_{0};
    std::atomic<std::uint64_t> rejected_connections_{0};
};

}  // namespace rollsafe::metrics
