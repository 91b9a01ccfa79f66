/// @file
/// @brief The one CLI11 validator for duration flags of every subcommand, so that a bad value
/// is a usage error (exit 2) naming the flag, with the same sentence everywhere.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "rollsafe/util/duration.hpp"

namespace rollsafe::cli {

/// Accepts what util::ParseDuration reads ("500ms", "1.5s", "1m30s"); with `positive`, not
/// zero either.
inline CLI::Validator Duration(bool positive = false) {
    return CLI::Validator(
        [positive](std::string& v) -> std::string {
            const auto d = util::ParseDuration(v);
            if (d && (!positive || d->count() > 0)) return {};
            return "'" + v + "' is not a " + (positive ? "positive " : "") +
                   "duration: use a number with a unit, e.g. 500ms, 5s, 2m";
        },
        "DURATION");
}

}  // namespace rollsafe::cli
