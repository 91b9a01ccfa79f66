#include "testing/mini_json.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace rollsafe::testing {
namespace {

class Parser {
  public:
    explicit Parser(std::string_view text) : text_(text) {}

    JsonValue ParseDocument() {
        JsonValue v = ParseValue(0);
        SkipWs();
        if (pos_ != text_.size()) Fail("trailing characters after the JSON value");
        return v;
    }

  private:
    [[noreturn]] void Fail(const std::string& what) {
        throw std::runtime_error(what + " at offset " + std::to_string(pos_));
    }

    void SkipWs() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                       text_[pos_] == '\n' || text_[pos_] == '\r'))
            ++pos_;
    }

    char Peek() {
        if (pos_ >= text_.size()) Fail("unexpected end of input");
        return text_[pos_];
    }

    void Expect(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) Fail("expected '" + std::string(word) + "'");
        pos_ += word.size();
    }

    JsonValue ParseValue(int depth) {
        if (depth > 200) Fail("nesting too deep");
        SkipWs();
        const char c = Peek();
        switch (c) {
            case '{':
                return ParseObject(depth);
            case '[':
                return ParseArray(depth);
            case '"':
                return JsonValue(ParseString());
            case 't':
                Expect("true");
                return JsonValue(true);
            case 'f':
                Expect("false");
                return JsonValue(false);
            case 'n':
                Expect("null");
                return JsonValue();
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
                Fail(std::string("unexpected character '") + c + "'");
        }
    }

    JsonValue ParseObject(int depth) {
        ++pos_;  // '{'
        JsonValue::Object members;
        SkipWs();
        if (Peek() == '}') {
            ++pos_;
            return JsonValue(std::move(members));
        }
        for (;;) {
            SkipWs();
            if (Peek() != '"') Fail("expected a member name");
            std::string key = ParseString();
            SkipWs();
            if (Peek() != ':') Fail("expected ':'");
            ++pos_;
            JsonValue value = ParseValue(depth + 1);
            members.emplace_back(std::move(key), std::move(value));
            SkipWs();
            const char c = Peek();
            ++pos_;
            if (c == '}') return JsonValue(std::move(members));
            if (c != ',') Fail("expected ',' or '}'");
        }
    }

    JsonValue ParseArray(int depth) {
        ++pos_;  // '['
        JsonValue::Array items;
        SkipWs();
        if (Peek() == ']') {
            ++pos_;
            return JsonValue(std::move(items));
        }
        for (;;) {
            items.push_back(ParseValue(depth + 1));
            SkipWs();
            const char c = Peek();
            ++pos_;
            if (c == ']') return JsonValue(std::move(items));
            if (c != ',') Fail("expected ',' or ']'");
        }
    }

    unsigned ParseHex4() {
        if (pos_ + 4 > text_.size()) Fail("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            const char h = text_[pos_++];
            v <<= 4;
            if (h >= '0' && h <= '9')
                v |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f')
                v |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
                v |= static_cast<unsigned>(h - 'A' + 10);
            else
                Fail("bad hex digit in \\u escape");
        }
        return v;
    }

    static void AppendUtf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string ParseString() {
        ++pos_;  // '"'
        std::string out;
        for (;;) {
            const char c = Peek();
            ++pos_;
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) Fail("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            const char e = Peek();
            ++pos_;
            switch (e) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '/':
                    out += '/';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u': {
                    unsigned cp = ParseHex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        Expect("\\u");
                        const unsigned lo = ParseHex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) Fail("unpaired surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        Fail("unpaired surrogate");
                    }
                    AppendUtf8(out, cp);
                    break;
                }
                default:
                    Fail(std::string("bad escape '\\") + e + "'");
            }
        }
    }

    JsonValue ParseNumber() {
        const std::size_t start = pos_;
        auto digits = [&] {
            const std::size_t s = pos_;
            while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
            return pos_ - s;
        };
        if (text_[pos_] == '-') ++pos_;
        if (pos_ < text_.size() && text_[pos_] == '0') {
            ++pos_;
        } else if (digits() == 0) {
            Fail("bad number");
        }
        if (pos_ < text_.size() && text_[pos_] == '.') {
            ++pos_;
            if (digits() == 0) Fail("bad number fraction");
        }
        if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
            if (digits() == 0) Fail("bad number exponent");
        }
        JsonValue::Number n;
        n.text = std::string(text_.substr(start, pos_ - start));
        n.value = std::strtod(n.text.c_str(), nullptr);
        return JsonValue(std::move(n));
    }

    std::string_view text_;
    std::size_t pos_ = 0;
};

void DumpString(std::string& out, const std::string& s) {
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void DumpTo(std::string& out, const JsonValue& v) {
    if (v.IsNull()) {
        out += "null";
    } else if (v.IsBool()) {
        out += v.AsBool() ? "true" : "false";
    } else if (v.IsNumber()) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", v.AsNumber());
        out += buf;
    } else if (v.IsString()) {
        DumpString(out, v.AsString());
    } else if (v.IsArray()) {
        out += '[';
        bool first = true;
        for (const auto& item : v.AsArray()) {
            if (!first) out += ',';
            first = false;
            DumpTo(out, item);
        }
        out += ']';
    } else {
        out += '{';
        bool first = true;
        for (const auto& [k, item] : v.AsObject()) {
            if (!first) out += ',';
            first = false;
            DumpString(out, k);
            out += ':';
            DumpTo(out, item);
        }
        out += '}';
    }
}

}  // namespace

const JsonValue* JsonValue::Find(std::string_view key) const {
    if (!IsObject()) return nullptr;
    for (const auto& [k, v] : AsObject())
        if (k == key) return &v;
    return nullptr;
}

std::optional<std::string> JsonValue::GetString(std::string_view key) const {
    const JsonValue* v = Find(key);
    if (v == nullptr || !v->IsString()) return std::nullopt;
    return v->AsString();
}

std::optional<double> JsonValue::GetNumber(std::string_view key) const {
    const JsonValue* v = Find(key);
    if (v == nullptr || !v->IsNumber()) return std::nullopt;
    return v->AsNumber();
}

bool operator==(const JsonValue& a, const JsonValue& b) {
    if (a.v_.index() != b.v_.index()) return false;
    if (a.IsNull()) return true;
    if (a.IsBool()) return a.AsBool() == b.AsBool();
    if (a.IsNumber()) return a.AsNumber() == b.AsNumber();
    if (a.IsString()) return a.AsString() == b.AsString();
    if (a.IsArray()) return a.AsArray() == b.AsArray();
    const auto& ao = a.AsObject();
    const auto& bo = b.AsObject();
    if (ao.size() != bo.size()) return false;
    for (const auto& [k, v] : ao) {
        const JsonValue* other = b.Find(k);
        if (other == nullptr || !(*other == v)) return false;
    }
    return true;
}

std::string JsonValue::Dump() const {
    std::string out;
    DumpTo(out, *this);
    return out;
}

std::optional<JsonValue> ParseJson(std::string_view text, std::string* error) {
    try {
        return Parser(text).ParseDocument();
    } catch (const std::exception& e) {
        if (error != nullptr) *error = e.what();
        return std::nullopt;
    }
}

}  // namespace rollsafe::testing
