/// @file
/// @brief Injectable randomness for identifiers (and, later, retry jitter).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace rollsafe::util {

/// A source of 64 random bits. Must be thread-safe.
using RandomSource = std::function<std::uint64_t()>;

/// A thread-safe source seeded from the operating system (one generator per thread).
RandomSource SystemRandom();

/// A random (version 4) UUID in canonical lower-case text form.
std::string NewUuid(const RandomSource& random);

}  // namespace rollsafe::util
