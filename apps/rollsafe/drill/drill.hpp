/// @file
/// @brief One drill run: replicas and a gateway started (local mode) or an existing deployment
/// targeted (black-box mode), load driven through the retrying client while replicas are
/// rolled, drained or killed the way Kubernetes does it, then an audit into a Report.
///
/// Local mode, per scenario step, as kubelet and the endpoint controller do it:
/// - rolling (maxSurge 1, maxUnavailable 0): for each old replica, start a surge replica, wait
///   for its `/readyz`, add it to the upstream; then, in parallel, remove the old one from the
///   upstream after a random endpoint-propagation lag while its termination runs: preStop
///   (`GET /lifecycle/prestop`, a sleep, or none) → SIGTERM → grace → SIGKILL.
/// - drain: every replica of one simulated node (the first ⌈N/2⌉) is evicted at once, as far
///   as `min_available` allows, and replacements start at the same time.
/// - crash: one replica SIGKILLed without warning; it leaves the upstream after the lag; a
///   replacement is started and added once ready.
/// - all: rolling, drain, crash, with the replicas settled in between.
/// The load runs until every step is done and `requests` logical requests were made, or
/// `max_duration` passed. Then the drill waits for the recovery worker to finish what killed
/// replicas left half-done, stops everything and audits the store. The store may hold rows of
/// earlier runs or other apps: it is read once before the load, and the verdict judges the
/// run's own keys and accounts (plus store-wide problems that were not there before).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "drill/gateway.hpp"
#include "drill/report.hpp"

namespace rollsafe::drill {

struct DrillOptions {
    // --- local mode
    int replicas = 3;
    std::string scenario = "all";  ///< rolling | drain | crash | all
    std::string store;             ///< empty: a fresh SQLite file in the work directory
    GatewayMode gateway = GatewayMode::kNginxLua;
    bool gateway_retry = true;
    std::chrono::milliseconds endpoint_lag_min{500}, endpoint_lag_max{3000};
    std::string prestop = "http";  ///< "http", "sleep:<duration>" or "none"
    std::chrono::milliseconds grace{30000};
    std::chrono::milliseconds drain_delay{5000};  ///< the replicas' --drain-delay
    std::chrono::milliseconds shutdown_timeout{20000};
    std::chrono::milliseconds lease{3000};  ///< the replicas' --lease
    int min_available = 1;
    int replica_threads = 1;
    // --- black-box mode (target non-empty)
    std::string target;
    std::string rollout_cmd;
    std::chrono::milliseconds duration{0};  ///< black-box: load time; 0: until the command ends
    // --- both
    int concurrency = 32;
    std::int64_t requests = 3000;  ///< at least this many logical requests
    std::chrono::milliseconds max_duration{180000};
    std::int64_t work_ms_min = 0, work_ms_max = 3000;
    double ledger_share = 0.5;
    bool client_retry = true;
    std::uint64_t seed = 0;  ///< 0: random
    std::string work_dir;    ///< logs, nginx prefix, database; must exist
    std::string binary;      ///< the rollsafe binary for replicas; empty: this executable
};

/// Live state for the progress line.
struct Progress {
    double elapsed_s = 0, max_s = 0;
    std::int64_t requests = 0, acknowledged = 0, retried = 0, failed = 0, in_flight = 0;
    std::string phase;     ///< what the rollout is doing now
    std::string replicas;  ///< e.g. "r1 ready · r4 starting · r2 draining"
};

/// `url` with any password replaced by `***` (a userinfo `user:secret@` and a `password=`
/// parameter), so that the reports can show the store URL:
/// `postgres://app:***@db/rollsafe?sslmode=require&password=***`.
std::string RedactStoreUrl(std::string url);

/// Runs the drill. `interrupted` is polled (Ctrl-C): when it turns true the run stops
/// issuing, abandons waiting requests, ends every process it started and returns what it has
/// (the verdict then fails with cause "interrupted"). `progress` is called about four times a
/// second from the calling thread. `notice` (optional, calling thread) gets one sentence for
/// what the user should know while the run goes on: the store already held rows before the
/// load (local mode), or the recovery wait ended with rows still in progress. Throws
/// std::runtime_error when the drill cannot start (nginx missing, a replica that does not
/// become ready, a bad store URL).
Report RunDrill(const DrillOptions& options, const std::atomic<bool>& interrupted,
                const std::function<void(const Progress&)>& progress,
                const std::function<void(const std::string&)>& notice = {});

}  // namespace rollsafe::drill
