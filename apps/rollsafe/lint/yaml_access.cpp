#include "lint/yaml_access.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace rollsafe::lint {

Entry Get(const YAML::Node& map, std::string_view key) {
    if (!map.IsMap()) return {};
    for (auto it = map.begin(); it != map.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == key)
            return Entry{it->first, it->second, true};
    }
    return {};
}

YAML::Node At(const YAML::Node& node, std::initializer_list<std::string_view> path) {
    YAML::Node cur = node;
    for (std::string_view step : path) {
        Entry e = Get(cur, step);
        if (!e) return YAML::Node();
        // reset() rebinds; yaml-cpp's operator= would overwrite the node `cur` refers to,
        // i.e. the caller's document.
        cur.reset(e.value);
    }
    return cur;
}

std::optional<std::string> Str(const YAML::Node& node) {
    if (!node.IsScalar()) return std::nullopt;
    return node.Scalar();
}

std::optional<long long> Int(const YAML::Node& node) {
    if (!node.IsScalar()) return std::nullopt;
    const std::string& s = node.Scalar();
    long long v = 0;
    const char* begin = s.data();
    const char* end = s.data() + s.size();
    if (begin != end && *begin == '+') ++begin;
    auto [ptr, ec] = std::from_chars(begin, end, v);
    if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
    return v;
}

std::optional<double> Number(const YAML::Node& node) {
    if (!node.IsScalar()) return std::nullopt;
    const std::string& s = node.Scalar();
    if (s.empty()) return std::nullopt;
    // strtod rather than from_chars<double>: GCC 12's libstdc++ has both, but strtod also
    // takes a leading '+', which YAML allows.
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

std::vector<YAML::Node> Items(const YAML::Node& node) {
    std::vector<YAML::Node> out;
    if (!node.IsSequence()) return out;
    for (auto it = node.begin(); it != node.end(); ++it) out.push_back(*it);
    return out;
}

int Line(const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    return m.is_null() || m.line < 0 ? 0 : m.line + 1;
}

int Column(const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    return m.is_null() || m.column < 0 ? 0 : m.column + 1;
}

std::string Describe(const YAML::Node& node) {
    if (node.IsMap()) return "a map";
    if (node.IsSequence()) return "a list";
    if (node.IsScalar()) {
        std::string s = node.Scalar();
        if (s.size() > 40) s = s.substr(0, 37) + "...";
        return "'" + s + "'";
    }
    return "nothing";
}

}  // namespace rollsafe::lint
