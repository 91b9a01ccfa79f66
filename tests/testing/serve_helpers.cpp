#include "testing/serve_helpers.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <thread>

namespace rollsafe::testing {

std::string ResourceBody(std::string_view data_json, std::optional<long long> work_ms) {
    std::string s = "{\"data\":";
    s.append(data_json);
    if (work_ms) s += ",\"work_ms\":" + std::to_string(*work_ms);
    s += "}";
    return s;
}

Headers JsonHeaders(std::string_view key) {
    Headers h{{"Content-Type", "application/json"}};
    if (!key.empty()) {
        h.emplace_back("Idempotency-Key", std::string(key));
    } else {
        // POSTs need a key since the journal exists; tests that do not care get a unique one.
        static std::atomic<int> n{0};
        h.emplace_back("Idempotency-Key",
                       "auto-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    }
    return h;
}

HttpConnection StartPost(std::uint16_t port, long long work_ms, std::string_view key,
                         std::string_view data_json) {
    HttpConnection c = HttpConnection::Connect(port);
    if (!c.IsOpen()) return c;
    if (c.SendRequest("POST", "/resources", JsonHeaders(key), ResourceBody(data_json, work_ms)) !=
        0)
        c.Close();
    return c;
}

std::optional<ResourceView> ParseResource(const HttpResponse& r) {
    const auto v = ParseJson(r.body);
    if (!v || !v->IsObject()) return std::nullopt;
    const auto id = v->GetString("id");
    const auto created_at = v->GetString("created_at");
    const JsonValue* data = v->Find("data");
    if (!id || id->empty() || !created_at || data == nullptr) return std::nullopt;
    return ResourceView{*id, *data, *created_at};
}

std::optional<HttpResponse> PollUntilStatus(std::uint16_t port, std::string_view path, int status,
                                            Deadline deadline, HttpResponse* last) {
    while (SteadyClock::now() < deadline) {
        HttpResponse r = Fetch(port, "GET", path, {}, {}, deadline);
        if (r.complete && r.status == status) return r;
        if (last != nullptr) *last = r;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return std::nullopt;
}

std::optional<SteadyClock::time_point> PollUntilRefused(std::uint16_t port, Deadline deadline,
                                                        int* last_error) {
    if (last_error != nullptr) *last_error = 0;
    while (SteadyClock::now() < deadline) {
        HttpConnection c = HttpConnection::Connect(port, deadline);
        if (last_error != nullptr) *last_error = c.ConnectError();
        if (c.Refused()) return SteadyClock::now();
        c.Close();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return std::nullopt;
}

::testing::AssertionResult IsProblem(const HttpResponse& r, int status) {
    if (!r.complete || r.status != status)
        return ::testing::AssertionFailure()
               << "expected a complete " << status << " response, got " << r.Describe();
    const auto ct = r.Header("Content-Type");
    if (!ct || ct->rfind("application/problem+json", 0) != 0)
        return ::testing::AssertionFailure()
               << "expected Content-Type application/problem+json, got " << r.Describe();
    std::string error;
    const auto v = ParseJson(r.body, &error);
    if (!v || !v->IsObject())
        return ::testing::AssertionFailure()
               << "problem body is not a JSON object (" << error << "): " << r.Describe();
    for (const char* field : {"type", "title", "detail"}) {
        if (!v->GetString(field))
            return ::testing::AssertionFailure()
                   << "problem body lacks string \"" << field << "\": " << r.Describe();
    }
    const auto st = v->GetNumber("status");
    if (!st || *st != status)
        return ::testing::AssertionFailure()
               << "problem body \"status\" is not " << status << ": " << r.Describe();
    return ::testing::AssertionSuccess();
}

std::optional<JsonValue> ProblemBody(const HttpResponse& r) { return ParseJson(r.body); }

ProcessResult RunAudit(const std::string& db_path) {
    const bool url = db_path.starts_with("postgres://") || db_path.starts_with("postgresql://");
    return RunProcess({RollsafeBinary(), "audit", "--store", url ? db_path : "sqlite:" + db_path});
}

std::optional<double> SumMetric(std::string_view text, std::string_view name) {
    std::optional<double> sum;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty() || line.front() == '#') continue;
        if (line.substr(0, name.size()) != name) continue;
        std::size_t pos = name.size();
        if (pos >= line.size() || (line[pos] != '{' && line[pos] != ' ')) continue;
        if (line[pos] == '{') {
            bool in_quotes = false;
            for (++pos; pos < line.size(); ++pos) {
                const char c = line[pos];
                if (in_quotes && c == '\\') {
                    ++pos;
                } else if (c == '"') {
                    in_quotes = !in_quotes;
                } else if (!in_quotes && c == '}') {
                    ++pos;
                    break;
                }
            }
        }
        while (pos < line.size() && line[pos] == ' ') ++pos;
        const std::string value(line.substr(pos, line.find(' ', pos) - pos));
        char* end = nullptr;
        const double d = std::strtod(value.c_str(), &end);
        if (value.empty() || end != value.c_str() + value.size()) continue;
        sum = sum.value_or(0) + d;
    }
    return sum;
}

}  // namespace rollsafe::testing
