/// @file
/// @brief A manually advanced util::Clock for deterministic tests (style rule 11).
///
/// Time stands still until the test calls Advance(); both the steady and the wall clock move
/// together by the same amount. Thread-safe, like every util::Clock.
#pragma once

#include <chrono>
#include <mutex>

#include "rollsafe/util/clock.hpp"

namespace rollsafe::testing {

class FakeClock final : public util::Clock {
  public:
    /// Steady time starts one hour after the steady epoch, so that "never set" (the epoch) and
    /// "set at the start" can be told apart. Wall time starts at 2026-01-01T00:00:00Z.
    static constexpr std::chrono::hours kSteadyStart{1};
    static constexpr std::chrono::seconds kWallStart{1'767'225'600};

    FakeClock() = default;
    FakeClock(Steady steady, Wall wall) : steady_(steady), wall_(wall) {}

    Steady SteadyNow() const override {
        std::lock_guard lock(mu_);
        return steady_;
    }
    Wall WallNow() const override {
        std::lock_guard lock(mu_);
        return wall_;
    }

    /// Moves both clocks forward by `d` (which must not be negative).
    template <class Rep, class Period>
    void Advance(std::chrono::duration<Rep, Period> d) {
        std::lock_guard lock(mu_);
        steady_ += std::chrono::duration_cast<Steady::duration>(d);
        wall_ += std::chrono::duration_cast<Wall::duration>(d);
    }

  private:
    mutable std::mutex mu_;
    Steady steady_{std::chrono::duration_cast<Steady::duration>(kSteadyStart)};
    Wall wall_{std::chrono::duration_cast<Wall::duration>(kWallStart)};
};

}  // namespace rollsafe::testing
