/// @file
/// @brief The recovery worker (the seed's "background process that scans incomplete
/// transactions") and journal retention.
#pragma once

#include <chrono>
#include <functional>

#include "rollsafe/http/server.hpp"
#include "serve/operations.hpp"

namespace rollsafe::serve {

struct RecoveryOptions {
    std::chrono::milliseconds interval{2000};         ///< between scans
    std::chrono::milliseconds retention{86'400'000};  ///< completed rows older than this go
    int scan_batch = 16;                              ///< operations taken over per scan, at most
    int retention_batch = 500;                        ///< rows deleted per scan, at most
    /// Whether to scan now; false while the replica is draining, so it does not adopt
    /// operations it would hand back moments later. Empty: always.
    std::function<bool()> should_scan;
};

/// The scan loop, to run with `server.Spawn(task, /*counted=*/false)`. Every interval it takes
/// over (in one transaction, so two replicas never take the same row) the in_progress
/// operations whose lease expired — their owner was SIGKILLed or its node died — and drives
/// each to completion as a counted background task; then deletes a batch of completed rows
/// older than the retention. Stops when the server starts closing.
http::BackgroundTask RecoveryLoop(OperationEnv& env, http::Server& server, RecoveryOptions options);

}  // namespace rollsafe::serve
