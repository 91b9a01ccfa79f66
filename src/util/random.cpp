#include "rollsafe/util/random.hpp"

#include <cstdio>
#include <random>

namespace rollsafe::util {

RandomSource SystemRandom() {
    return [] {
        thread_local std::mt19937_64 gen{std::random_device{}()};
        return gen();
    };
}

namespace {
std::string Format(std::uint64_t hi, std::uint64_t lo) {
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                  static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                  static_cast<unsigned>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
    return buf;
}
}  // namespace

std::string NewUuid(const RandomSource& random) {
    std::uint64_t hi = random();
    std::uint64_t lo = random();
    hi = (hi & ~0xF000ULL) | 0x4000ULL;                          // version 4
    lo = (lo & ~0xC000000000000000ULL) | 0x8000000000000000ULL;  // RFC 4122 variant
    return Format(hi, lo);
}

std::string NewUuidV7(const RandomSource& random, std::uint64_t unix_ms) {
    std::uint64_t hi = (unix_ms & 0xFFFFFFFFFFFFULL) << 16;
    hi |= 0x7000ULL | (random() & 0x0FFFULL);  // version 7
    std::uint64_t lo = random();
    lo = (lo & ~0xC000000000000000ULL) | 0x8000000000000000ULL;  // RFC 4122 variant
    return Format(hi, lo);
}

}  // namespace rollsafe::util
