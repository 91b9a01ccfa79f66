/// @file
/// @brief `rollsafe lint [--format text|json|sarif] PATH...`: checks Kubernetes manifests,
/// Kong declarative configs and nginx configurations against the invariants of a graceful
/// rollout (rules RS001-RS010, docs/lint.md).
///
/// PATH is a file, a directory (searched recursively for *.yaml, *.yml and *.conf) or `-`
/// (YAML on standard input); all paths are linted as one set. The findings go to standard
/// output in the chosen format. Exit status: 1 when any finding is an error (a file that
/// cannot be parsed is one), 0 otherwise (warnings only, or nothing found), 2 on a usage
/// error (no PATH, a PATH that does not exist, an unknown --format), with a message on
/// standard error.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace rollsafe::lint {

/// Adds the `lint` subcommand to `app`. When it is chosen, `*run` is set to the function that
/// runs it and returns the process exit status.
void AddLintCommand(CLI::App& app, std::function<int()>* run);

}  // namespace rollsafe::lint
