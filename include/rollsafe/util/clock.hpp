/// @file
/// @brief Injectable clocks, so that leases, drain timers and retry jitter can be tested
/// with fake time.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rollsafe::util {

/// A source of time. Implementations are thread-safe.
class Clock {
  public:
    using Steady = std::chrono::steady_clock::time_point;
    using Wall = std::chrono::system_clock::time_point;

    virtual ~Clock() = default;
    /// Monotonic time, for measuring intervals and deadlines.
    virtual Steady SteadyNow() const = 0;
    /// Wall-clock time, for timestamps stored or shown to people.
    virtual Wall WallNow() const = 0;
};

/// The real clocks of the process.
class SystemClock final : public Clock {
  public:
    Steady SteadyNow() const override { return std::chrono::steady_clock::now(); }
    Wall WallNow() const override { return std::chrono::system_clock::now(); }
    /// A process-wide instance.
    static const SystemClock& Instance();
};

/// Milliseconds since the Unix epoch on `clock`'s wall time (journal leases and timestamps).
std::int64_t UnixMillis(const Clock& clock);

/// RFC 3339 UTC timestamp with milliseconds, e.g. "2026-11-29T16:47:55.123Z".
std::string FormatRfc3339(Clock::Wall t);

}  // namespace rollsafe::util
