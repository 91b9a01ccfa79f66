/// @file
/// @brief The drill's load: `concurrency` workers, each sending one logical POST after another
/// through the retrying client, every logical request with its own idempotency key.
///
/// A mix of `POST /resources` (with `work_ms` drawn from a range, so that some requests are
/// in flight for seconds when a replica is told to go) and `POST /accounts/{a}/entries` on a
/// few accounts whose names are unique to the run (each entry's `memo` is its key, so a
/// black-box audit can tell entries apart). Bounded: no request starts after StopIssuing(),
/// after `max_requests`, or after the hard deadline; Cancel() makes waiting clients give up
/// at once (Ctrl-C).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "drill/verdict.hpp"
#include "rollsafe/client/retry_policy.hpp"

namespace rollsafe::drill {

struct LoadOptions {
    std::string base_url;  ///< e.g. "http://127.0.0.1:41234"
    int concurrency = 32;
    std::int64_t max_requests = 100000;  ///< a hard cap on logical requests
    std::int64_t work_ms_min = 0, work_ms_max = 3000;
    double ledger_share = 0.5;  ///< the share of requests that are ledger entries
    int accounts = 8;
    std::string run_id;          ///< makes account names unique: "drill-<run_id>-<i>"
    client::RetryOptions retry;  ///< max_retries 0 for --no-retry
    std::chrono::milliseconds attempt_timeout{15000};
    std::uint64_t seed = 1;
    /// Seconds since the drill started, for LoadRecord times.
    std::function<double()> now_s;
};

/// Live counters for the progress line (all monotonic).
struct LoadCounters {
    std::atomic<std::int64_t> started{0};
    std::atomic<std::int64_t> acknowledged{0};
    std::atomic<std::int64_t> retried{0};  ///< logical requests that needed a retry so far
    std::atomic<std::int64_t> failed{0};
    std::atomic<std::int64_t> in_flight{0};
};

class Load {
  public:
    explicit Load(LoadOptions options);
    /// Cancels and joins.
    ~Load();
    Load(const Load&) = delete;
    Load& operator=(const Load&) = delete;

    /// Starts the workers.
    void Start();
    /// No new logical request starts; those in flight go on until they land or give up.
    void StopIssuing();
    /// Also makes requests waiting between attempts give up now ("cancelled").
    void Cancel();
    /// Waits for the workers to finish, up to `timeout`; true when they all did.
    bool Join(std::chrono::milliseconds timeout);

    const LoadCounters& Counters() const { return counters_; }
    /// Every finished logical request, in the order they finished. Call after Join.
    std::vector<LoadRecord> Records();

  private:
    void Worker(int index);

    LoadOptions options_;
    LoadCounters counters_;
    std::atomic<std::int64_t> next_{0};
    std::atomic<bool> stop_issuing_{false};
    std::atomic<bool> cancelled_{false};
    std::mutex mu_;
    std::condition_variable cv_;  ///< wakes sleeping clients on Cancel
    std::vector<LoadRecord> records_;
    std::vector<std::thread> workers_;
    std::atomic<int> running_{0};
};

}  // namespace rollsafe::drill
