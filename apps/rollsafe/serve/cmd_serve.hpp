/// @file
/// @brief `rollsafe serve`: the reference API service.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace rollsafe::serve {

/// Adds the `serve` subcommand to `app`. When it is chosen, `*run` is set to the function
/// that runs it and returns the process exit status.
void AddServeCommand(CLI::App& app, std::function<int()>* run);

}  // namespace rollsafe::serve
