/// @file
/// @brief What one drill run measured: the data model shared by the verdict table, the JSON
/// report (`--report`) and the HTML page (`--html`).
///
/// Plain values only, filled by the drill and read by the renderers; every time is seconds
/// since the drill started (steady clock), every latency milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace rollsafe::drill {

/// How the run was configured, as the report states it ("what each layer buys").
struct RunConfig {
    std::string mode;         ///< "local" or "black-box"
    std::string scenario;     ///< rolling | drain | crash | all (local); "rollout-cmd" (black-box)
    std::string gateway;      ///< nginx | nginx-lua | "external"
    std::string target;       ///< the URL the load was sent to
    std::string store;        ///< the store URL (local mode)
    std::string rollout_cmd;  ///< black-box mode
    int replicas = 0;
    int concurrency = 0;
    std::int64_t requests_target = 0;
    double max_duration_s = 0;
    std::int64_t work_ms_min = 0, work_ms_max = 0;
    double ledger_share = 0;
    double endpoint_lag_min_s = 0, endpoint_lag_max_s = 0;
    std::string prestop;  ///< "http" (GET /lifecycle/prestop), "sleep:<d>" or "none"
    double grace_s = 0;
    double drain_delay_s = 0;
    int min_available = 0;
    bool client_retry = true;         ///< false with --no-retry
    bool gateway_retry = true;        ///< false with --gateway-retry off
    bool service_drain_delay = true;  ///< false with --no-drain-delay
    std::uint64_t seed = 0;
};

/// One point of a replica's life, for the timeline.
struct LifecycleEvent {
    double t_s = 0;
    std::string replica;  ///< e.g. "replica-4"
    /// started | ready | added (to the upstream) | removed (from the upstream) | prestop |
    /// sigterm | draining | closing | exited | killed
    std::string state;
    std::string detail;  ///< free text, e.g. "exit 0" or "lag 1.7 s"
};

/// Something the gateway did: "reload" (nginx) or "endpoints" (Lua, no reload).
struct GatewayEvent {
    double t_s = 0;
    std::string what;
    std::string detail;  ///< the endpoint list after the change
};

/// One scenario step (a rolling update, a node drain, a crash), for the timeline bands.
struct Phase {
    std::string name;  ///< rolling | drain | crash | rollout-cmd
    double start_s = 0, end_s = 0;
};

/// Per replica, as the verdict table lists it.
struct ReplicaSummary {
    std::string name;
    int pid = 0;
    double started_s = 0;
    bool terminated = false;   ///< the drill ended it (rollout, drain, crash or the final stop)
    bool by_scenario = false;  ///< ended by a scenario step, not by the end of the run
    double termination_start_s = -1;    ///< preStop or SIGTERM or SIGKILL; -1 when never
    double termination_to_exit_s = -1;  ///< -1 when it did not exit (or was never ended)
    std::int64_t served = 0;            ///< request log lines
    std::int64_t served_while_draining = 0;
    bool sigkilled = false;  ///< by the crash scenario or because the grace period ran out
    std::string exit;        ///< "exit 0", "signal 9", ...
};

/// Latency percentiles of acknowledged logical requests (first attempt → final answer).
struct Latency {
    std::int64_t count = 0;
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

/// One second of the run, by outcome of the logical requests that *ended* in it.
struct Bucket {
    double t_s = 0;                   ///< start of the second
    std::int64_t acknowledged = 0;    ///< ended with 2xx on the first attempt
    std::int64_t retried_ok = 0;      ///< ended with 2xx after at least one retry
    std::int64_t failed = 0;          ///< ended without 2xx
    std::int64_t retry_attempts = 0;  ///< attempts that were retried (ended in this second)
};

/// The counts the verdict rests on.
struct Verdict {
    std::int64_t requests = 0;                            ///< logical requests (one key each)
    std::int64_t acknowledged = 0;                        ///< got a 2xx
    std::int64_t retried = 0;                             ///< needed more than one attempt
    std::int64_t attempts = 0;                            ///< attempts in all
    std::int64_t failed = 0;                              ///< no 2xx in the end
    std::map<std::string, std::int64_t> failed_by_cause;  ///< e.g. "status 502", "deadline"
    std::int64_t lost = 0;                ///< acknowledged, but not stored (or not as acknowledged)
    std::int64_t duplicated = 0;          ///< keys whose effect is stored more than once
    std::int64_t half_done = 0;           ///< operations still in progress, or effects without one
    std::int64_t balance_mismatches = 0;  ///< accounts ≠ the sum of acknowledged entries
    /// Black-box mode cannot see the journal: half-done is not checked there.
    bool half_done_checked = true;
    std::vector<std::string> problems;  ///< one sentence each, at most a few hundred
    /// Local mode: problems `rollsafe audit` finds in rows that are not this run's and that
    /// were already in the store when the run started (an earlier run, another app). Reported,
    /// not counted above: they do not fail the run. `earlier` lists the first few sentences.
    std::int64_t earlier_problems = 0;
    std::vector<std::string> earlier;
    /// Set when the run itself went wrong, whatever the counts say: "the rollout command
    /// failed (exit 1)", "interrupted".
    std::string run_error;
    /// Nothing failed, was lost, duplicated or half-done, and at least one request was made (a
    /// run that sent nothing proves nothing).
    bool ok() const {
        return requests > 0 && run_error.empty() && failed == 0 && lost == 0 && duplicated == 0 &&
               half_done == 0 && balance_mismatches == 0;
    }
};

/// Local mode: what the store already held when the run started, read once the first
/// replicas were ready (so the schema exists) and before the load.
struct StoreBefore {
    bool read = false;  ///< false: not read (black-box mode) or unreadable (`error`)
    std::string error;
    std::int64_t operations = 0, resources = 0, entries = 0, accounts = 0;
    std::int64_t problems = 0;  ///< what `rollsafe audit` found in it then
    bool Empty() const { return operations + resources + entries + accounts == 0; }
};

/// Everything one run produced.
struct Report {
    std::string started_at;  ///< RFC 3339 UTC wall-clock time of the start
    RunConfig config;
    /// Random for every run, whatever the seed: names the run's ledger accounts
    /// (`drill-<run_id>-<i>`) and goes into every resource's `data`.
    std::string run_id;
    StoreBefore store_before;
    double duration_s = 0;
    double rollout_start_s = -1, rollout_end_s = -1;  ///< first phase start, last phase end
    Verdict verdict;
    Latency latency_overall, latency_during_rollout;
    /// Latency histogram of acknowledged requests: (upper bound in ms, count), ascending,
    /// log-spaced; the last bound is the max.
    std::vector<std::pair<double, std::int64_t>> latency_histogram;
    std::vector<Bucket> timeline;  ///< one per second from 0 to duration
    std::vector<Phase> phases;
    std::vector<LifecycleEvent> lifecycle;
    std::vector<GatewayEvent> gateway;
    std::vector<ReplicaSummary> replicas;
};

/// The report as one JSON document (pretty enough to diff: one key per line is not needed).
std::string ToJson(const Report& r);

/// The verdict table for a terminal: counts, latencies, per-replica lines, and the verdict
/// line ("drill: PASS — ..." or "drill: FAIL — ...").
std::string RenderTable(const Report& r);

/// One self-contained HTML page (inline CSS and SVG, no script, no network): the
/// configuration, the verdict, a timeline (requests per second by outcome, each replica's
/// lifecycle, gateway changes, scenario phases) and the latency distribution.
std::string RenderHtml(const Report& r);

}  // namespace rollsafe::drill
