#include "rollsafe/util/random.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace rollsafe::util {
namespace {

/// Returns the given values in order, then fails the test if asked for more.
RandomSource Sequence(std::vector<std::uint64_t> values) {
    struct State {
        std::mutex mu;
        std::vector<std::uint64_t> values;
        std::size_t next = 0;
    };
    auto state = std::make_shared<State>();
    state->values = std::move(values);
    return [state]() -> std::uint64_t {
        std::lock_guard lock(state->mu);
        if (state->next >= state->values.size()) {
            ADD_FAILURE() << "random source asked for more than " << state->values.size()
                          << " values";
            return 0;
        }
        return state->values[state->next++];
    };
}

/// Returns `v` forever.
RandomSource Constant(std::uint64_t v) {
    return [v] { return v; };
}

/// The 16 bytes of a UUID in network order: the first 64-bit draw, then the second, each
/// big-endian (RFC 9562 field order).
std::array<std::uint8_t, 16> BytesOf(std::uint64_t first, std::uint64_t second) {
    std::array<std::uint8_t, 16> b{};
    for (int i = 0; i < 8; ++i) {
        b[i] = static_cast<std::uint8_t>(first >> (56 - 8 * i));
        b[8 + i] = static_cast<std::uint8_t>(second >> (56 - 8 * i));
    }
    return b;
}

/// Canonical 8-4-4-4-12 lower-case text of 16 bytes.
std::string Canonical(const std::array<std::uint8_t, 16>& b) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        out += kHex[b[i] >> 4];
        out += kHex[b[i] & 0x0F];
    }
    return out;
}

/// RFC 9562 section 5.4: version 4 in the high nibble of byte 6, variant 0b10 in the two high
/// bits of byte 8; every other bit comes from the random input.
std::string ExpectedV4(std::uint64_t first, std::uint64_t second) {
    auto b = BytesOf(first, second);
    b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | 0x40);
    b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);
    return Canonical(b);
}

bool IsCanonicalLowerHex(const std::string& s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;
        const char c = s[i];
        if (dash_pos != (c == '-')) return false;
        if (!dash_pos && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

TEST(NewUuid, AllZeroBitsGiveOnlyVersionAndVariant) {
    EXPECT_EQ(NewUuid(Constant(0)), "00000000-0000-4000-8000-000000000000");
}

TEST(NewUuid, AllOneBitsAreClearedOnlyWhereVersionAndVariantSay) {
    EXPECT_EQ(NewUuid(Constant(~0ULL)), "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

TEST(NewUuid, PlacesTheInputBitsInOrderAroundVersionAndVariant) {
    // Worked by hand: the 0xC nibble under the version becomes 4, and the top bits 0b11 of
    // 0xF under the variant become 0b10 (0xB).
    EXPECT_EQ(NewUuid(Sequence({0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL})),
              "01234567-89ab-4def-bedc-ba9876543210");
}

TEST(NewUuid, MatchesAnIndependentByteWiseConstructionForManyInputs) {
    std::uint64_t x = 0x9E3779B97F4A7C15ULL;  // splitmix64, written out here
    auto next = [&x] {
        std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    };
    for (int i = 0; i < 1000; ++i) {
        const std::uint64_t a = next(), b = next();
        const std::string id = NewUuid(Sequence({a, b}));
        ASSERT_EQ(id, ExpectedV4(a, b)) << "inputs " << std::hex << a << ' ' << b;
    }
}

TEST(NewUuid, IsCanonicalLowerCaseText) {
    const std::string id = NewUuid(Sequence({0xABCDEFABCDEFABCDULL, 0xABCDEFABCDEFABCDULL}));
    EXPECT_TRUE(IsCanonicalLowerHex(id)) << id;
}

TEST(NewUuid, SystemRandomGivesTenThousandDistinctVersion4Ids) {
    const RandomSource random = SystemRandom();
    std::set<std::string> seen;
    for (int i = 0; i < 10'000; ++i) {
        const std::string id = NewUuid(random);
        ASSERT_TRUE(IsCanonicalLowerHex(id)) << id;
        ASSERT_EQ(id[14], '4') << id;
        ASSERT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
        ASSERT_TRUE(seen.insert(id).second) << "duplicate " << id << " after " << i;
    }
    EXPECT_EQ(seen.size(), 10'000u);
}

TEST(NewUuid, SystemRandomIsDistinctAcrossThreads) {
    // SystemRandom keeps one generator per thread; each must be seeded differently.
    const RandomSource random = SystemRandom();
    constexpr int kThreads = 4;
    constexpr int kPerThread = 2'500;
    std::vector<std::vector<std::string>> ids(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) ids[t].push_back(NewUuid(random));
        });
    for (auto& th : threads) th.join();
    std::set<std::string> seen;
    for (const auto& v : ids) seen.insert(v.begin(), v.end());
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

// ---- version 7 ----

/// The first 48 bits of the UUID (its first 12 hex digits) as a number.
std::uint64_t TimestampField(const std::string& id) {
    const std::string hex = id.substr(0, 8) + id.substr(9, 4);
    return std::stoull(hex, nullptr, 16);
}

TEST(NewUuidV7, CarriesTheMillisecondsVersion7AndVariant) {
    const std::uint64_t ms = 0x0123456789ABULL;  // fits in 48 bits
    const std::string id = NewUuidV7(Constant(0), ms);
    EXPECT_TRUE(IsCanonicalLowerHex(id)) << id;
    EXPECT_EQ(TimestampField(id), ms);
    EXPECT_EQ(id, "01234567-89ab-7000-8000-000000000000");
}

TEST(NewUuidV7, FillsAllRandomBitsFromTheSource) {
    // 74 random bits: 12 after the version nibble, 62 after the variant.
    const std::string id = NewUuidV7(Constant(~0ULL), 1'767'225'600'000ULL);
    EXPECT_EQ(id.substr(14), "7fff-bfff-ffffffffffff");
    EXPECT_EQ(TimestampField(id), 1'767'225'600'000ULL);
}

TEST(NewUuidV7, LaterMillisecondsSortLaterWhateverTheRandomBits) {
    const std::uint64_t t0 = 1'767'225'600'000ULL;
    // Earlier id has all random bits set, later one none: order must still follow time.
    const std::string earlier = NewUuidV7(Constant(~0ULL), t0);
    const std::string later = NewUuidV7(Constant(0), t0 + 1);
    EXPECT_LT(earlier, later);
}

TEST(NewUuidV7, SystemRandomIdsInTheSameMillisecondAreDistinct) {
    const RandomSource random = SystemRandom();
    std::set<std::string> seen;
    for (int i = 0; i < 10'000; ++i) seen.insert(NewUuidV7(random, 1'767'225'600'000ULL));
    EXPECT_EQ(seen.size(), 10'000u);
}

}  // namespace
}  // namespace rollsafe::util
