#include "post/cmd_post.hpp"

#include <boost/json/parse.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cli_duration.hpp"
#include "rollsafe/client/client.hpp"
#include "rollsafe/util/duration.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::post {
namespace {

using std::chrono::milliseconds;

struct Flags {
    std::string url;
    std::string data = "{}";
    std::string key;
    int retries = 5;
    std::string deadline = "30s";
    std::string attempt_timeout = "10s";
    std::vector<std::string> headers;
    bool verbose = false;
};

constexpr std::string_view kPrefix = "rollsafe post: ";

/// The journal's key syntax: 1-255 visible ASCII characters.
bool IsValidKey(std::string_view key) {
    if (key.empty() || key.size() > 255) return false;
    for (char c : key)
        if (c < 0x21 || c > 0x7E) return false;
    return true;
}

std::string Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

/// "attempt 2: 503, 612 ms, reused connection; retry in 1000 ms (Retry-After)"
std::string DescribeAttempt(const client::AttemptRecord& a) {
    std::string s = "attempt " + std::to_string(a.number) + ": ";
    if (a.error)
        s += std::string(client::ToString(*a.error)) + " (" + a.error_detail + ")";
    else
        s += std::to_string(a.status);
    s += ", " + std::to_string(a.latency.count()) + " ms";
    if (a.reused_connection) s += ", reused connection";
    if (a.replayed) s += ", replayed";
    if (a.decision.retry)
        s += "; retry in " + std::to_string(a.decision.delay.count()) + " ms" +
             (a.decision.from_retry_after ? " (Retry-After)" : "");
    else
        s += "; stop: " + std::string(client::ToString(a.decision.reason));
    return s;
}

int Usage(const std::string& message) {
    std::cerr << kPrefix << message << "\n";
    return 2;
}

int Run(const Flags& f) {
    std::string why;
    if (!client::ParseUrl(f.url, &why)) return Usage("bad URL: " + why);
    boost::json::error_code json_error;
    (void)boost::json::parse(f.data, json_error);
    if (json_error) return Usage("--data is not valid JSON: " + json_error.message());

    client::PostRequest req;
    req.url = f.url;
    req.body = f.data;
    for (const auto& h : f.headers) {
        const auto colon = h.find(':');
        if (colon == std::string::npos)
            return Usage("--header '" + h + "' is not of the form 'Name: value'");
        std::string name = h.substr(0, colon);
        std::string value = Trim(std::string_view(h).substr(colon + 1));
        if (auto bad = client::CheckExtraHeader(name, value)) return Usage("--header: " + *bad);
        req.headers.emplace_back(std::move(name), std::move(value));
    }
    if (!f.key.empty() && !IsValidKey(f.key))
        return Usage("--key must be 1-255 visible ASCII characters");
    // Chosen here rather than by the client so that it can be shown before the first attempt.
    req.idempotency_key = f.key.empty() ? util::NewUuid(util::SystemRandom()) : f.key;
    req.retry.max_retries = f.retries;
    req.retry.deadline = *util::ParseDuration(f.deadline);
    req.attempt_timeout = *util::ParseDuration(f.attempt_timeout);

    client::Environment env;
    if (f.verbose) {
        std::cerr << kPrefix << "POST " << f.url << " with Idempotency-Key " << req.idempotency_key
                  << "\n";
        env.on_attempt = [](const client::AttemptRecord& a) {
            std::cerr << kPrefix << DescribeAttempt(a) << "\n";
        };
    }
    client::PostResult result;
    try {
        result = client::Post(req, env);
    } catch (const std::invalid_argument& e) {
        return Usage(e.what());
    }

    if (result.response) {
        std::cout << result.response->body;
        if (result.response->body.empty() || result.response->body.back() != '\n')
            std::cout << '\n';
        std::cout << std::flush;
    }
    if (result.Succeeded()) return 0;

    const client::AttemptRecord& last = result.attempts.back();
    const std::string attempts = std::to_string(result.attempts.size()) + " attempt" +
                                 (result.attempts.size() == 1 ? "" : "s");
    if (result.reason == client::StopReason::kFinalResponse) {
        std::cerr << kPrefix << "HTTP " << result.response->status << " " << result.response->reason
                  << " is a final answer (not retried), after " << attempts << "\n";
        return 1;
    }
    std::cerr << kPrefix << "gave up after " << attempts << " in " << result.elapsed.count()
              << " ms: " << result.why << "; last attempt: "
              << (last.error
                      ? std::string(client::ToString(*last.error)) + " (" + last.error_detail + ")"
                      : "HTTP " + std::to_string(last.status))
              << "\n";
    bool sent = false;
    for (const auto& a : result.attempts) sent = sent || a.sent;
    if (sent)
        std::cerr << kPrefix << "the request may have been executed; retrying with --key "
                  << result.key << " cannot execute it twice\n";
    else
        std::cerr << kPrefix << "nothing was sent: no attempt could connect\n";
    return 1;
}

}  // namespace

void AddPostCommand(CLI::App& app, std::function<int()>* run) {
    auto flags = std::make_shared<Flags>();
    auto* cmd = app.add_subcommand(
        "post",
        "POST JSON with an idempotency key, retrying failures and 408/409/429/502/503/504 "
        "with the same key");
    cmd->add_option("url", flags->url, "http://IP-or-localhost[:port]/path")->required();
    cmd->add_option("--data", flags->data, "Request body (JSON)")->capture_default_str();
    cmd->add_option("--key", flags->key, "Idempotency-Key (default: a fresh random UUID)");
    cmd->add_option("--retries", flags->retries, "Retries after the first attempt")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    cmd->add_option("--deadline", flags->deadline,
                    "Give up when the next attempt could not start before this much time")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--attempt-timeout", flags->attempt_timeout,
                    "The most one attempt (connect, send, receive) may take")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--header", flags->headers, "Extra header 'Name: value' (repeatable)");
    cmd->add_flag("--verbose", flags->verbose, "One line per attempt on stderr");
    cmd->callback([flags, run] { *run = [flags] { return Run(*flags); }; });
}

}  // namespace rollsafe::post
