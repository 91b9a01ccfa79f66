/// @file
/// @brief A small JSON reader for tests: enough to check response bodies and log lines
/// without pulling Boost.JSON into the test build.
///
/// Not a validating parser for production use: it accepts RFC 8259 JSON (objects, arrays,
/// strings with escapes including surrogate pairs, numbers, true/false/null) and rejects
/// anything else, including trailing garbage.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace rollsafe::testing {

class JsonValue {
  public:
    using Array = std::vector<JsonValue>;
    /// Members in document order; duplicates are kept (Find returns the first).
    using Object = std::vector<std::pair<std::string, JsonValue>>;

    struct Number {
        double value = 0;
        std::string text;  ///< as written in the document
    };

    JsonValue() = default;  ///< null
    explicit JsonValue(bool b) : v_(b) {}
    explicit JsonValue(Number n) : v_(std::move(n)) {}
    explicit JsonValue(std::string s) : v_(std::move(s)) {}
    explicit JsonValue(Array a) : v_(std::move(a)) {}
    explicit JsonValue(Object o) : v_(std::move(o)) {}

    bool IsNull() const { return std::holds_alternative<std::monostate>(v_); }
    bool IsBool() const { return std::holds_alternative<bool>(v_); }
    bool IsNumber() const { return std::holds_alternative<Number>(v_); }
    bool IsString() const { return std::holds_alternative<std::string>(v_); }
    bool IsArray() const { return std::holds_alternative<Array>(v_); }
    bool IsObject() const { return std::holds_alternative<Object>(v_); }

    /// Accessors; calling the wrong one throws std::bad_variant_access.
    bool AsBool() const { return std::get<bool>(v_); }
    double AsNumber() const { return std::get<Number>(v_).value; }
    const std::string& AsString() const { return std::get<std::string>(v_); }
    const Array& AsArray() const { return std::get<Array>(v_); }
    const Object& AsObject() const { return std::get<Object>(v_); }

    /// The member `key` of an object; nullptr when this is not an object or has no such key.
    const JsonValue* Find(std::string_view key) const;

    /// `Find(key)` as a string, when it is one.
    std::optional<std::string> GetString(std::string_view key) const;
    /// `Find(key)` as a number, when it is one.
    std::optional<double> GetNumber(std::string_view key) const;

    /// Structural equality: objects compare as unordered maps, numbers by value.
    friend bool operator==(const JsonValue& a, const JsonValue& b);

    /// Compact serialization (for failure messages).
    std::string Dump() const;

  private:
    std::variant<std::monostate, bool, Number, std::string, Array, Object> v_;
};

/// Parses `text` as one JSON document. On failure returns nullopt and, when `error` is given,
/// stores a description with the byte offset.
std::optional<JsonValue> ParseJson(std::string_view text, std::string* error = nullptr);

}  // namespace rollsafe::testing
