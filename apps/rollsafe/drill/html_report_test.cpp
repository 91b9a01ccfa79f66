#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "drill/report.hpp"

namespace rollsafe::drill {
namespace {

namespace json = boost::json;

bool Contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::string Lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::size_t Count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = haystack.find(needle); pos != std::string::npos;
         pos = haystack.find(needle, pos + needle.size())) {
        ++n;
    }
    return n;
}

void Life(Report* r, double t, const std::string& replica, const std::string& state,
          const std::string& detail = "") {
    r->lifecycle.push_back({t, replica, state, detail});
}

/// A local rolling + crash run of 60 s with three replicas at a time: replica-1 is rolled to
/// replica-4, replica-2 is SIGKILLed by the crash step, and three requests failed with 502.
Report SampleReport() {
    Report r;
    r.started_at = "2024-05-14T09:30:00Z";
    RunConfig& c = r.config;
    c.mode = "local";
    c.scenario = "all";
    c.gateway = "nginx";
    c.target = "http://127.0.0.1:18080";
    c.store = "sqlite:///tmp/drill/store.db";
    c.replicas = 3;
    c.concurrency = 32;
    c.requests_target = 12000;
    c.max_duration_s = 120;
    c.work_ms_min = 5;
    c.work_ms_max = 40;
    c.ledger_share = 0.3;
    c.endpoint_lag_min_s = 0.5;
    c.endpoint_lag_max_s = 2;
    c.prestop = "http";
    c.grace_s = 30;
    c.drain_delay_s = 5;
    c.min_available = 2;
    c.client_retry = true;
    c.gateway_retry = false;
    c.service_drain_delay = true;
    c.seed = 42;

    r.duration_s = 60.0004;
    r.phases = {{"rolling", 15, 32.5}, {"crash", 45, 50}};
    r.rollout_start_s = 15;
    r.rollout_end_s = 50;

    std::int64_t requests = 0, retried = 0, attempts = 0, failed = 0;
    for (int t = 0; t < 60; ++t) {
        Bucket b;
        b.t_s = t;
        b.acknowledged = 170 + (t * 37) % 23;
        if ((t >= 18 && t <= 26) || (t >= 45 && t <= 48)) {
            b.retried_ok = 4 + (t % 5) * 3;
            b.retry_attempts = b.retried_ok + 2;
        }
        if (t == 46) b.failed = 3;
        requests += b.acknowledged + b.retried_ok + b.failed;
        retried += b.retried_ok;
        attempts += b.acknowledged + b.retried_ok + b.retry_attempts + b.failed;
        failed += b.failed;
        r.timeline.push_back(b);
    }

    Verdict& v = r.verdict;
    v.requests = requests;
    v.acknowledged = requests - failed;
    v.retried = retried;
    v.attempts = attempts;
    v.failed = failed;
    v.failed_by_cause = {{"status 502", 2}, {"deadline", 1}};
    v.problems = {"key drill-000417: no 2xx after 3 attempts (status 502)",
                  "key drill-000418: no 2xx after 3 attempts (status 502)",
                  "key drill-000733: deadline <script>alert(\"x\")</script> & more"};

    r.latency_overall = {requests - failed, 12.345, 187.66, 1840.04};
    r.latency_during_rollout = {6100, 14.2, 310.5, 1840.04};
    // Log-spaced, ratio 1.25 from 1 ms; roughly log-normal around 12 ms with a tail.
    double upper = 1;
    for (int i = 0; upper < 1840; ++i) {
        const double x = std::log(upper / 12.0);
        auto n = static_cast<std::int64_t>(1400 * std::exp(-x * x / 0.9));
        if (upper > 100) n += 3;
        r.latency_histogram.emplace_back(upper, n);
        upper *= 1.25;
    }
    r.latency_histogram.emplace_back(1840.04, 1);

    // Lifecycle.
    for (const char* name : {"replica-1", "replica-2", "replica-3"}) {
        Life(&r, 0.0, name, "started");
        Life(&r, 0.8, name, "ready");
        Life(&r, 1.1, name, "added");
    }
    Life(&r, 15.0, "replica-4", "started");
    Life(&r, 16.4, "replica-4", "ready");
    Life(&r, 17.9, "replica-4", "added", "lag 1.5 s");
    Life(&r, 18.3, "replica-1", "removed", "lag 0.4 s");
    Life(&r, 18.3, "replica-1", "prestop");
    Life(&r, 23.3, "replica-1", "sigterm");
    Life(&r, 23.3, "replica-1", "draining");
    Life(&r, 26.8, "replica-1", "closing");
    Life(&r, 27.1, "replica-1", "exited", "exit 0");
    Life(&r, 46.0, "replica-2", "killed", "SIGKILL by the crash step");
    Life(&r, 46.0, "replica-2", "exited", "signal 9");
    Life(&r, 47.6, "replica-2", "removed", "lag 1.6 s");
    Life(&r, 58.0, "replica-3", "removed");
    Life(&r, 58.0, "replica-4", "removed");
    Life(&r, 58.1, "replica-3", "sigterm");
    Life(&r, 58.1, "replica-4", "sigterm");
    Life(&r, 58.1, "replica-3", "draining");
    Life(&r, 58.1, "replica-4", "draining");
    Life(&r, 59.4, "replica-3", "closing");
    Life(&r, 59.5, "replica-4", "closing");
    Life(&r, 59.7, "replica-3", "exited", "exit 0");
    Life(&r, 59.8, "replica-4", "exited", "exit 0");
    r.gateway = {{1.2, "reload", "replica-1 replica-2 replica-3"},
                 {17.9, "reload", "replica-1 replica-2 replica-3 replica-4"},
                 {18.3, "reload", "replica-2 replica-3 replica-4"},
                 {47.6, "reload", "replica-3 replica-4"},
                 {58.0, "reload", ""}};

    r.replicas = {
        {"replica-1", 31001, 0.0, true, true, 18.3, 8.8, 3820, 211, false, "exit 0"},
        {"replica-2", 31002, 0.0, true, true, 46.0, 0.0, 5130, 0, true, "signal 9"},
        {"replica-3", 31003, 0.0, true, false, 58.0, 1.7, 6010, 48, false, "exit 0"},
        {"replica-4", 31104, 15.0, true, false, 58.0, 1.8, 4120, 39, false, "exit 0"},
    };
    return r;
}

Report PassingReport() {
    Report r = SampleReport();
    r.verdict.failed = 0;
    r.verdict.failed_by_cause.clear();
    r.verdict.acknowledged = r.verdict.requests;
    r.verdict.problems.clear();
    return r;
}

Report BlackBoxReport() {
    Report r;
    r.config.mode = "black-box";
    r.config.scenario = "rollout-cmd";
    r.config.gateway = "external";
    r.config.target = "https://staging.example.test/";
    r.config.rollout_cmd = "kubectl rollout restart deploy/rollsafe";
    r.duration_s = 0;
    r.verdict.half_done_checked = false;
    r.verdict.requests = r.verdict.acknowledged = 120;
    return r;
}

// ---------------------------------------------------------------------------------------------

TEST(ReportJson, ParsesAndHoldsEveryPart) {
    const Report r = SampleReport();
    const json::value doc = json::parse(ToJson(r));
    const json::object& o = doc.as_object();

    EXPECT_EQ(o.at("started_at").as_string(), "2024-05-14T09:30:00Z");
    const auto& v = o.at("verdict").as_object();
    EXPECT_FALSE(v.at("ok").as_bool());
    EXPECT_EQ(v.at("requests").to_number<std::int64_t>(), r.verdict.requests);
    EXPECT_EQ(v.at("acknowledged").to_number<std::int64_t>(), r.verdict.acknowledged);
    EXPECT_EQ(v.at("failed").to_number<std::int64_t>(), 3);
    EXPECT_EQ(v.at("failed_by_cause").at("status 502").to_number<int>(), 2);
    EXPECT_EQ(v.at("failed_by_cause").at("deadline").to_number<int>(), 1);
    EXPECT_TRUE(v.at("half_done_checked").as_bool());
    EXPECT_EQ(v.at("problems").as_array().size(), 3u);
    EXPECT_EQ(v.at("problems").as_array()[2].as_string(), r.verdict.problems[2]);

    const auto& c = o.at("config").as_object();
    EXPECT_EQ(c.at("gateway").as_string(), "nginx");
    EXPECT_EQ(c.at("scenario").as_string(), "all");
    EXPECT_TRUE(c.at("client_retry").as_bool());
    EXPECT_FALSE(c.at("gateway_retry").as_bool());
    EXPECT_TRUE(c.at("service_drain_delay").as_bool());
    EXPECT_EQ(c.at("seed").to_number<std::uint64_t>(), 42u);
    EXPECT_EQ(c.at("prestop").as_string(), "http");

    // Seconds to 0.001, milliseconds to 0.1; doubles stay doubles.
    EXPECT_TRUE(o.at("duration_s").is_double());
    EXPECT_DOUBLE_EQ(o.at("duration_s").as_double(), 60.0);
    EXPECT_DOUBLE_EQ(o.at("latency_overall").at("p50_ms").as_double(), 12.3);
    EXPECT_DOUBLE_EQ(o.at("latency_overall").at("p99_ms").as_double(), 187.7);
    EXPECT_EQ(o.at("latency_during_rollout").at("count").to_number<int>(), 6100);

    EXPECT_EQ(o.at("timeline").as_array().size(), 60u);
    EXPECT_EQ(o.at("timeline").as_array()[46].at("failed").to_number<int>(), 3);
    EXPECT_EQ(o.at("phases").as_array().size(), 2u);
    EXPECT_EQ(o.at("lifecycle").as_array().size(), r.lifecycle.size());
    EXPECT_EQ(o.at("gateway").as_array().size(), 5u);
    EXPECT_EQ(o.at("latency_histogram").as_array().size(), r.latency_histogram.size());
    ASSERT_EQ(o.at("replicas").as_array().size(), 4u);
    const auto& rep2 = o.at("replicas").as_array()[1].as_object();
    EXPECT_EQ(rep2.at("name").as_string(), "replica-2");
    EXPECT_TRUE(rep2.at("sigkilled").as_bool());
    EXPECT_EQ(rep2.at("exit").as_string(), "signal 9");
}

TEST(ReportJson, PassingAndEmptyReports) {
    const json::value pass = json::parse(ToJson(PassingReport()));
    EXPECT_TRUE(pass.at("verdict").at("ok").as_bool());

    Report empty;
    empty.duration_s = std::nan("");
    const json::value doc = json::parse(ToJson(empty));
    EXPECT_TRUE(doc.at("duration_s").is_null());  // never "nan"
    EXPECT_DOUBLE_EQ(doc.at("rollout_start_s").as_double(), -1.0);
    EXPECT_TRUE(doc.at("timeline").as_array().empty());
    EXPECT_TRUE(doc.at("replicas").as_array().empty());
    // A run that made no request proves nothing: it fails, and says why.
    EXPECT_FALSE(doc.at("verdict").at("ok").as_bool());
    EXPECT_TRUE(Contains(RenderTable(empty), "drill: FAIL \u2014 no request was made"));
}

TEST(ReportTable, FailLineAndCauses) {
    const std::string t = RenderTable(SampleReport());
    EXPECT_TRUE(Contains(t, "drill: FAIL \u2014 3 failed")) << t;
    EXPECT_FALSE(Contains(t, "drill: PASS"));
    EXPECT_TRUE(Contains(t, "status 502")) << t;
    EXPECT_TRUE(Contains(t, "deadline")) << t;
    EXPECT_TRUE(Contains(t, "gateway nginx"));
    EXPECT_TRUE(Contains(t, "gateway retry off"));
    EXPECT_TRUE(Contains(t, "during rollout"));
    for (const char* name : {"replica-1", "replica-2", "replica-3", "replica-4"}) {
        EXPECT_TRUE(Contains(t, name)) << name;
    }
    EXPECT_TRUE(Contains(t, "yes"));  // replica-2 was SIGKILLed
    // The verdict line is the last line.
    const auto last = t.rfind("drill: ");
    EXPECT_EQ(t.find('\n', last), t.size() - 1);
}

TEST(ReportTable, PassLine) {
    const Report r = PassingReport();
    const std::string t = RenderTable(r);
    EXPECT_TRUE(Contains(t, "drill: PASS \u2014 " + std::to_string(r.verdict.requests) +
                                " requests, " + std::to_string(r.verdict.acknowledged) +
                                " acknowledged, 0 lost, 0 duplicated, 0 half-done\n"))
        << t;
    EXPECT_FALSE(Contains(t, "FAIL"));
}

TEST(ReportTable, EveryKindOfFailureIsNamed) {
    Report r = PassingReport();
    r.verdict.lost = 3;
    r.verdict.duplicated = 2;
    r.verdict.half_done = 1;
    r.verdict.balance_mismatches = 1;
    const std::string t = RenderTable(r);
    EXPECT_TRUE(
        Contains(t, "drill: FAIL \u2014 3 lost, 2 duplicated, 1 half-done, 1 balance mismatch"))
        << t;
}

/// A passing run on a store that already held rows and two problems before it.
Report PassingOnAnOldStore() {
    Report r = PassingReport();
    r.run_id = "0123456789ab";
    r.store_before.read = true;
    r.store_before.operations = 3415;
    r.store_before.resources = 1702;
    r.store_before.entries = 1713;
    r.store_before.accounts = 8;
    r.store_before.problems = 2;
    r.verdict.earlier_problems = 2;
    r.verdict.earlier = {
        "duplicated: key old-dup (principal anonymous, not of this run) is "
        "stored 2 times: resource <old-1>, resource old-2",
        "balance mismatch: account other-app (not of this run) stores balance "
        "41, but its 1 stored entries sum to 40"};
    return r;
}

TEST(ReportTable, ProblemsFromBeforeTheRunAreShownApartAndDoNotFailIt) {
    const Report r = PassingOnAnOldStore();
    ASSERT_TRUE(r.verdict.ok());
    const std::string t = RenderTable(r);
    EXPECT_TRUE(Contains(t,
                         "store before the run: 3415 journal rows, 1702 resources, 1713 "
                         "ledger entries in 8 accounts; this run's accounts "
                         "drill-0123456789ab-*"))
        << t;
    EXPECT_TRUE(Contains(t, "already in the store before this run, not counted (2; "));
    EXPECT_TRUE(Contains(t, "  - balance mismatch: account other-app (not of this run)")) << t;
    EXPECT_TRUE(Contains(t,
                         "0 half-done (the store also holds 2 problems from before this "
                         "run)\n"))
        << t;
    EXPECT_FALSE(Contains(t, "FAIL"));

    const json::value doc = json::parse(ToJson(r));
    EXPECT_EQ(doc.at("run_id").as_string(), "0123456789ab");
    EXPECT_EQ(doc.at("store_before").at("operations").as_int64(), 3415);
    EXPECT_EQ(doc.at("store_before").at("problems").as_int64(), 2);
    EXPECT_EQ(doc.at("verdict").at("earlier_problems").as_int64(), 2);
    EXPECT_EQ(doc.at("verdict").at("earlier").as_array().size(), 2u);
    EXPECT_TRUE(doc.at("verdict").at("ok").as_bool());

    const std::string h = RenderHtml(r);
    EXPECT_TRUE(Contains(h, "Already in the store before this run (not counted)"));
    EXPECT_TRUE(Contains(h, "resource &lt;old-1&gt;"));
    EXPECT_TRUE(Contains(h, "drill-0123456789ab-*"));
}

TEST(ReportTable, AnEmptyStoreBeforeTheRunAddsNoLine) {
    Report r = PassingReport();
    r.store_before.read = true;
    EXPECT_FALSE(Contains(RenderTable(r), "store before the run"));
    r.store_before.read = false;
    r.store_before.error = "cannot read store: timeout";
    EXPECT_TRUE(Contains(RenderTable(r),
                         "store before the run: not read (cannot read store: "
                         "timeout)"));
}

TEST(ReportTable, BlackBoxAndProblemLimit) {
    Report r = BlackBoxReport();
    for (int i = 0; i < 25; ++i) r.verdict.problems.push_back("problem #" + std::to_string(i));
    const std::string t = RenderTable(r);
    EXPECT_TRUE(Contains(t, "not checked")) << t;
    EXPECT_TRUE(Contains(t, "half-done not checked")) << t;
    EXPECT_TRUE(Contains(t, "replicas: not observed (black-box mode)")) << t;
    EXPECT_TRUE(Contains(t, "problem #9\n"));
    EXPECT_FALSE(Contains(t, "problem #10"));
    EXPECT_TRUE(Contains(t, "first 10 of 25"));
}

TEST(HtmlReport, ChartsReplicasAndBadge) {
    const std::string h = RenderHtml(SampleReport());
    EXPECT_TRUE(Contains(h, "<svg id=\"timeline\""));
    EXPECT_TRUE(Contains(h, "<svg id=\"latency\""));
    EXPECT_TRUE(Contains(h, "FAIL"));
    for (const char* name : {"replica-1", "replica-2", "replica-3", "replica-4"}) {
        EXPECT_TRUE(Contains(h, name)) << name;
    }
    EXPECT_TRUE(Contains(h, "status 502"));
    EXPECT_TRUE(Contains(h, "rolling"));  // a phase label
    EXPECT_TRUE(Contains(h, "crash"));
    EXPECT_TRUE(Contains(h, "p99"));
    EXPECT_GE(Count(h, "<rect"), 60u);
    EXPECT_TRUE(Contains(RenderHtml(PassingReport()), "PASS"));
}

TEST(HtmlReport, EscapesEveryReportString) {
    Report r = SampleReport();
    r.config.rollout_cmd = "deploy \"quoted\" <b>bold</b>";
    r.phases.push_back({"<img src=x onerror=alert(1)>", 33, 34});
    r.lifecycle.push_back({30, "<script>evil()</script>", "ready", "<iframe>"});
    r.gateway.push_back({31, "reload", "<svg onload=alert(1)>"});
    r.verdict.failed_by_cause["<b>cause</b>"] = 1;
    const std::string h = RenderHtml(r);
    const std::string lower = Lower(h);
    EXPECT_FALSE(Contains(lower, "<script")) << "unescaped <script from the report";
    EXPECT_FALSE(Contains(lower, "<img"));
    EXPECT_FALSE(Contains(lower, "<iframe"));
    EXPECT_FALSE(Contains(lower, "<svg onload"));
    EXPECT_FALSE(Contains(h, "<b>bold</b>"));
    EXPECT_FALSE(Contains(h, "<b>cause</b>"));
    EXPECT_TRUE(Contains(h, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more"));
    EXPECT_TRUE(Contains(h, "&lt;script&gt;evil()&lt;/script&gt;"));
}

TEST(HtmlReport, SelfContained) {
    const std::string lower = Lower(RenderHtml(SampleReport()));
    EXPECT_FALSE(Contains(lower, "src="));
    EXPECT_FALSE(Contains(lower, "href="));
    EXPECT_FALSE(Contains(lower, "url("));
    EXPECT_FALSE(Contains(lower, "@import"));
    EXPECT_FALSE(Contains(lower, "<link"));
    EXPECT_FALSE(Contains(lower, "<script"));
    // The only "http://" is the configured target, shown as text.
    EXPECT_EQ(Count(lower, "http://"), Count(lower, ">http://127.0.0.1:18080<"));
    EXPECT_FALSE(Contains(lower, "https://"));
}

TEST(HtmlReport, EdgeCases) {
    std::vector<Report> reports;
    reports.push_back(Report{});          // nothing at all
    reports.push_back(BlackBoxReport());  // zero duration, no replicas, no timeline
    {
        Report r = SampleReport();  // a single second, one bucket, no histogram
        r.duration_s = 0;
        r.timeline.resize(1);
        r.latency_histogram.clear();
        r.latency_overall = {};
        reports.push_back(r);
    }
    {
        Report r = SampleReport();  // hundreds of lifecycle and gateway events, a long run
        r.duration_s = 3600;
        for (int i = 0; i < 600; ++i) {
            const std::string name = "replica-" + std::to_string(5 + i % 12);
            Life(&r, 60.0 + i * 5, name,
                 i % 3 == 0 ? "started" : (i % 3 == 1 ? "ready" : "sigterm"));
            r.gateway.push_back({60.0 + i * 5.5, "endpoints", "a b c"});
        }
        for (int t = 60; t < 3600; ++t)
            r.timeline.push_back({static_cast<double>(t), 150, 2, 0, 2});
        reports.push_back(r);
    }
    {
        Report r = SampleReport();  // garbage numbers: NaN and infinity
        const double nan = std::nan(""), inf = INFINITY;
        r.duration_s = nan;
        r.timeline[3].t_s = nan;
        r.phases.push_back({"bad", nan, inf});
        Life(&r, inf, "replica-1", "ready");
        r.gateway.push_back({nan, "reload", ""});
        r.latency_overall.p50_ms = nan;
        r.latency_overall.p99_ms = inf;
        r.latency_histogram.emplace_back(inf, 5);
        r.replicas[0].termination_to_exit_s = nan;
        reports.push_back(r);
    }
    // snprintf's spellings of NaN and infinity, as an attribute value, a path or a cell.
    const std::regex kNonFinite(R"([\s"(>MLVHZ,]-?(nan|inf)\b)", std::regex::icase);
    for (std::size_t i = 0; i < reports.size(); ++i) {
        SCOPED_TRACE(i);
        const std::string h = RenderHtml(reports[i]);
        EXPECT_TRUE(Contains(h, "<svg id=\"timeline\""));
        EXPECT_TRUE(Contains(h, "<svg id=\"latency\""));
        EXPECT_FALSE(std::regex_search(h, kNonFinite)) << "a NaN or infinite number";
        EXPECT_TRUE(Contains(h, "</html>"));
        EXPECT_NO_THROW(json::parse(ToJson(reports[i])));
        EXPECT_TRUE(Contains(RenderTable(reports[i]), "drill: "));
    }
    EXPECT_TRUE(Contains(RenderHtml(reports[1]), "black-box mode"));
    // A long run is binned: far fewer bars than seconds.
    EXPECT_LT(Count(RenderHtml(reports[3]), "<rect"), 3000u);
}

/// The page is one complete document; with ROLLSAFE_HTML_SAMPLE_OUT set it is also written
/// there, to look at or to feed tests/drill/html_render_test.sh while working on the layout.
TEST(HtmlReport, IsOneCompleteDocumentAndCanBeWrittenForALook) {
    const std::string html = RenderHtml(SampleReport());
    EXPECT_TRUE(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"))
        << html.substr(0, 40);
    EXPECT_TRUE(html.find("</html>") != std::string::npos);
    const char* path = std::getenv("ROLLSAFE_HTML_SAMPLE_OUT");
    if (path == nullptr || *path == '\0') return;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(out) << path;
    out << html;
    ASSERT_TRUE(out.good());
}

}  // namespace
}  // namespace rollsafe::drill
