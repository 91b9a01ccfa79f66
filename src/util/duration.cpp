#include "rollsafe/util/duration.hpp"

#include <cctype>
#include <cstdint>
#include <limits>

namespace rollsafe::util {

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
    if (text.empty()) return std::nullopt;
    std::int64_t total = 0;
    std::size_t i = 0;
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    while (i < text.size()) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) return std::nullopt;
        std::int64_t n = 0;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
            const int digit = text[i] - '0';
            if (n > (kMax - digit) / 10) return std::nullopt;
            n = n * 10 + digit;
            ++i;
        }
        // A decimal fraction ("0.5s", "1.25m"), kept to the millisecond.
        std::int64_t frac = 0, frac_scale = 1;
        if (i < text.size() && text[i] == '.') {
            ++i;
            if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i])))
                return std::nullopt;
            while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
                if (frac_scale < 1'000'000'000) {
                    frac = frac * 10 + (text[i] - '0');
                    frac_scale *= 10;
                }
                ++i;
            }
        }
        std::size_t j = i;
        while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
        const std::string_view unit = text.substr(i, j - i);
        i = j;
        std::int64_t mult = 0;
        if (unit == "ms")
            mult = 1;
        else if (unit == "s")
            mult = 1000;
        else if (unit == "m")
            mult = 60'000;
        else if (unit == "h")
            mult = 3'600'000;
        else if (unit == "d")
            mult = 86'400'000;
        else
            return std::nullopt;
        if (n > (kMax - total) / mult) return std::nullopt;
        total += n * mult;
        const std::int64_t frac_ms = frac * mult / frac_scale;  // < mult: no overflow
        if (frac_ms > kMax - total) return std::nullopt;
        total += frac_ms;
    }
    return std::chrono::milliseconds(total);
}

std::string FormatDuration(std::chrono::milliseconds d) {
    const auto ms = d.count();
    if (ms != 0 && ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

}  // namespace rollsafe::util
