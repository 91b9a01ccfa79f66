#include "rollsafe/util/duration.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace rollsafe::util {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr std::int64_t kMaxMs = std::numeric_limits<std::int64_t>::max();

TEST(ParseDuration, ParsesEachUnit) {
    EXPECT_EQ(ParseDuration("250ms"), milliseconds(250));
    EXPECT_EQ(ParseDuration("5s"), seconds(5));
    EXPECT_EQ(ParseDuration("2m"), minutes(2));
    EXPECT_EQ(ParseDuration("3h"), hours(3));
    EXPECT_EQ(ParseDuration("1d"), days(1));
}

TEST(ParseDuration, ParsesZeroWithAUnit) {
    EXPECT_EQ(ParseDuration("0s"), milliseconds(0));
    EXPECT_EQ(ParseDuration("0ms"), milliseconds(0));
}

TEST(ParseDuration, ParsesLeadingZeros) { EXPECT_EQ(ParseDuration("007s"), seconds(7)); }

TEST(ParseDuration, AddsUpCompoundParts) {
    EXPECT_EQ(ParseDuration("1m30s"), minutes(1) + seconds(30));
    EXPECT_EQ(ParseDuration("1h30m"), hours(1) + minutes(30));
    EXPECT_EQ(ParseDuration("2s500ms"), seconds(2) + milliseconds(500));
    EXPECT_EQ(ParseDuration("1d2h3m4s5ms"),
              days(1) + hours(2) + minutes(3) + seconds(4) + milliseconds(5));
}

TEST(ParseDuration, RejectsBareNumberBecauseTheUnitIsRequired) {
    EXPECT_EQ(ParseDuration("5"), std::nullopt);
    EXPECT_EQ(ParseDuration("0"), std::nullopt);
    EXPECT_EQ(ParseDuration("1500"), std::nullopt);
}

TEST(ParseDuration, RejectsTrailingNumberWithoutUnitInCompound) {
    EXPECT_EQ(ParseDuration("1m30"), std::nullopt);
}

TEST(ParseDuration, RejectsUnknownUnits) {
    for (const char* text : {"5x", "5sec", "5us", "5ns", "5w", "5y", "5mss", "5hs"})
        EXPECT_EQ(ParseDuration(text), std::nullopt) << text;
}

TEST(ParseDuration, UnitsAreCaseSensitive) {
    for (const char* text : {"5S", "5MS", "5Ms", "2M", "1H", "1D"})
        EXPECT_EQ(ParseDuration(text), std::nullopt) << text;
}

TEST(ParseDuration, RejectsEmptyAndUnitWithoutNumber) {
    EXPECT_EQ(ParseDuration(""), std::nullopt);
    EXPECT_EQ(ParseDuration("s"), std::nullopt);
    EXPECT_EQ(ParseDuration("ms"), std::nullopt);
    EXPECT_EQ(ParseDuration("1ms s"), std::nullopt);
}

TEST(ParseDuration, RejectsNegativeAndSignedValues) {
    EXPECT_EQ(ParseDuration("-5s"), std::nullopt);
    EXPECT_EQ(ParseDuration("-0s"), std::nullopt);
    EXPECT_EQ(ParseDuration("1m-30s"), std::nullopt);
    EXPECT_EQ(ParseDuration("+5s"), std::nullopt);
}

TEST(ParseDuration, RejectsCommasWhitespaceAndSeparators) {
    for (const char* text : {"1,5s", " 5s", "5s ", "5 s", "1m 30s", "1m,30s", "5s\n"})
        EXPECT_EQ(ParseDuration(text), std::nullopt) << '"' << text << '"';
}

TEST(ParseDuration, AcceptsTheLargestRepresentableValue) {
    const std::string max_ms = std::to_string(kMaxMs) + "ms";
    EXPECT_EQ(ParseDuration(max_ms), milliseconds(kMaxMs));

    const std::int64_t max_days = kMaxMs / (24LL * 3600 * 1000);
    EXPECT_EQ(ParseDuration(std::to_string(max_days) + "d"), days(max_days));
}

TEST(ParseDuration, RejectsOverflowOfTheNumber) {
    // One more than INT64_MAX, and a number far beyond it.
    EXPECT_EQ(ParseDuration("9223372036854775808ms"), std::nullopt);
    EXPECT_EQ(ParseDuration("99999999999999999999999999s"), std::nullopt);
}

TEST(ParseDuration, RejectsOverflowWhenScalingByTheUnit) {
    const std::int64_t ms_per_day = 24LL * 3600 * 1000;
    EXPECT_EQ(ParseDuration(std::to_string(kMaxMs / ms_per_day + 1) + "d"), std::nullopt);
    EXPECT_EQ(ParseDuration(std::to_string(kMaxMs / 1000 + 1) + "s"), std::nullopt);
    // Fits in int64 as a number of hours, but not as milliseconds.
    EXPECT_EQ(ParseDuration(std::to_string(kMaxMs / 1000) + "h"), std::nullopt);
}

TEST(ParseDuration, RejectsOverflowOfTheSum) {
    EXPECT_EQ(ParseDuration(std::to_string(kMaxMs) + "ms1ms"), std::nullopt);
    const std::int64_t ms_per_day = 24LL * 3600 * 1000;
    const std::int64_t max_days = kMaxMs / ms_per_day;
    // max_days fits; adding one more day's worth of hours does not.
    EXPECT_EQ(ParseDuration(std::to_string(max_days) + "d24h"), std::nullopt);
}

TEST(FormatDuration, UsesTheLargestExactUnit) {
    EXPECT_EQ(FormatDuration(seconds(5)), "5s");
    EXPECT_EQ(FormatDuration(milliseconds(1500)), "1500ms");
    EXPECT_EQ(FormatDuration(minutes(2)), "2m");
    EXPECT_EQ(FormatDuration(hours(3)), "3h");
    EXPECT_EQ(FormatDuration(minutes(90)), "90m");
    EXPECT_EQ(FormatDuration(seconds(90)), "90s");
    EXPECT_EQ(FormatDuration(milliseconds(1)), "1ms");
}

// The header lists `d` among the units and promises the largest exact unit.
TEST(FormatDuration, UsesDaysForWholeDays) {
    EXPECT_EQ(FormatDuration(days(1)), "1d");
    EXPECT_EQ(FormatDuration(days(7)), "7d");
}

TEST(FormatDuration, RoundTripsThroughParseDuration) {
    std::vector<milliseconds> values = {milliseconds(0),
                                        milliseconds(1),
                                        milliseconds(999),
                                        seconds(1),
                                        milliseconds(1001),
                                        milliseconds(59'999),
                                        minutes(1),
                                        seconds(90),
                                        hours(1),
                                        minutes(90),
                                        days(1),
                                        days(1) + milliseconds(1),
                                        days(365),
                                        milliseconds(kMaxMs),
                                        milliseconds(kMaxMs - 1)};
    std::mt19937_64 gen(20260101);  // fixed seed: deterministic
    std::uniform_int_distribution<std::int64_t> any(0, kMaxMs);
    std::uniform_int_distribution<std::int64_t> small(0, 1000);
    for (int i = 0; i < 2000; ++i) {
        values.emplace_back(any(gen));
        // Also values that are exact multiples of each unit, which take the other branches.
        values.push_back(seconds(small(gen)));
        values.push_back(minutes(small(gen)));
        values.push_back(hours(small(gen)));
        values.push_back(days(small(gen)));
    }
    for (const auto v : values) {
        const std::string text = FormatDuration(v);
        EXPECT_EQ(ParseDuration(text), v) << "formatted as " << text;
    }
}

}  // namespace
TEST(ParseDuration, ParsesDecimalFractionsToTheMillisecond) {
    EXPECT_EQ(ParseDuration("0.5s"), milliseconds(500));
    EXPECT_EQ(ParseDuration("1.25m"), milliseconds(75'000));
    EXPECT_EQ(ParseDuration("2.0005s"), milliseconds(2000));  // truncated
    EXPECT_EQ(ParseDuration("1.5s200ms"), milliseconds(1700));
    EXPECT_FALSE(ParseDuration("1.s"));
    EXPECT_FALSE(ParseDuration(".5s"));
    EXPECT_FALSE(ParseDuration("1..5s"));
}

}  // namespace rollsafe::util
