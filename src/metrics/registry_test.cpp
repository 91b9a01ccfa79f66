#include "rollsafe/metrics/registry.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace rollsafe::metrics {
namespace {

using namespace std::chrono_literals;

/// Prometheus text format, read back: samples by series ("name{labels}") and the TYPE of
/// each family.
struct Exposition {
    std::map<std::string, std::string> samples;
    std::map<std::string, std::string> types;
    std::vector<std::string> sample_order;  ///< series in the order they appear
};

Exposition Parse(const std::string& text) {
    Exposition e;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        if (line.rfind("# TYPE ", 0) == 0) {
            const std::string rest = line.substr(7);
            const auto sp = rest.find(' ');
            e.types[rest.substr(0, sp)] = rest.substr(sp + 1);
            continue;
        }
        if (line[0] == '#') continue;
        const auto sp = line.rfind(' ');
        e.samples[line.substr(0, sp)] = line.substr(sp + 1);
        e.sample_order.push_back(line.substr(0, sp));
    }
    return e;
}

/// The sample value of `series`, or a test failure naming what is missing.
std::string Value(const Exposition& e, const std::string& series) {
    const auto it = e.samples.find(series);
    if (it == e.samples.end()) {
        ADD_FAILURE() << "no sample for " << series;
        return "<missing>";
    }
    return it->second;
}

constexpr const char* kBucket = "rollsafe_http_request_duration_seconds_bucket";

/// The histogram's buckets as (upper bound, cumulative count), in output order, +Inf last.
std::vector<std::pair<std::string, std::uint64_t>> Buckets(const Exposition& e) {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    const std::string prefix = std::string(kBucket) + "{le=\"";
    for (const auto& series : e.sample_order) {
        if (series.rfind(prefix, 0) != 0) continue;
        const std::string le = series.substr(prefix.size(), series.size() - prefix.size() - 2);
        out.emplace_back(le, std::stoull(e.samples.at(series)));
    }
    return out;
}

TEST(Registry, EmptyRegistryRendersEveryFamilyWithZeroes) {
    Registry r;
    const Exposition e = Parse(r.RenderPrometheus());
    EXPECT_EQ(e.types.at("rollsafe_http_requests_total"), "counter");
    EXPECT_EQ(e.types.at("rollsafe_http_request_duration_seconds"), "histogram");
    EXPECT_EQ(e.types.at("rollsafe_http_in_flight_requests"), "gauge");
    EXPECT_EQ(e.types.at("rollsafe_http_connections"), "gauge");
    EXPECT_EQ(e.types.at("rollsafe_http_rejected_connections_total"), "counter");
    EXPECT_EQ(e.types.at("rollsafe_lifecycle_state"), "gauge");
    EXPECT_EQ(e.types.at("rollsafe_drain_duration_seconds"), "gauge");
    for (const auto& [series, value] : e.samples) EXPECT_EQ(std::stod(value), 0.0) << series;
    EXPECT_EQ(Value(e, "rollsafe_http_request_duration_seconds_count"), "0");
    EXPECT_EQ(Value(e, std::string(kBucket) + "{le=\"+Inf\"}"), "0");
}

TEST(Registry, OutputIsNewlineTerminatedLines) {
    Registry r;
    r.RecordRequest("/x", 200, 1ms);
    const std::string text = r.RenderPrometheus();
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(text.find("\n\n"), std::string::npos);
    EXPECT_EQ(text.find('\r'), std::string::npos);
}

TEST(Registry, CountsRequestsByRouteAndStatus) {
    Registry r;
    for (int i = 0; i < 3; ++i) r.RecordRequest("/resources", 201, 1ms);
    r.RecordRequest("/resources", 400, 1ms);
    r.RecordRequest("/resources/{id}", 200, 1ms);
    r.RecordRequest("/resources/{id}", 200, 1ms);
    r.RecordRequest("/resources/{id}", 404, 1ms);
    const Exposition e = Parse(r.RenderPrometheus());
    const std::string name = "rollsafe_http_requests_total";
    EXPECT_EQ(Value(e, name + "{route=\"/resources\",status=\"201\"}"), "3");
    EXPECT_EQ(Value(e, name + "{route=\"/resources\",status=\"400\"}"), "1");
    EXPECT_EQ(Value(e, name + "{route=\"/resources/{id}\",status=\"200\"}"), "2");
    EXPECT_EQ(Value(e, name + "{route=\"/resources/{id}\",status=\"404\"}"), "1");
    const auto series = std::count_if(e.samples.begin(), e.samples.end(), [&](const auto& kv) {
        return kv.first.rfind(name + "{", 0) == 0;
    });
    EXPECT_EQ(series, 4);
}

TEST(Registry, HistogramBucketsAreCumulativeWithInfEqualToCount) {
    Registry r;
    const std::vector<std::chrono::nanoseconds> latencies = {200us, 3ms, 3ms, 70ms, 400ms,
                                                             2s,    7s,  20s, 1h};
    for (const auto l : latencies) r.RecordRequest("/x", 200, l);
    const Exposition e = Parse(r.RenderPrometheus());
    const auto buckets = Buckets(e);

    ASSERT_EQ(buckets.size(), Registry::kLatencyBuckets.size() + 1);
    for (std::size_t i = 0; i < Registry::kLatencyBuckets.size(); ++i) {
        const double le = std::stod(buckets[i].first);
        EXPECT_EQ(le, Registry::kLatencyBuckets[i]) << "bucket " << i;
        // Expected count worked out from the recorded latencies, not from the registry.
        const auto expected = std::count_if(latencies.begin(), latencies.end(), [&](auto l) {
            return std::chrono::duration<double>(l).count() <= le;
        });
        EXPECT_EQ(buckets[i].second, static_cast<std::uint64_t>(expected)) << "le=" << le;
        if (i > 0) {
            EXPECT_GE(buckets[i].second, buckets[i - 1].second);
        }
    }
    EXPECT_EQ(buckets.back().first, "+Inf");
    EXPECT_EQ(buckets.back().second, latencies.size());
    EXPECT_EQ(Value(e, "rollsafe_http_request_duration_seconds_count"),
              std::to_string(latencies.size()));

    double sum = 0;
    for (const auto l : latencies) sum += std::chrono::duration<double>(l).count();
    EXPECT_NEAR(std::stod(Value(e, "rollsafe_http_request_duration_seconds_sum")), sum, 1e-9);
}

TEST(Registry, LatencyEqualToABoundIsCountedInThatBucket) {
    Registry r;
    r.RecordRequest("/x", 200, 1ms);  // le="0.001"
    r.RecordRequest("/x", 200, 10s);  // the largest finite bound
    const auto buckets = Buckets(Parse(r.RenderPrometheus()));
    ASSERT_EQ(buckets.size(), Registry::kLatencyBuckets.size() + 1);
    for (std::size_t i = 0; i < Registry::kLatencyBuckets.size(); ++i) {
        const double le = Registry::kLatencyBuckets[i];
        const std::uint64_t expected = (le >= 0.001 ? 1 : 0) + (le >= 10 ? 1 : 0);
        EXPECT_EQ(buckets[i].second, expected) << "le=" << le;
    }
}

// Dashboards and SLO alerts select buckets by exact label text (`le="0.1"`), so each bound must
// be written in its shortest exact form, as the official client libraries do ("0.1", not
// "0.10000000000000001"; Go client_golang uses FormatFloat(v, 'g', -1, 64)).
TEST(Registry, BucketBoundsAreWrittenInShortestDecimalForm) {
    Registry r;
    const auto buckets = Buckets(Parse(r.RenderPrometheus()));
    ASSERT_EQ(buckets.size(), Registry::kLatencyBuckets.size() + 1);
    for (std::size_t i = 0; i < Registry::kLatencyBuckets.size(); ++i) {
        char buf[64];
        const auto res = std::to_chars(buf, buf + sizeof buf, Registry::kLatencyBuckets[i],
                                       std::chars_format::general);
        ASSERT_EQ(res.ec, std::errc());
        EXPECT_EQ(buckets[i].first, std::string(buf, res.ptr)) << "bucket " << i;
    }
}

TEST(Registry, ExportsGaugesAndTheRejectedConnectionsCounter) {
    Registry r;
    r.AddInFlight(3);
    r.AddInFlight(-1);
    r.AddConnections(5);
    r.AddConnections(2);
    r.AddConnections(-4);
    r.SetLifecycleState(2);
    r.SetDrainDuration(1.25);
    r.CountRejectedConnection();
    r.CountRejectedConnection();
    EXPECT_EQ(r.InFlight(), 2);
    EXPECT_EQ(r.Connections(), 3);
    const Exposition e = Parse(r.RenderPrometheus());
    EXPECT_EQ(Value(e, "rollsafe_http_in_flight_requests"), "2");
    EXPECT_EQ(Value(e, "rollsafe_http_connections"), "3");
    EXPECT_EQ(Value(e, "rollsafe_lifecycle_state"), "2");
    EXPECT_EQ(std::stod(Value(e, "rollsafe_drain_duration_seconds")), 1.25);
    EXPECT_EQ(Value(e, "rollsafe_http_rejected_connections_total"), "2");
}

TEST(Registry, EscapesQuotesBackslashesAndNewlinesInLabelValues) {
    Registry r;
    // Raw route: a"b\c<newline>d
    r.RecordRequest(std::string("a\"b\\c\nd"), 200, 1ms);
    const std::string text = r.RenderPrometheus();
    // Text format 0.0.4: \ -> \\, " -> \", newline -> \n.
    const std::string expected =
        std::string("rollsafe_http_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"200\"} 1\n");
    EXPECT_NE(text.find(expected), std::string::npos) << text;
}

TEST(Registry, LabelEscapingKeepsEverySampleOnOneLine) {
    Registry r;
    r.RecordRequest("\n\n\"\\", 500, 1ms);
    const Exposition e = Parse(r.RenderPrometheus());
    // Every non-comment line must be "<series> <number>"; a raw newline in a label would
    // leave a fragment behind whose "value" is not a number.
    for (const auto& [series, value] : e.samples) {
        std::size_t used = 0;
        EXPECT_NO_THROW((void)std::stod(value, &used)) << series;
        EXPECT_EQ(used, value.size()) << series << " -> " << value;
    }
    const std::string name = "rollsafe_http_requests_total";
    EXPECT_EQ(Value(e, name + "{route=\"\\n\\n\\\"\\\\\",status=\"500\"}"), "1");
}

TEST(Registry, ConcurrentRecordingLosesNothing) {
    Registry r;
    constexpr int kThreads = 4;
    constexpr int kPerThread = 2'500;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&r, t] {
            for (int i = 0; i < kPerThread; ++i) {
                r.RecordRequest(t % 2 ? "/a" : "/b", 200, 1ms);
                r.AddInFlight(1);
                r.AddInFlight(-1);
            }
        });
    for (auto& th : threads) th.join();
    const Exposition e = Parse(r.RenderPrometheus());
    EXPECT_EQ(Value(e, "rollsafe_http_requests_total{route=\"/a\",status=\"200\"}"),
              std::to_string(kThreads / 2 * kPerThread));
    EXPECT_EQ(Value(e, "rollsafe_http_requests_total{route=\"/b\",status=\"200\"}"),
              std::to_string(kThreads / 2 * kPerThread));
    EXPECT_EQ(Value(e, "rollsafe_http_request_duration_seconds_count"),
              std::to_string(kThreads * kPerThread));
    EXPECT_EQ(Value(e, "rollsafe_http_in_flight_requests"), "0");
}

}  // namespace
}  // namespace rollsafe::metrics
