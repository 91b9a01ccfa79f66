/// @file
/// @brief Parsing and formatting of human-written durations ("250ms", "5s", "2m", "1h30m").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace rollsafe::util {

/// Parses a duration made of one or more `<integer><unit>` parts, unit one of
/// `ms`, `s`, `m`, `h`, `d` (e.g. "1m30s"). A bare integer is rejected: the unit is required so
/// that `--drain-delay 5` can never silently mean 5 ms. Returns nullopt on any malformed input,
/// a negative value or overflow. A number may have a decimal fraction ("0.5s", "1.25m"),
/// truncated to the millisecond.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);

/// Formats a duration the way ParseDuration reads it, using the largest exact unit ("5s",
/// "1500ms", "2m").
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace rollsafe::util
