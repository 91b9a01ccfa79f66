/// @file
/// @brief `rollsafe post URL`: one JSON POST that lands exactly once, retried with one
/// idempotency key through connection failures, timeouts, 502/503/504, 408, 409 and 429.
///
/// Prints the final response body on standard output; with `--verbose`, one line per attempt
/// on standard error. Exit status: 0 on a 2xx answer; 1 on a final non-2xx answer or when the
/// retries or the deadline ran out (the reason is on standard error); 2 on a usage error (bad
/// URL, `--data` that is not JSON, a bad header or key).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace rollsafe::post {

/// Adds the `post` subcommand to `app`. When it is chosen, `*run` is set to the function
/// that runs it and returns the process exit status.
void AddPostCommand(CLI::App& app, std::function<int()>* run);

}  // namespace rollsafe::post
