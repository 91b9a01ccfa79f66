#include "lint/nginx_conf.hpp"

#include <gtest/gtest.h>

#include <string>

namespace rollsafe::lint {
namespace {

using std::chrono::milliseconds;

NginxConf Parse(const std::string& text) {
    NginxConf conf;
    NginxParseError err;
    EXPECT_TRUE(ParseNginxConf(text, &conf, &err))
        << err.line << ":" << err.column << ": " << err.message;
    return conf;
}

NginxParseError ParseError(const std::string& text) {
    NginxConf conf;
    NginxParseError err;
    EXPECT_FALSE(ParseNginxConf(text, &conf, &err)) << "parsed: " << text;
    return err;
}

TEST(NginxConf, DirectivesBlocksAndLineNumbers) {
    const NginxConf c = Parse(
        "worker_processes 2;\n"
        "http {\n"
        "    upstream app {\n"
        "        server 10.0.0.1:8080 max_fails=3;\n"
        "        keepalive 32;\n"
        "    }\n"
        "    server { listen 80; location / { proxy_pass http://app; } }\n"
        "}\n");
    ASSERT_EQ(c.directives.size(), 2u);
    EXPECT_EQ(c.directives[0].name, "worker_processes");
    EXPECT_EQ(c.directives[0].args, std::vector<std::string>{"2"});
    EXPECT_FALSE(c.directives[0].has_block);
    const NginxDirective& http = c.directives[1];
    EXPECT_TRUE(http.has_block);
    EXPECT_EQ(http.line, 2);
    ASSERT_EQ(http.children.size(), 2u);
    const NginxDirective& upstream = http.children[0];
    EXPECT_EQ(upstream.args, std::vector<std::string>{"app"});
    ASSERT_EQ(upstream.children.size(), 2u);
    EXPECT_EQ(upstream.children[0].line, 4);
    EXPECT_EQ(upstream.children[0].column, 9);
    EXPECT_EQ(upstream.children[0].args,
              (std::vector<std::string>{"10.0.0.1:8080", "max_fails=3"}));
    const NginxDirective& server = http.children[1];
    EXPECT_EQ(server.line, 7);
    ASSERT_EQ(server.children.size(), 2u);
    EXPECT_EQ(server.children[1].name, "location");
    ASSERT_EQ(server.children[1].children.size(), 1u);
    EXPECT_EQ(server.children[1].children[0].args.front(), "http://app");
    EXPECT_EQ(server.children[1].children[0].line, 7);
}

TEST(NginxConf, CommentsBelongToTheirBlock) {
    const NginxConf c = Parse(
        "# top\n"
        "upstream app { # rollsafe: idempotency-keys\n"
        "    server a:1; # trailing\n"
        "    # inside\n"
        "}\n");
    ASSERT_EQ(c.comments.size(), 1u);
    EXPECT_EQ(c.comments[0].text, "top");
    EXPECT_EQ(c.comments[0].line, 1);
    const auto& u = c.directives.at(0);
    ASSERT_EQ(u.comments.size(), 3u);
    EXPECT_EQ(u.comments[0].text, "rollsafe: idempotency-keys");
    EXPECT_EQ(u.comments[0].line, 2);
    EXPECT_EQ(u.comments[1].text, "trailing");
    EXPECT_EQ(u.comments[2].line, 4);
}

TEST(NginxConf, QuotedStringsEscapesAndHashInsideWords) {
    const NginxConf c = Parse(
        "add_header X-A \"a b; {c} # not a comment\";\n"
        "return 200 'it\\'s';\n"
        "set $x a#b;\n"
        "proxy_set_header Host \"${host}\";\n"
        "rewrite ^ ${scheme}://x;\n");
    ASSERT_EQ(c.directives.size(), 5u);
    EXPECT_EQ(c.directives[0].args.at(1), "a b; {c} # not a comment");
    EXPECT_EQ(c.directives[1].args.at(1), "it's");
    EXPECT_EQ(c.directives[2].args.at(1), "a#b");
    EXPECT_EQ(c.directives[3].args.at(1), "${host}");
    EXPECT_EQ(c.directives[4].args.at(1), "${scheme}://x");
    EXPECT_TRUE(c.comments.empty());
}

TEST(NginxConf, IncludesAreNotedButNotRead) {
    const NginxConf c = Parse(
        "http {\n"
        "  include /etc/nginx/conf.d/*.conf;\n"
        "  server { location / { include rollsafe-retry.conf; } }\n"
        "}\n");
    ASSERT_EQ(c.includes.size(), 2u);
    EXPECT_EQ(c.includes[0].path, "/etc/nginx/conf.d/*.conf");
    EXPECT_EQ(c.includes[0].line, 2);
    EXPECT_EQ(c.includes[1].path, "rollsafe-retry.conf");
    EXPECT_EQ(c.includes[1].line, 3);
}

TEST(NginxConf, LuaBlocksMayHoldUnbalancedBracesInStringsAndComments) {
    const NginxConf c = Parse(
        "upstream app {\n"
        "    server 0.0.0.1;\n"
        "    balancer_by_lua_block {\n"
        "        local s = \"}\" -- a } in a comment\n"
        "        local t = { [[ } ]], '{' }\n"
        "        --[==[ } ]==]\n"
        "    }\n"
        "    keepalive 8;\n"
        "}\n");
    const auto& u = c.directives.at(0);
    ASSERT_EQ(u.children.size(), 3u);
    EXPECT_EQ(u.children[1].name, "balancer_by_lua_block");
    EXPECT_NE(u.children[1].lua.find("local t"), std::string::npos);
    EXPECT_EQ(u.children[2].name, "keepalive");
    EXPECT_EQ(u.children[2].line, 8);
}

TEST(NginxConf, SyntaxErrorsCarryLineAndColumn) {
    NginxParseError e = ParseError("server {\n    listen 80;\n");
    EXPECT_EQ(e.line, 1);
    EXPECT_EQ(e.column, 8);
    EXPECT_NE(e.message.find("never closed"), std::string::npos) << e.message;

    e = ParseError("server {\n}\n}\n");
    EXPECT_EQ(e.line, 3);
    EXPECT_NE(e.message.find("unexpected '}'"), std::string::npos) << e.message;

    e = ParseError("server {\n    listen 80\n}\n");
    EXPECT_EQ(e.line, 3);
    EXPECT_NE(e.message.find("'listen'"), std::string::npos) << e.message;

    e = ParseError("events {}\nworker_processes 2");
    EXPECT_EQ(e.line, 2);

    e = ParseError("return 200 \"abc;\n");
    EXPECT_EQ(e.line, 1);
    EXPECT_EQ(e.column, 12);

    e = ParseError("return 200 \"abc\"x;\n");
    EXPECT_EQ(e.line, 1);

    e = ParseError(";\n");
    EXPECT_EQ(e.line, 1);

    e = ParseError("a {\n content_by_lua_block {\n  local x = '}'\n");
    EXPECT_EQ(e.line, 2);
}

TEST(NginxConf, DeepNestingIsAnErrorNotACrash) {
    std::string text;
    for (int i = 0; i < 10'000; ++i) text += "a {";
    const NginxParseError e = ParseError(text);
    EXPECT_NE(e.message.find("nested"), std::string::npos) << e.message;
}

TEST(NginxConf, EmptyAndCommentOnlyFilesParse) {
    EXPECT_TRUE(Parse("").directives.empty());
    EXPECT_EQ(Parse("# only\n   \n# comments").comments.size(), 2u);
}

TEST(NginxTime, UnitsAndBareSeconds) {
    EXPECT_EQ(ParseNginxTime("60"), milliseconds(60'000));
    EXPECT_EQ(ParseNginxTime("60s"), milliseconds(60'000));
    EXPECT_EQ(ParseNginxTime("500ms"), milliseconds(500));
    EXPECT_EQ(ParseNginxTime("1m30s"), milliseconds(90'000));
    EXPECT_EQ(ParseNginxTime("1h"), milliseconds(3'600'000));
    EXPECT_FALSE(ParseNginxTime(""));
    EXPECT_FALSE(ParseNginxTime("s"));
    EXPECT_FALSE(ParseNginxTime("10x"));
    EXPECT_FALSE(ParseNginxTime("1.5s"));
    EXPECT_FALSE(ParseNginxTime("99999999999999999999"));
    EXPECT_FALSE(ParseNginxTime("999999999y"));
}

}  // namespace
}  // namespace rollsafe::lint
