/// @file
/// @brief A small nginx configuration parser for `rollsafe lint`: directives, blocks,
/// comments, quoted strings and line numbers, following nginx's own tokenizer
/// (src/core/ngx_conf_file.c) closely enough that a file `nginx -t` accepts parses here.
///
/// `include` directives are kept (and listed in NginxConf::includes) but never read: the
/// parser does no I/O. `*_by_lua_block { ... }` bodies are Lua, not nginx syntax; they are
/// skipped with Lua's string and comment rules and kept as raw text. Not validated: directive
/// names, argument counts, contexts (that is `nginx -t`'s job).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rollsafe::lint {

/// A `# ...` comment.
struct NginxComment {
    std::string text;  ///< after the '#', trimmed
    int line = 0;      ///< 1-based
};

/// A directive: `name args...;` or `name args... { children }`.
struct NginxDirective {
    std::string name;
    std::vector<std::string> args;  ///< unquoted, escapes resolved
    int line = 0;                   ///< 1-based line of the name
    int column = 0;                 ///< 1-based column of the name
    bool has_block = false;
    std::vector<NginxDirective> children;
    /// Comments directly inside the block (not inside nested blocks), including one right
    /// after the opening '{'.
    std::vector<NginxComment> comments;
    std::string lua;  ///< the body of a `*_by_lua_block`, unparsed
};

/// A parsed file: the top-level directives and comments.
struct NginxConf {
    std::vector<NginxDirective> directives;
    std::vector<NginxComment> comments;  ///< top-level comments
    /// Every `include` at any depth, in file order: its argument and line. Not read.
    struct Include {
        std::string path;
        int line = 0;
    };
    std::vector<Include> includes;
};

/// Why a text is not an nginx configuration, and where.
struct NginxParseError {
    std::string message;
    int line = 0;    ///< 1-based
    int column = 0;  ///< 1-based
};

/// Parses `text`. Returns false with `*error` set on a syntax error: an unbalanced brace, a
/// directive not ended by ';' or a block, an unterminated quoted string or Lua block, a
/// quoted string followed by something other than a separator. Never throws on any input
/// (recursion is bounded: blocks nested deeper than 200 levels are an error).
bool ParseNginxConf(std::string_view text, NginxConf* out, NginxParseError* error);

/// An nginx time value (ngx_parse_time): whole numbers with units ms, s, m, h, d, w, M, y,
/// several in descending order allowed ("1m30s"); a bare number is seconds. nullopt when
/// malformed or beyond a year.
std::optional<std::chrono::milliseconds> ParseNginxTime(std::string_view text);

}  // namespace rollsafe::lint
