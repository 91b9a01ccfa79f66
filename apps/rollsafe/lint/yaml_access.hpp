/// @file
/// @brief Type-checked reads from yaml-cpp nodes that never throw, for linting documents that
/// are valid YAML but may have any shape (a string where a map is expected, a list of
/// numbers where a list of maps is expected).
///
/// yaml-cpp's `operator[]` throws on a scalar and creates "zombie" nodes whose accessors
/// throw, and its `Node::operator=` overwrites the node assigned to (inside its document)
/// instead of rebinding: nothing in rollsafe lint uses either (use reset() to rebind). Every
/// function here accepts any node, including a default-constructed (null) one. Not thread-safe for
/// one node (yaml-cpp nodes share state); distinct documents may be read from distinct threads.
#pragma once

#include <yaml-cpp/yaml.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rollsafe::lint {

/// A map entry: the key node carries the line of `key:`, the value node its value.
struct Entry {
    YAML::Node key;
    YAML::Node value;
    bool found = false;
    explicit operator bool() const { return found; }
};

/// The entry `key` of `map`; not found when `map` is not a map or has no such key (the first
/// one wins when a key repeats).
Entry Get(const YAML::Node& map, std::string_view key);

/// The value at `path` below `node` (each step a map key); a null node when any step is
/// missing or not a map.
YAML::Node At(const YAML::Node& node, std::initializer_list<std::string_view> path);

/// The text of a scalar; nullopt for maps, sequences and null.
std::optional<std::string> Str(const YAML::Node& node);

/// A scalar that is a whole decimal integer ("45", "-1"); nullopt otherwise.
std::optional<long long> Int(const YAML::Node& node);

/// A scalar that is a finite decimal number ("60", "1.5"); nullopt otherwise.
std::optional<double> Number(const YAML::Node& node);

/// The elements of a sequence; empty for anything else.
std::vector<YAML::Node> Items(const YAML::Node& node);

/// The 1-based line where `node` starts; 0 when yaml-cpp knows none.
int Line(const YAML::Node& node);

/// The 1-based column where `node` starts; 0 when yaml-cpp knows none.
int Column(const YAML::Node& node);

/// "a map", "a list", "a string 'x'", "null": what a node is, for messages.
std::string Describe(const YAML::Node& node);

}  // namespace rollsafe::lint
