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

std::string NewUuid(const RandomSource& random) {
    std::uint64_t hi = random();
    std::uint64_t lo = random();
    hi = (hi & ~0xF000ULL) | 0x4000ULL;                    // version 4
    lo = (lo & ~(0xC000000000000000ULL)) | 0x8000000000000000ULL;  // RFC 4122 variant
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx",
                  static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xFFFF),
                  static_cast<unsigned>(hi & 0xFFFF), static_cast<unsigned>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
    return buf;
}

}  // namespace rollsafe::util
