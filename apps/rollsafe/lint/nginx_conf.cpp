#include "lint/nginx_conf.hpp"

#include <cstddef>

namespace rollsafe::lint {
namespace {

/// Deeper nesting than this is not a configuration anyone writes; the bound keeps the open
/// block stack (and the rules' recursion over the tree) small on hostile input.
constexpr std::size_t kMaxDepth = 200;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string Trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && IsSpace(s[b])) ++b;
    while (e > b && IsSpace(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

class Parser {
  public:
    explicit Parser(std::string_view text) : t_(text) {}

    bool Run(NginxConf* out, NginxParseError* error) {
        out_ = out;
        error_ = error;
        while (pos_ < t_.size()) {
            const char c = t_[pos_];
            if (IsSpace(c)) {
                Advance();
            } else if (c == ';') {
                if (words_.empty()) return Fail("unexpected ';'", line_, col_);
                Advance();
                EndDirective(false);
            } else if (c == '{') {
                if (words_.empty()) return Fail("unexpected '{'", line_, col_);
                const int brace_line = line_;
                const int brace_col = col_;
                Advance();
                if (!OpenBlock(brace_line, brace_col)) return false;
            } else if (c == '}') {
                if (!words_.empty())
                    return Fail("unexpected '}': the directive '" + words_.front() +
                                    "' before it is not ended by ';'",
                                line_, col_);
                if (open_.empty()) return Fail("unexpected '}': no block is open", line_, col_);
                open_.pop_back();
                Advance();
            } else if (c == '#') {
                ReadComment();
            } else if (c == '"' || c == '\'') {
                if (!ReadQuoted(c)) return false;
            } else {
                ReadWord();
            }
        }
        if (!words_.empty())
            return Fail("unexpected end of file: the directive '" + words_.front() +
                            "' is not ended by ';'",
                        first_line_, first_col_);
        if (!open_.empty()) {
            const Open& o = open_.back();
            return Fail("unbalanced braces: the '{' of '" + o.directive->name + "' at line " +
                            std::to_string(o.brace_line) + " is never closed (end of file reached)",
                        o.brace_line, o.brace_col);
        }
        return true;
    }

  private:
    struct Open {
        NginxDirective* directive;
        int brace_line;
        int brace_col;
    };

    void Advance() {
        if (t_[pos_] == '\n') {
            ++line_;
            col_ = 1;
        } else {
            ++col_;
        }
        ++pos_;
    }

    bool Fail(std::string message, int line, int col) {
        *error_ = NginxParseError{std::move(message), line, col};
        return false;
    }

    std::vector<NginxDirective>& Siblings() {
        return open_.empty() ? out_->directives : open_.back().directive->children;
    }
    std::vector<NginxComment>& Comments() {
        return open_.empty() ? out_->comments : open_.back().directive->comments;
    }

    void NoteWord(std::string word, int line, int col) {
        if (words_.empty()) {
            first_line_ = line;
            first_col_ = col;
        }
        words_.push_back(std::move(word));
    }

    NginxDirective& EndDirective(bool block) {
        NginxDirective d;
        d.name = std::move(words_.front());
        d.args.assign(std::make_move_iterator(words_.begin() + 1),
                      std::make_move_iterator(words_.end()));
        d.line = first_line_;
        d.column = first_col_;
        d.has_block = block;
        words_.clear();
        if (d.name == "include" && !d.args.empty())
            out_->includes.push_back({d.args.front(), d.line});
        auto& siblings = Siblings();
        siblings.push_back(std::move(d));
        return siblings.back();
    }

    bool OpenBlock(int brace_line, int brace_col) {
        NginxDirective& d = EndDirective(true);
        if (d.name.ends_with("_by_lua_block")) return ReadLua(&d, brace_line, brace_col);
        if (open_.size() >= kMaxDepth)
            return Fail("blocks nested deeper than " + std::to_string(kMaxDepth) + " levels",
                        brace_line, brace_col);
        open_.push_back({&d, brace_line, brace_col});
        return true;
    }

    void ReadComment() {
        const int line = line_;
        Advance();  // '#'
        const std::size_t start = pos_;
        while (pos_ < t_.size() && t_[pos_] != '\n') Advance();
        Comments().push_back({Trim(t_.substr(start, pos_ - start)), line});
    }

    bool ReadQuoted(char quote) {
        const int line = line_;
        const int col = col_;
        Advance();
        std::string word;
        while (true) {
            if (pos_ >= t_.size())
                return Fail(
                    std::string("unterminated ") + (quote == '"' ? "\"" : "'") + "-quoted string",
                    line, col);
            const char c = t_[pos_];
            if (c == '\\' && pos_ + 1 < t_.size()) {
                const char n = t_[pos_ + 1];
                // nginx resolves exactly these escapes and keeps any other backslash.
                if (n == '"' || n == '\'' || n == '\\') {
                    word += n;
                } else if (n == 't') {
                    word += '\t';
                } else if (n == 'r') {
                    word += '\r';
                } else if (n == 'n') {
                    word += '\n';
                } else {
                    word += c;
                    word += n;
                }
                Advance();
                Advance();
                continue;
            }
            Advance();
            if (c == quote) break;
            word += c;
        }
        NoteWord(std::move(word), line, col);
        if (pos_ < t_.size()) {
            const char c = t_[pos_];
            if (!IsSpace(c) && c != ';' && c != '{')
                return Fail(std::string("unexpected '") + c + "' after a quoted string", line_,
                            col_);
        }
        return true;
    }

    void ReadWord() {
        const int line = line_;
        const int col = col_;
        std::string word;
        bool after_dollar = false;
        while (pos_ < t_.size()) {
            const char c = t_[pos_];
            // "${name}" is a variable, not a block: nginx's tokenizer makes the same exception.
            if (c == '{' && after_dollar) {
                word += c;
                Advance();
                after_dollar = false;
                continue;
            }
            if (IsSpace(c) || c == ';' || c == '{') break;
            after_dollar = c == '$';
            if (c == '\\' && pos_ + 1 < t_.size()) {
                word += c;
                Advance();
            }
            word += t_[pos_];
            Advance();
        }
        NoteWord(std::move(word), line, col);
    }

    /// Skips a Lua body up to its closing '}' (the opening one is consumed), honouring Lua's
    /// strings, long brackets and comments, which may hold unbalanced braces.
    bool ReadLua(NginxDirective* d, int brace_line, int brace_col) {
        const std::size_t start = pos_;
        int depth = 1;
        auto long_bracket_level = [&](std::size_t at) -> int {
            // "[[", "[=[", "[==[" ...: the number of '=', or -1 when none starts at `at`.
            if (at >= t_.size() || t_[at] != '[') return -1;
            std::size_t k = at + 1;
            while (k < t_.size() && t_[k] == '=') ++k;
            if (k < t_.size() && t_[k] == '[') return static_cast<int>(k - at - 1);
            return -1;
        };
        auto skip_long = [&](int level) -> bool {
            // At the opening bracket; consume through the matching closing one.
            for (int k = 0; k < level + 2; ++k) Advance();
            const std::string close = "]" + std::string(static_cast<std::size_t>(level), '=') + "]";
            while (pos_ < t_.size()) {
                if (t_.compare(pos_, close.size(), close) == 0) {
                    for (std::size_t k = 0; k < close.size(); ++k) Advance();
                    return true;
                }
                Advance();
            }
            return false;
        };
        while (pos_ < t_.size()) {
            const char c = t_[pos_];
            if (c == '-' && pos_ + 1 < t_.size() && t_[pos_ + 1] == '-') {
                Advance();
                Advance();
                if (const int level = long_bracket_level(pos_); level >= 0) {
                    if (!skip_long(level)) break;
                } else {
                    while (pos_ < t_.size() && t_[pos_] != '\n') Advance();
                }
            } else if (c == '"' || c == '\'') {
                Advance();
                while (pos_ < t_.size() && t_[pos_] != c && t_[pos_] != '\n') {
                    if (t_[pos_] == '\\' && pos_ + 1 < t_.size()) Advance();
                    Advance();
                }
                if (pos_ < t_.size()) Advance();
            } else if (const int level = long_bracket_level(pos_); level >= 0) {
                if (!skip_long(level)) break;
            } else if (c == '{') {
                ++depth;
                Advance();
            } else if (c == '}') {
                if (--depth == 0) {
                    d->lua = std::string(t_.substr(start, pos_ - start));
                    Advance();
                    return true;
                }
                Advance();
            } else {
                Advance();
            }
        }
        return Fail("unbalanced braces: the Lua block '" + d->name + "' opened at line " +
                        std::to_string(brace_line) + " is never closed (end of file reached)",
                    brace_line, brace_col);
    }

    std::string_view t_;
    std::size_t pos_ = 0;
    int line_ = 1;
    int col_ = 1;
    NginxConf* out_ = nullptr;
    NginxParseError* error_ = nullptr;
    std::vector<std::string> words_;
    int first_line_ = 0;
    int first_col_ = 0;
    std::vector<Open> open_;
};

}  // namespace

bool ParseNginxConf(std::string_view text, NginxConf* out, NginxParseError* error) {
    NginxConf conf;
    NginxParseError err;
    Parser parser(text);
    if (!parser.Run(&conf, &err)) {
        if (error != nullptr) *error = std::move(err);
        return false;
    }
    *out = std::move(conf);
    return true;
}

std::optional<std::chrono::milliseconds> ParseNginxTime(std::string_view text) {
    constexpr long long kYearMs = 365LL * 86'400'000;
    long long total = 0;
    std::size_t i = 0;
    bool any = false;
    while (i < text.size()) {
        if (IsSpace(text[i])) {
            ++i;
            continue;
        }
        long long n = 0;
        const std::size_t digits = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            n = n * 10 + (text[i] - '0');
            if (n > kYearMs) return std::nullopt;
            ++i;
        }
        if (i == digits) return std::nullopt;
        long long unit = 1000;
        if (text.substr(i).starts_with("ms")) {
            unit = 1;
            i += 2;
        } else if (i < text.size() && !IsSpace(text[i])) {
            switch (text[i]) {
                case 's':
                    unit = 1000;
                    break;
                case 'm':
                    unit = 60'000;
                    break;
                case 'h':
                    unit = 3'600'000;
                    break;
                case 'd':
                    unit = 86'400'000;
                    break;
                case 'w':
                    unit = 7 * 86'400'000LL;
                    break;
                case 'M':
                    unit = 30 * 86'400'000LL;
                    break;
                case 'y':
                    unit = kYearMs;
                    break;
                default:
                    return std::nullopt;
            }
            ++i;
        }
        if (n > kYearMs / unit) return std::nullopt;
        total += n * unit;
        if (total > kYearMs) return std::nullopt;
        any = true;
    }
    if (!any) return std::nullopt;
    return std::chrono::milliseconds(total);
}

}  // namespace rollsafe::lint
