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

/// A time-ordered (version 7, RFC 9562) UUID: 48 bits of Unix milliseconds, then 74 random
/// bits. Ids made later sort later, so B-tree inserts append instead of touching a random page
/// each (with random ids every insert dirtied its own 4 KiB page in the SQLite WAL).
std::string NewUuidV7(const RandomSource& random, std::uint64_t unix_ms);

}  // namespace rollsafe::util
