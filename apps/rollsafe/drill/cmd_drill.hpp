/// @file
/// @brief `rollsafe drill`: rolls, drains and kills replicas behind a real nginx under POST
/// load (or drives load at an existing deployment while a rollout command runs), then audits
/// every write and prints a verdict.
///
/// Standard output: the verdict table, ending with `drill: PASS — ...` or `drill: FAIL — ...`
/// and the paths of the reports written. Standard error: the progress line (redrawn on a
/// terminal, a plain line every 5 s otherwise) and errors. Exit status: 0 when every
/// acknowledged write is stored exactly once and complete, nothing is half-done, every
/// balance adds up and no request failed; 1 otherwise or when the drill could not run; 2 on a
/// usage error; 130 when interrupted (SIGINT/SIGTERM), after every process it started is gone.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace rollsafe::drill {

/// Adds the `drill` subcommand to `app`. When it is chosen, `*run` is set to the function
/// that runs it and returns the process exit status.
void AddDrillCommand(CLI::App& app, std::function<int()>* run);

}  // namespace rollsafe::drill
