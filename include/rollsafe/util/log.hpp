/// @file
/// @brief Structured logging: one JSON object per line on standard output.
#pragma once

#include <boost/json/object.hpp>

namespace rollsafe::util {

/// Writes `fields` as one JSON line to standard output, with `"ts"` (RFC 3339 UTC) and
/// `"event"` first. Thread-safe; each line is written with one write(2) so lines from
/// several threads (or processes sharing the file) never interleave.
void LogEvent(std::string_view event, boost::json::object fields = {});

}  // namespace rollsafe::util
