#include "drill/report.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rollsafe::drill {
namespace {

namespace json = boost::json;

// ---------------------------------------------------------------------------------------------
// Numbers and strings
// ---------------------------------------------------------------------------------------------

/// `v` rounded to `digits` decimals (the nearest double to the decimal value).
double RoundDigits(double v, int digits) {
    if (!std::isfinite(v)) return v;
    const double scale = std::pow(10.0, digits);
    const double r = std::round(v * scale) / scale;
    return r == 0 ? 0.0 : r;  // no "-0"
}

/// Fixed-point text: Fix(2.345, 1) == "2.3"; "-" for NaN/inf.
std::string Fix(double v, int prec) {
    if (!std::isfinite(v)) return "-";
    v = RoundDigits(v, prec);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", prec, v);
    return buf;
}

/// Shortest text for an SVG coordinate (at most 1 decimal).
std::string C(double v) {
    if (!std::isfinite(v)) v = 0;
    v = RoundDigits(v, 1);
    char buf[64];
    if (v == std::floor(v)) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.1f", v);
    }
    return buf;
}

/// "0.5", "12", "1.25": a number with trailing zeros trimmed (at most 3 decimals).
std::string Num(double v) {
    std::string s = Fix(v, 3);
    if (s.find('.') != std::string::npos) {
        while (!s.empty() && s.back() == '0') s.pop_back();
        if (!s.empty() && s.back() == '.') s.pop_back();
    }
    return s;
}

std::string I(std::int64_t v) { return std::to_string(v); }

/// Seconds for display: "-" for the -1 sentinel ("never").
std::string Secs(double v, int prec = 1) { return v < 0 ? std::string("-") : Fix(v, prec); }

std::string OnOff(bool b) { return b ? "on" : "off"; }

/// Black-box mode drives an external rollout: replicas, the gateway and their settings are
/// not the drill's, so the report leaves them out.
bool BlackBox(const RunConfig& c) { return c.mode == "black-box"; }

/// HTML-escapes text for element content and attribute values.
std::string Esc(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    for (char ch : s) {
        switch (ch) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                // Control characters other than tab/newline have no place in a page.
                if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') {
                    out += ' ';
                } else {
                    out += ch;
                }
        }
    }
    return out;
}

/// Terminal-safe text: control characters become spaces (no escape sequences from data).
std::string Plain(std::string_view s) {
    std::string out(s);
    for (char& ch : out) {
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
    }
    return out;
}

/// Display width of UTF-8 text (code points; good enough for the glyphs used here).
std::size_t Width(std::string_view s) {
    std::size_t n = 0;
    for (char ch : s) {
        if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++n;
    }
    return n;
}

std::string Plural(std::int64_t n, std::string_view one, std::string_view many) {
    return I(n) + " " + std::string(n == 1 ? one : many);
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

json::value Sec(double v) {
    if (!std::isfinite(v)) return nullptr;
    return RoundDigits(v, 3);
}

json::value Ms(double v) {
    if (!std::isfinite(v)) return nullptr;
    return RoundDigits(v, 1);
}

json::value Ratio(double v) {
    if (!std::isfinite(v)) return nullptr;
    return RoundDigits(v, 4);
}

/// Boost.JSON prints doubles as "6.3E1"; the report prints them as people write them ("63.0",
/// "0.125"): shortest round-trip text, always with a '.' or an exponent so readers keep the
/// double type.
void WriteDouble(std::string& out, double d) {
    if (!std::isfinite(d)) {
        out += "null";
        return;
    }
    if (d == 0) d = 0;  // "-0" → "0"
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, d);
    const std::string_view s(buf, static_cast<std::size_t>(res.ptr - buf));
    out += s;
    if (s.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void Write(std::string& out, const json::value& v) {
    switch (v.kind()) {
        case json::kind::null:
            out += "null";
            break;
        case json::kind::bool_:
            out += v.get_bool() ? "true" : "false";
            break;
        case json::kind::int64:
            out += std::to_string(v.get_int64());
            break;
        case json::kind::uint64:
            out += std::to_string(v.get_uint64());
            break;
        case json::kind::double_:
            WriteDouble(out, v.get_double());
            break;
        case json::kind::string:
            out += json::serialize(v.get_string());
            break;
        case json::kind::array: {
            out += '[';
            bool first = true;
            for (const auto& e : v.get_array()) {
                if (!first) out += ',';
                first = false;
                Write(out, e);
            }
            out += ']';
            break;
        }
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const auto& kv : v.get_object()) {
                if (!first) out += ',';
                first = false;
                out += json::serialize(json::string_view(kv.key()));
                out += ':';
                Write(out, kv.value());
            }
            out += '}';
            break;
        }
    }
}

json::object ConfigJson(const RunConfig& c) {
    json::object o;
    o["mode"] = c.mode;
    o["scenario"] = c.scenario;
    o["gateway"] = c.gateway;
    o["target"] = c.target;
    o["store"] = c.store;
    o["rollout_cmd"] = c.rollout_cmd;
    o["replicas"] = c.replicas;
    o["concurrency"] = c.concurrency;
    o["requests_target"] = c.requests_target;
    o["max_duration_s"] = Sec(c.max_duration_s);
    o["work_ms_min"] = c.work_ms_min;
    o["work_ms_max"] = c.work_ms_max;
    o["ledger_share"] = Ratio(c.ledger_share);
    o["endpoint_lag_min_s"] = Sec(c.endpoint_lag_min_s);
    o["endpoint_lag_max_s"] = Sec(c.endpoint_lag_max_s);
    o["prestop"] = c.prestop;
    o["grace_s"] = Sec(c.grace_s);
    o["drain_delay_s"] = Sec(c.drain_delay_s);
    o["min_available"] = c.min_available;
    o["client_retry"] = c.client_retry;
    o["gateway_retry"] = c.gateway_retry;
    o["service_drain_delay"] = c.service_drain_delay;
    o["seed"] = c.seed;
    return o;
}

json::object VerdictJson(const Verdict& v) {
    json::object o;
    o["ok"] = v.ok();
    o["requests"] = v.requests;
    o["acknowledged"] = v.acknowledged;
    o["retried"] = v.retried;
    o["attempts"] = v.attempts;
    o["failed"] = v.failed;
    json::object causes;
    for (const auto& [cause, n] : v.failed_by_cause) causes[cause] = n;
    o["failed_by_cause"] = std::move(causes);
    o["lost"] = v.lost;
    o["duplicated"] = v.duplicated;
    o["half_done"] = v.half_done;
    o["balance_mismatches"] = v.balance_mismatches;
    o["half_done_checked"] = v.half_done_checked;
    o["run_error"] = v.run_error;
    json::array problems;
    for (const auto& p : v.problems) problems.emplace_back(p);
    o["problems"] = std::move(problems);
    o["earlier_problems"] = v.earlier_problems;
    json::array earlier;
    for (const auto& p : v.earlier) earlier.emplace_back(p);
    o["earlier"] = std::move(earlier);
    return o;
}

json::object StoreBeforeJson(const StoreBefore& b) {
    return json::object{
        {"read", b.read},           {"error", b.error},     {"operations", b.operations},
        {"resources", b.resources}, {"entries", b.entries}, {"accounts", b.accounts},
        {"problems", b.problems}};
}

/// "3415 journal rows, 1702 resources, 1713 ledger entries in 8 accounts".
std::string StoreBeforeText(const StoreBefore& b) {
    return Plural(b.operations, "journal row", "journal rows") + ", " +
           Plural(b.resources, "resource", "resources") + ", " +
           Plural(b.entries, "ledger entry", "ledger entries") + " in " +
           Plural(b.accounts, "account", "accounts");
}

json::object LatencyJson(const Latency& l) {
    json::object o;
    o["count"] = l.count;
    o["p50_ms"] = Ms(l.p50_ms);
    o["p99_ms"] = Ms(l.p99_ms);
    o["max_ms"] = Ms(l.max_ms);
    return o;
}

// ---------------------------------------------------------------------------------------------
// Shared bits of the verdict
// ---------------------------------------------------------------------------------------------

std::string VerdictLine(const Verdict& v) {
    if (v.ok()) {
        std::string s = "drill: PASS \u2014 " + Plural(v.requests, "request", "requests") + ", " +
                        I(v.acknowledged) + " acknowledged, 0 lost, 0 duplicated, ";
        s += v.half_done_checked ? "0 half-done" : "half-done not checked";
        if (v.earlier_problems != 0)
            s += " (the store also holds " + Plural(v.earlier_problems, "problem", "problems") +
                 " from before this run)";
        return s;
    }
    std::vector<std::string> parts;
    if (!v.run_error.empty()) parts.push_back(v.run_error);
    if (v.requests == 0) parts.push_back("no request was made");
    if (v.failed != 0) parts.push_back(I(v.failed) + " failed");
    if (v.lost != 0) parts.push_back(I(v.lost) + " lost");
    if (v.duplicated != 0) parts.push_back(I(v.duplicated) + " duplicated");
    if (v.half_done != 0) parts.push_back(I(v.half_done) + " half-done");
    if (v.balance_mismatches != 0) {
        parts.push_back(Plural(v.balance_mismatches, "balance mismatch", "balance mismatches"));
    }
    std::string s = "drill: FAIL \u2014 ";
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i != 0) s += ", ";
        s += parts[i];
    }
    return s;
}

/// Replica names in lane order: the summaries first, then any name only the lifecycle has.
std::vector<std::string> LaneNames(const Report& r) {
    std::vector<std::string> names;
    std::set<std::string> seen;
    for (const auto& rep : r.replicas) {
        if (seen.insert(rep.name).second) names.push_back(rep.name);
    }
    for (const auto& e : r.lifecycle) {
        if (seen.insert(e.replica).second) names.push_back(e.replica);
    }
    return names;
}

// ---------------------------------------------------------------------------------------------
// Text table
// ---------------------------------------------------------------------------------------------

/// Aligned columns; `align` has one 'l' or 'r' per column.
std::string Columns(const std::vector<std::vector<std::string>>& rows, std::string_view align,
                    std::string_view indent) {
    std::vector<std::size_t> w;
    for (const auto& row : rows) {
        if (w.size() < row.size()) w.resize(row.size(), 0);
        for (std::size_t i = 0; i < row.size(); ++i) w[i] = std::max(w[i], Width(row[i]));
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line(indent);
        for (std::size_t i = 0; i < row.size(); ++i) {
            const std::size_t pad = w[i] - Width(row[i]);
            const bool right = i < align.size() && align[i] == 'r';
            if (i != 0) line += "  ";
            if (right) line.append(pad, ' ');
            line += row[i];
            if (!right && i + 1 < row.size()) line.append(pad, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    return out;
}

std::string ConfigLines(const Report& r) {
    const RunConfig& c = r.config;
    std::string out;
    out += "rollsafe drill";
    if (!r.started_at.empty()) out += " \u2014 started " + Plain(r.started_at);
    out += ", duration " + Fix(r.duration_s, 1) + " s\n";
    out += "  mode " + Plain(c.mode) + ", scenario " + Plain(c.scenario) + ", gateway " +
           Plain(c.gateway) + (BlackBox(c) ? "" : ", " + I(c.replicas) + " replicas") +
           ", concurrency " + I(c.concurrency) + ", seed " + std::to_string(c.seed) + "\n";
    if (!c.target.empty()) out += "  target " + Plain(c.target) + "\n";
    if (!c.store.empty()) {
        out += "  store " + Plain(c.store) + "\n";
        const StoreBefore& b = r.store_before;
        if (b.read && !b.Empty())
            out += "  store before the run: " + StoreBeforeText(b) +
                   "; this run's accounts drill-" + Plain(r.run_id) + "-*\n";
        else if (!b.read && !b.error.empty())
            out += "  store before the run: not read (" + Plain(b.error) + ")\n";
    }
    if (!c.rollout_cmd.empty()) out += "  rollout command " + Plain(c.rollout_cmd) + "\n";
    out += "  load: up to " + I(c.requests_target) + " requests in " + Num(c.max_duration_s) +
           " s, work " + I(c.work_ms_min) + "-" + I(c.work_ms_max) + " ms, ledger share " +
           Num(c.ledger_share * 100) + "%\n";
    out += "  layers: client retry " + OnOff(c.client_retry);
    if (!BlackBox(c)) {
        out += ", gateway retry " + OnOff(c.gateway_retry) + ", service drain delay " +
               OnOff(c.service_drain_delay);
        if (c.service_drain_delay) out += " (" + Num(c.drain_delay_s) + " s)";
        out += ", prestop " + Plain(c.prestop.empty() ? "none" : c.prestop) + ", grace " +
               Num(c.grace_s) + " s, endpoint lag " + Num(c.endpoint_lag_min_s) + "-" +
               Num(c.endpoint_lag_max_s) + " s, min available " + I(c.min_available);
    }
    out += "\n";
    if (r.rollout_start_s >= 0) {
        out += "  rollout " + Fix(r.rollout_start_s, 1) + "-" + Secs(r.rollout_end_s) + " s";
        if (!r.phases.empty()) {
            out += " (";
            for (std::size_t i = 0; i < r.phases.size(); ++i) {
                if (i != 0) out += ", ";
                out += Plain(r.phases[i].name) + " " + Fix(r.phases[i].start_s, 1) + "-" +
                       Fix(r.phases[i].end_s, 1) + " s";
            }
            out += ")";
        }
        out += "\n";
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string ToJson(const Report& r) {
    std::vector<std::pair<std::string, json::value>> top;
    top.emplace_back("started_at", json::string(r.started_at));
    top.emplace_back("config", ConfigJson(r.config));
    top.emplace_back("run_id", json::string(r.run_id));
    top.emplace_back("store_before", StoreBeforeJson(r.store_before));
    top.emplace_back("duration_s", Sec(r.duration_s));
    top.emplace_back("rollout_start_s", Sec(r.rollout_start_s));
    top.emplace_back("rollout_end_s", Sec(r.rollout_end_s));
    top.emplace_back("verdict", VerdictJson(r.verdict));
    top.emplace_back("latency_overall", LatencyJson(r.latency_overall));
    top.emplace_back("latency_during_rollout", LatencyJson(r.latency_during_rollout));
    json::array hist;
    for (const auto& [upper, count] : r.latency_histogram) {
        // Bucket bounds to the microsecond: sub-millisecond buckets keep their spacing.
        hist.push_back(json::object{{"upper_ms", Sec(upper)}, {"count", count}});
    }
    top.emplace_back("latency_histogram", std::move(hist));
    json::array timeline;
    for (const auto& b : r.timeline) {
        timeline.push_back(json::object{{"t_s", Sec(b.t_s)},
                                        {"acknowledged", b.acknowledged},
                                        {"retried_ok", b.retried_ok},
                                        {"failed", b.failed},
                                        {"retry_attempts", b.retry_attempts}});
    }
    top.emplace_back("timeline", std::move(timeline));
    json::array phases;
    for (const auto& p : r.phases) {
        phases.push_back(
            json::object{{"name", p.name}, {"start_s", Sec(p.start_s)}, {"end_s", Sec(p.end_s)}});
    }
    top.emplace_back("phases", std::move(phases));
    json::array lifecycle;
    for (const auto& e : r.lifecycle) {
        lifecycle.push_back(json::object{
            {"t_s", Sec(e.t_s)}, {"replica", e.replica}, {"state", e.state}, {"detail", e.detail}});
    }
    top.emplace_back("lifecycle", std::move(lifecycle));
    json::array gateway;
    for (const auto& g : r.gateway) {
        gateway.push_back(
            json::object{{"t_s", Sec(g.t_s)}, {"what", g.what}, {"detail", g.detail}});
    }
    top.emplace_back("gateway", std::move(gateway));
    json::array replicas;
    for (const auto& s : r.replicas) {
        replicas.push_back(json::object{{"name", s.name},
                                        {"pid", s.pid},
                                        {"started_s", Sec(s.started_s)},
                                        {"terminated", s.terminated},
                                        {"by_scenario", s.by_scenario},
                                        {"termination_start_s", Sec(s.termination_start_s)},
                                        {"termination_to_exit_s", Sec(s.termination_to_exit_s)},
                                        {"served", s.served},
                                        {"served_while_draining", s.served_while_draining},
                                        {"sigkilled", s.sigkilled},
                                        {"exit", s.exit}});
    }
    top.emplace_back("replicas", std::move(replicas));

    // One top-level key per line and one array element per line: diffable, still one document.
    std::string out = "{\n";
    for (std::size_t i = 0; i < top.size(); ++i) {
        const auto& [key, value] = top[i];
        out += "  " + json::serialize(json::string_view(key)) + ": ";
        if (value.is_array() && !value.get_array().empty()) {
            out += "[\n";
            const auto& arr = value.get_array();
            for (std::size_t j = 0; j < arr.size(); ++j) {
                out += "    ";
                Write(out, arr[j]);
                out += j + 1 < arr.size() ? ",\n" : "\n";
            }
            out += "  ]";
        } else {
            Write(out, value);
        }
        out += i + 1 < top.size() ? ",\n" : "\n";
    }
    out += "}\n";
    return out;
}

// ---------------------------------------------------------------------------------------------

std::string RenderTable(const Report& r) {
    const Verdict& v = r.verdict;
    std::string out = ConfigLines(r);
    out += "\n";

    std::vector<std::vector<std::string>> counts;
    counts.push_back({"requests", I(v.requests), ""});
    counts.push_back({"acknowledged", I(v.acknowledged), ""});
    counts.push_back({"retried", I(v.retried), "(" + I(v.attempts) + " attempts in all)"});
    counts.push_back({"failed", I(v.failed), ""});
    for (const auto& [cause, n] : v.failed_by_cause) {
        counts.push_back({"  " + Plain(cause), I(n), ""});
    }
    counts.push_back({"lost", I(v.lost), ""});
    counts.push_back({"duplicated", I(v.duplicated), ""});
    if (v.half_done_checked) {
        counts.push_back({"half-done", I(v.half_done), ""});
    } else {
        counts.push_back({"half-done", "not checked", "(black-box mode cannot see the journal)"});
    }
    counts.push_back({"balance mismatches", I(v.balance_mismatches), ""});
    out += Columns(counts, "lrl", "  ");
    out += "\n";

    std::vector<std::vector<std::string>> lat;
    lat.push_back({"latency (ms)", "requests", "p50", "p99", "max"});
    auto lat_row = [](std::string name, const Latency& l) {
        if (l.count == 0) return std::vector<std::string>{std::move(name), "0", "-", "-", "-"};
        return std::vector<std::string>{std::move(name), I(l.count), Fix(l.p50_ms, 1),
                                        Fix(l.p99_ms, 1), Fix(l.max_ms, 1)};
    };
    lat.push_back(lat_row("  overall", r.latency_overall));
    lat.push_back(lat_row("  during rollout", r.latency_during_rollout));
    out += Columns(lat, "lrrrr", "");
    out += "\n";

    if (r.replicas.empty()) {
        out += "replicas: not observed";
        if (r.config.mode == "black-box") out += " (black-box mode)";
        out += "\n";
    } else {
        std::vector<std::vector<std::string>> reps;
        reps.push_back({"replica", "pid", "term\u2192exit s", "served", "while draining",
                        "SIGKILLed", "exit"});
        for (const auto& s : r.replicas) {
            reps.push_back({Plain(s.name), s.pid > 0 ? I(s.pid) : "-",
                            Secs(s.termination_to_exit_s, 2), I(s.served),
                            I(s.served_while_draining), s.sigkilled ? "yes" : "no",
                            s.exit.empty() ? "-" : Plain(s.exit)});
        }
        out += Columns(reps, "lrrrrll", "");
    }

    if (!v.problems.empty()) {
        const std::size_t shown = std::min<std::size_t>(v.problems.size(), 10);
        out += "\nproblems (";
        if (shown < v.problems.size()) {
            out += "first " + std::to_string(shown) + " of ";
        }
        out += std::to_string(v.problems.size()) + "):\n";
        for (std::size_t i = 0; i < shown; ++i) out += "  - " + Plain(v.problems[i]) + "\n";
    }
    if (v.earlier_problems != 0) {
        const std::size_t shown = std::min<std::size_t>(v.earlier.size(), 5);
        out += "\nalready in the store before this run, not counted (" +
               (shown < static_cast<std::size_t>(v.earlier_problems)
                    ? "first " + std::to_string(shown) + " of "
                    : std::string()) +
               I(v.earlier_problems) + "; rollsafe audit --store ... lists them all):\n";
        for (std::size_t i = 0; i < shown; ++i) out += "  - " + Plain(v.earlier[i]) + "\n";
    }
    out += "\n" + VerdictLine(v) + "\n";
    return out;
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

namespace {

constexpr const char* kCss = R"css(
:root{--ok:#2f9e44;--retry:#f59f00;--fail:#e03131;--starting:#91a7c4;--serving:#40c057;
--draining:#fd7e14;--closing:#9775fa;--killed:#c92a2a;--exited:#495057;--gw:#1971c2;
--phase:#e7f0fd;--ink:#212529;--muted:#6c757d;--line:#dee2e6;--bg:#f4f6f8}
*{box-sizing:border-box}
html{background:var(--bg)}
body{margin:0;color:var(--ink);font:14px/1.45 "Segoe UI",system-ui,-apple-system,Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:22px 20px 40px}
header{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
h1{font-size:24px;margin:0;font-weight:650}
h2{font-size:16px;margin:0 0 10px;font-weight:650}
.badge{font-weight:700;font-size:15px;padding:3px 14px;border-radius:999px;color:#fff;letter-spacing:.06em}
.badge.pass{background:var(--ok)}.badge.fail{background:var(--fail)}
.sub{color:var(--muted)}
.line{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,Consolas,monospace;font-size:13px;margin:10px 0 0;padding:8px 12px;border-radius:6px;background:#fff;border:1px solid var(--line)}
.line.pass{border-left:5px solid var(--ok)}.line.fail{border-left:5px solid var(--fail)}
.chips{display:flex;gap:8px;flex-wrap:wrap;margin-top:10px}
.chip{font-size:12px;padding:2px 10px;border-radius:999px;border:1px solid var(--line);background:#fff}
.chip.on{border-color:#b2f2bb;background:#ebfbee;color:#2b8a3e}
.chip.off{border-color:#ffc9c9;background:#fff5f5;color:#c92a2a}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin-top:16px}
.grid{display:grid;grid-template-columns:3fr 2fr;gap:16px}
.grid>.card{margin-top:0}
.row{display:flex;gap:20px;align-items:flex-start;flex-wrap:wrap}
.row>.chart{flex:1 1 620px;min-width:0}.row>.side{flex:0 1 400px}
.side td{white-space:nowrap}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eef0f2;text-align:left;vertical-align:top}
th{font-weight:600;color:#495057;font-size:12.5px;background:#f8f9fa}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{background:none;font-weight:500;color:var(--muted);font-size:13px;white-space:nowrap}
table.kv td{word-break:break-all}
tr.bad td{color:var(--fail);font-weight:650}
tr.good td.st{color:var(--ok)}
tr.cause td:first-child{padding-left:26px;color:var(--muted)}
td.st{width:20px;text-align:center;font-weight:700}
.yes{color:var(--fail);font-weight:650}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;color:#495057;margin:0 0 8px}
.legend span{white-space:nowrap}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin-right:5px}
.sep{width:1px;background:var(--line);margin:0 2px}
svg{display:block;width:100%;height:auto}
svg text{font-family:"Segoe UI",system-ui,"DejaVu Sans",Arial,sans-serif;font-size:11px;fill:#495057}
svg .lane{font-size:12px;fill:#212529}
svg .ph{font-size:11.5px;fill:#1864ab;font-weight:600}
svg .note{font-size:13px;fill:#868e96}
.note{color:var(--muted)}
ol.problems{margin:0;padding-left:28px}
ol.problems li{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-word;margin:2px 0}
details summary{cursor:pointer;color:var(--gw);margin:6px 0}
footer{margin-top:18px;font-size:12px;color:var(--muted)}
)css";

/// The lifecycle class of a state: what the lane shows from this event until the next.
std::string_view StateClass(std::string_view state) {
    if (state == "started") return "starting";
    if (state == "ready" || state == "added") return "serving";
    if (state == "removed" || state == "prestop" || state == "sigterm" || state == "draining") {
        return "draining";
    }
    if (state == "closing") return "closing";
    if (state == "exited") return "exited";
    if (state == "killed") return "killed";
    return "other";
}

const char* ClassColor(std::string_view cls) {
    if (cls == "starting") return "#91a7c4";
    if (cls == "serving") return "#40c057";
    if (cls == "draining") return "#fd7e14";
    if (cls == "closing") return "#9775fa";
    if (cls == "killed") return "#c92a2a";
    if (cls == "exited") return "#495057";
    return "#ced4da";
}

constexpr const char* kAckColor = "#2f9e44";
constexpr const char* kRetryColor = "#f59f00";
constexpr const char* kFailColor = "#e03131";
constexpr const char* kGatewayColor = "#1971c2";

/// 1, 2 or 5 times a power of ten, at least `raw`.
double NiceStep(double raw) {
    if (!(raw > 0) || !std::isfinite(raw)) return 1;
    const double p = std::pow(10.0, std::floor(std::log10(raw)));
    for (double m : {1.0, 2.0, 5.0, 10.0}) {
        if (m * p >= raw * 0.999) return m * p;
    }
    return 10 * p;
}

/// A time-axis step that gives at most ~14 ticks over `span` seconds.
double TimeStep(double span) {
    static const double kSteps[] = {1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600};
    for (double s : kSteps) {
        if (span / s <= 14) return s;
    }
    return NiceStep(span / 14);
}

std::string TimeLabel(double t, double span) {
    if (span > 600) {
        const auto total = static_cast<std::int64_t>(std::llround(t));
        char buf[32];
        std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(total / 60),
                      static_cast<long long>(total % 60));
        return buf;
    }
    return Num(t) + " s";
}

/// Rough width in px of SVG text at 11-12px (the page's fonts are not measured).
double TextWidth(std::string_view s, double px = 11.5) {
    return static_cast<double>(Width(s)) * px * 0.56;
}

std::string Truncate(const std::string& s, std::size_t max_chars) {
    if (Width(s) <= max_chars) return s;
    std::string out;
    std::size_t n = 0;
    for (char ch : s) {
        if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) {
            if (n == max_chars - 1) break;
            ++n;
        }
        out += ch;
    }
    return out + "\u2026";
}

std::string Rect(double x, double y, double w, double h, std::string_view fill,
                 std::string_view extra = "") {
    std::string s = "<rect x=\"" + C(x) + "\" y=\"" + C(y) + "\" width=\"" + C(std::max(w, 0.0)) +
                    "\" height=\"" + C(std::max(h, 0.0)) + "\" fill=\"" + std::string(fill) + "\"";
    if (!extra.empty()) s += " " + std::string(extra);
    return s;
}

std::string Line(double x1, double y1, double x2, double y2, std::string_view stroke,
                 std::string_view extra = "") {
    std::string s = "<line x1=\"" + C(x1) + "\" y1=\"" + C(y1) + "\" x2=\"" + C(x2) + "\" y2=\"" +
                    C(y2) + "\" stroke=\"" + std::string(stroke) + "\"";
    if (!extra.empty()) s += " " + std::string(extra);
    return s + "/>";
}

std::string Text(double x, double y, const std::string& escaped, std::string_view extra = "") {
    std::string s = "<text x=\"" + C(x) + "\" y=\"" + C(y) + "\"";
    if (!extra.empty()) s += " " + std::string(extra);
    return s + ">" + escaped + "</text>";
}

/// The end of the time axis: everything the report placed in time, at least one second.
double TimeSpan(const Report& r) {
    double t = 0;
    auto see = [&t](double v) {
        if (std::isfinite(v)) t = std::max(t, v);
    };
    see(r.duration_s);
    for (const auto& b : r.timeline) see(b.t_s + 1);
    for (const auto& p : r.phases) see(std::max(p.start_s, p.end_s));
    for (const auto& e : r.lifecycle) see(e.t_s);
    for (const auto& g : r.gateway) see(g.t_s);
    return std::max(t, 1.0);
}

struct Segment {
    std::string_view cls;
    double t0 = 0, t1 = 0;
    std::string what;  ///< the events that make it, escaped later
};

std::string TimelineSvg(const Report& r) {
    const double span = TimeSpan(r);
    constexpr double kW = 1200, kML = 130, kMR = 18;
    const double pw = kW - kML - kMR;
    auto X = [&](double t) { return kML + std::clamp(t, 0.0, span) / span * pw; };

    // Phase labels: placed left to right, a second or third row when they would overlap.
    struct PhaseLabel {
        double x;
        int row;
        std::string text;
    };
    std::vector<PhaseLabel> labels;
    std::vector<double> row_end;
    for (const auto& p : r.phases) {
        if (!std::isfinite(p.start_s) || !std::isfinite(p.end_s)) continue;
        std::string text = p.name + " " + Fix(p.start_s, 1) + "\u2013" + Fix(p.end_s, 1) + " s";
        double x = X(p.start_s) + 3;
        const double w = TextWidth(text) + 8;
        if (x + w > kW - kMR) x = std::max(kML, kW - kMR - w);
        int row = 0;
        while (row < static_cast<int>(row_end.size()) && row_end[row] > x) ++row;
        if (row >= 3) row = 2;  // at most three rows; overlap beyond that is acceptable
        if (row >= static_cast<int>(row_end.size())) row_end.resize(row + 1, 0);
        row_end[row] = x + w;
        labels.push_back({x, row, std::move(text)});
    }
    const double label_h = 16.0 * static_cast<double>(row_end.size());

    const double bars_top = 10 + label_h + (label_h > 0 ? 4 : 0);
    constexpr double kBarsH = 210;
    const double bars_bottom = bars_top + kBarsH;
    const double lanes_top = bars_bottom + 26;
    constexpr double kLaneH = 22;
    const std::vector<std::string> names = LaneNames(r);
    const std::size_t lanes = 1 + std::max<std::size_t>(names.size(), 1);  // gateway + replicas
    const double lanes_bottom = lanes_top + kLaneH * static_cast<double>(lanes);
    const bool bottom_axis = names.size() >= 6;
    const double height = lanes_bottom + (bottom_axis ? 24 : 8);

    std::string s = "<svg id=\"timeline\" viewBox=\"0 0 " + C(kW) + " " + C(height) +
                    "\" role=\"img\" aria-label=\"timeline of the run\">";

    // Bins: one second each, or k seconds when there are too many seconds for the width.
    const double px_per_s = pw / span;
    const int k = std::max(1, static_cast<int>(std::ceil(3.0 / px_per_s)));
    struct Bin {
        std::int64_t ack = 0, retried = 0, failed = 0, attempts = 0;
    };
    std::map<std::int64_t, Bin> bins;
    for (const auto& b : r.timeline) {
        if (!std::isfinite(b.t_s)) continue;
        const auto idx = static_cast<std::int64_t>(std::floor(std::max(b.t_s, 0.0) / k));
        Bin& bin = bins[idx];
        bin.ack += b.acknowledged;
        bin.retried += b.retried_ok;
        bin.failed += b.failed;
        bin.attempts += b.retry_attempts;
    }
    double max_rate = 0;
    for (const auto& [idx, bin] : bins) {
        max_rate = std::max(max_rate, static_cast<double>(bin.ack + bin.retried + bin.failed) / k);
    }
    const double ystep = std::max(1.0, NiceStep(max_rate / 4));
    const double ymax = std::max(ystep, std::ceil(max_rate / ystep - 1e-9) * ystep);
    auto Y = [&](double v) { return bars_bottom - v / ymax * kBarsH; };

    // Zebra lanes, then phase bands, behind everything else.
    for (std::size_t li = 1; li < names.size(); li += 2) {
        s += Rect(kML, lanes_top + kLaneH * static_cast<double>(li + 1), pw, kLaneH, "#f1f3f5",
                  "fill-opacity=\".7\"") +
             "/>";
    }
    for (const auto& p : r.phases) {
        if (!std::isfinite(p.start_s) || !std::isfinite(p.end_s)) continue;
        const double x0 = X(std::min(p.start_s, p.end_s)), x1 = X(std::max(p.start_s, p.end_s));
        s += Rect(x0, bars_top, std::max(x1 - x0, 1.0), lanes_bottom - bars_top, "#e7f0fd",
                  "stroke=\"#a5c8f5\" stroke-width=\"1\"") +
             "><title>" + Esc(p.name) + " " + Fix(p.start_s, 1) + "\u2013" + Fix(p.end_s, 1) +
             " s</title></rect>";
    }
    for (const auto& l : labels) {
        s += Text(l.x, 10 + 16.0 * l.row + 11, Esc(l.text), "class=\"ph\"");
    }

    // Grid and axes.
    const double tstep = TimeStep(span);
    for (double t = 0; t <= span + 1e-9; t += tstep) {
        const double x = X(t);
        s += Line(x, bars_top, x, lanes_bottom, "#e9ecef");
        s += Text(x, bars_bottom + 15, Esc(TimeLabel(t, span)), "text-anchor=\"middle\"");
        if (bottom_axis) {
            s += Text(x, lanes_bottom + 15, Esc(TimeLabel(t, span)), "text-anchor=\"middle\"");
        }
    }
    for (double v = 0; v <= ymax + 1e-9; v += ystep) {
        const double y = Y(v);
        s += Line(kML, y, kW - kMR, y, v == 0 ? "#adb5bd" : "#e9ecef");
        s += Text(kML - 6, y + 4, Num(v), "text-anchor=\"end\"");
    }
    s += Text(
        14, bars_top + kBarsH / 2,
        k == 1 ? std::string("requests / s") : "requests / s (" + I(k) + " s avg)",
        "text-anchor=\"middle\" transform=\"rotate(-90 14 " + C(bars_top + kBarsH / 2) + ")\"");

    // Stacked bars: acknowledged, retried then failed on top. A non-zero count is at least
    // 1.5 px tall so that a few failures in a busy second still show.
    // A 1-px gap between bars, none when they are too thin for one.
    const double gap = k * px_per_s < 4 ? 0.0 : 1.0;
    const double bar_w = std::max(k * px_per_s - gap, 0.5);
    for (const auto& [idx, bin] : bins) {
        const double t0 = static_cast<double>(idx) * k;
        if (t0 >= span) continue;
        const double x = X(t0) + gap / 2;
        const double w = std::min(bar_w, kW - kMR - x);
        double y = bars_bottom;
        const std::string when = k == 1
                                     ? Num(t0) + "\u2013" + Num(t0 + 1) + " s"
                                     : Num(t0) + "\u2013" + Num(t0 + k) + " s (per-second average)";
        auto seg = [&](std::int64_t n, const char* color, const char* what) {
            if (n <= 0) return;
            double h = static_cast<double>(n) / k / ymax * kBarsH;
            h = std::max(h, color == kFailColor ? 3.0 : 1.5);
            h = std::min(h, y - bars_top);
            y -= h;
            s += Rect(x, y, w, h, color) + "><title>" + when + ": " + I(n) + " " + what +
                 "</title></rect>";
        };
        seg(bin.ack, kAckColor, "acknowledged");
        seg(bin.retried, kRetryColor,
            ("retried ok (" + I(bin.attempts) + " retried attempts)").c_str());
        seg(bin.failed, kFailColor, "failed");
        if (bin.failed > 0) {  // failures also mark the axis: they matter more than their share
            s += Rect(x, bars_bottom + 1, w, 3, kFailColor) + "><title>" + when + ": " +
                 I(bin.failed) + " failed</title></rect>";
        }
    }
    if (bins.empty() || max_rate == 0) {
        s += Text(kML + pw / 2, bars_top + kBarsH / 2, "no requests ended in this run",
                  "class=\"note\" text-anchor=\"middle\"");
    }

    // Lanes: gateway first, then one per replica.
    double lane_y = lanes_top;
    s += Line(kML, lanes_top - 2, kW - kMR, lanes_top - 2, "#ced4da");
    {
        const double cy = lane_y + kLaneH / 2;
        s += Text(kML - 8, cy + 4, "gateway", "class=\"lane\" text-anchor=\"end\"");
        s += Line(kML, cy, kW - kMR, cy, "#dee2e6", "stroke-dasharray=\"2 3\"");
        // Many changes (Lua endpoint updates, a long run): thin ticks, no lines over the bars.
        const bool dense = static_cast<double>(r.gateway.size()) * 12 > pw;
        for (const auto& g : r.gateway) {
            const double x = X(g.t_s);
            if (!dense) {
                s += Line(x, bars_top, x, bars_bottom, kGatewayColor,
                          "stroke-opacity=\".45\" stroke-dasharray=\"3 3\"");
            }
            s += (dense ? "<path d=\"M" + C(x) + " " + C(cy - 6) + "V" + C(cy + 6) +
                              "\" stroke-width=\"1.2\" stroke=\""
                        : "<path d=\"M" + C(x) + " " + C(cy - 6) + "L" + C(x + 5) + " " + C(cy) +
                              "L" + C(x) + " " + C(cy + 6) + "L" + C(x - 5) + " " + C(cy) +
                              "Z\" fill=\"") +
                 kGatewayColor + "\"><title>" + Esc(g.what) + " at " + Fix(g.t_s, 2) + " s" +
                 (g.detail.empty() ? std::string() : ": " + Esc(g.detail)) + "</title></path>";
        }
        if (r.gateway.empty()) {
            s += Text(kML + 6, cy + 4, "no gateway changes", "class=\"note\"");
        }
        lane_y += kLaneH;
    }

    // Lifecycle events per replica, in time order.
    std::map<std::string, std::vector<const LifecycleEvent*>> by_replica;
    for (const auto& e : r.lifecycle) by_replica[e.replica].push_back(&e);
    for (auto& [name, events] : by_replica) {
        std::stable_sort(
            events.begin(), events.end(),
            [](const LifecycleEvent* a, const LifecycleEvent* b) { return a->t_s < b->t_s; });
    }
    if (names.empty()) {
        s += Text(kML + 6, lane_y + kLaneH / 2 + 4,
                  r.config.mode == "black-box" ? "replica lifecycle not observed (black-box mode)"
                                               : "no replica lifecycle events",
                  "class=\"note\"");
    }
    for (std::size_t li = 0; li < names.size(); ++li) {
        const std::string& name = names[li];
        const double top = lane_y + static_cast<double>(li) * kLaneH;
        const double cy = top + kLaneH / 2;
        s += "<text x=\"" + C(kML - 8) + "\" y=\"" + C(cy + 4) +
             "\" class=\"lane\" text-anchor=\"end\"><title>" + Esc(name) + "</title>" +
             Esc(Truncate(name, 17)) + "</text>";

        const auto it = by_replica.find(name);
        if (it == by_replica.end()) continue;
        const auto& events = it->second;

        // Segments: consecutive events of the same class merge into one bar. After an exit
        // the replica is gone: later events (other than a new start) are only ticks, and a
        // "removed" then closes the time the gateway still routed to the dead replica.
        std::vector<Segment> segments;
        struct Ghost {
            double t0, t1;
        };
        std::vector<Ghost> ghosts;
        std::vector<const LifecycleEvent*> ticks;
        std::size_t merged = 0;
        bool dead = false;
        double dead_at = 0;
        for (std::size_t i = 0; i < events.size(); ++i) {
            const LifecycleEvent& e = *events[i];
            const std::string_view cls = StateClass(e.state);
            if (cls == "exited" || cls == "killed") {
                if (!dead) dead_at = e.t_s;
                dead = true;
                continue;
            }
            if (dead && e.state != "started") {
                if (e.state == "removed" && e.t_s > dead_at) ghosts.push_back({dead_at, e.t_s});
                ticks.push_back(&e);
                continue;
            }
            dead = false;
            const double t1 = i + 1 < events.size() ? events[i + 1]->t_s : span;
            std::string what = e.state + " " + Fix(e.t_s, 2) + " s";
            if (!e.detail.empty()) what += " (" + e.detail + ")";
            if (!segments.empty() && segments.back().cls == cls &&
                std::abs(segments.back().t1 - e.t_s) < 1e-9) {
                segments.back().t1 = t1;
                if (++merged < 6) {
                    segments.back().what += "; " + what;
                } else if (merged == 6) {
                    segments.back().what += "; \u2026";
                }
            } else {
                merged = 0;
                segments.push_back({cls, e.t_s, t1, std::move(what)});
            }
        }
        for (const auto& seg : segments) {
            const double x0 = X(seg.t0), x1 = X(seg.t1);
            s += Rect(x0, top + 4, std::max(x1 - x0, 1.0), kLaneH - 8, ClassColor(seg.cls),
                      "rx=\"2\"") +
                 "><title>" + Esc(name) + ": " + std::string(seg.cls) + " " + Fix(seg.t0, 2) +
                 "\u2013" + Fix(seg.t1, 2) + " s \u2014 " + Esc(seg.what) + "</title></rect>";
        }
        for (const auto& g : ghosts) {
            s += Line(X(g.t0), cy, X(g.t1), cy, "#e03131",
                      "stroke-width=\"2.5\" stroke-dasharray=\"4 3\"");
            s += Rect(X(g.t0), top + 3, X(g.t1) - X(g.t0), kLaneH - 6, "#e03131",
                      "fill-opacity=\".08\"") +
                 "><title>" + Esc(name) + ": gone but still in the upstream " + Fix(g.t0, 2) +
                 "\u2013" + Fix(g.t1, 2) + " s</title></rect>";
        }
        for (const LifecycleEvent* e : ticks) {
            const double x = X(e->t_s);
            s += "<path d=\"M" + C(x) + " " + C(top + 5) + "V" + C(top + kLaneH - 5) +
                 "\" stroke=\"#495057\" stroke-width=\"2\"><title>" + Esc(name) + ": " +
                 Esc(e->state) + " at " + Fix(e->t_s, 2) + " s" +
                 (e->detail.empty() ? std::string() : " (" + Esc(e->detail) + ")") +
                 "</title></path>";
        }
        // Ends: exited as a dark dot, killed as a red cross (one symbol when a kill and its
        // exit are reported together).
        for (std::size_t i = 0; i < events.size(); ++i) {
            const LifecycleEvent* e = events[i];
            const std::string_view cls = StateClass(e->state);
            if (cls != "exited" && cls != "killed") continue;
            std::string what = Esc(e->state) + " at " + Fix(e->t_s, 2) + " s" +
                               (e->detail.empty() ? std::string() : " (" + Esc(e->detail) + ")");
            bool killed = cls == "killed";
            bool skip = false;
            for (std::size_t j = 0; j < events.size(); ++j) {
                const LifecycleEvent* o = events[j];
                if (j == i || std::abs(o->t_s - e->t_s) > 0.5) continue;
                const std::string_view ocls = StateClass(o->state);
                if (cls == "exited" && ocls == "killed") skip = true;
                if (cls == "killed" && ocls == "exited") {
                    what += "; " + Esc(o->state) + " at " + Fix(o->t_s, 2) + " s" +
                            (o->detail.empty() ? std::string() : " (" + Esc(o->detail) + ")");
                }
            }
            if (skip) continue;
            const double x = X(e->t_s);
            const std::string title = "<title>" + Esc(name) + ": " + what + "</title>";
            if (!killed) {
                s += "<circle cx=\"" + C(x) + "\" cy=\"" + C(cy) +
                     "\" r=\"4.5\" fill=\"#495057\" stroke=\"#fff\" stroke-width=\"1.5\">" + title +
                     "</circle>";
            } else {
                s += "<path d=\"M" + C(x - 5) + " " + C(cy - 5) + "L" + C(x + 5) + " " + C(cy + 5) +
                     "M" + C(x + 5) + " " + C(cy - 5) + "L" + C(x - 5) + " " + C(cy + 5) +
                     "\" stroke=\"#c92a2a\" stroke-width=\"3\" stroke-linecap=\"round\">" + title +
                     "</path>";
            }
        }
    }
    s += "</svg>";
    return s;
}

std::string MsLabel(double ms) {
    if (ms >= 1000) return Num(RoundDigits(ms / 1000, 2)) + " s";
    if (ms >= 10) return Num(RoundDigits(ms, 0)) + " ms";
    return Num(RoundDigits(ms, 2)) + " ms";
}

std::string LatencySvg(const Report& r) {
    constexpr double kW = 780, kH = 300, kML = 58, kMR = 20, kMB = 40;
    // Buckets with a positive upper bound; the first one's lower bound continues the spacing.
    struct HBar {
        double lo, hi;
        std::int64_t n;
    };
    std::vector<HBar> bars;
    std::int64_t total = 0;
    {
        std::vector<std::pair<double, std::int64_t>> h;
        for (const auto& [upper, n] : r.latency_histogram) {
            if (std::isfinite(upper) && upper > 0) h.emplace_back(upper, n);
        }
        double ratio = h.size() >= 2 ? h[1].first / h[0].first : 2;
        if (!std::isfinite(ratio) || ratio <= 1.01) ratio = 2;
        for (std::size_t i = 0; i < h.size(); ++i) {
            const double lo = i == 0 ? h[0].first / ratio : h[i - 1].first;
            if (h[i].first <= lo) continue;
            bars.push_back({lo, h[i].first, h[i].second});
            total += std::max<std::int64_t>(h[i].second, 0);
        }
    }
    const Latency& l = r.latency_overall;
    struct Marker {
        const char* name;
        double ms;
        const char* color;
        const char* dash;
    };
    std::vector<Marker> markers;
    if (l.count > 0) {
        markers.push_back({"p50", l.p50_ms, "#1971c2", ""});
        markers.push_back({"p99", l.p99_ms, "#e8590c", ""});
        markers.push_back({"max", l.max_ms, "#868e96", "4 3"});
    }
    std::erase_if(markers, [](const Marker& m) { return !(m.ms > 0) || !std::isfinite(m.ms); });

    std::string s = "<svg id=\"latency\" viewBox=\"0 0 " + C(kW) + " " + C(kH) +
                    "\" role=\"img\" aria-label=\"latency distribution\">";
    const double rows = 3, mt = 10 + 15 * rows;
    const double ph = kH - mt - kMB, pw = kW - kML - kMR;
    if (bars.empty() && markers.empty()) {
        s += Rect(kML, mt, pw, ph, "#f8f9fa") + "/>";
        s += Text(kML + pw / 2, mt + ph / 2, "no acknowledged requests",
                  "class=\"note\" text-anchor=\"middle\"");
        return s + "</svg>";
    }
    double lmin = bars.empty() ? 1e300 : std::log10(bars.front().lo);
    double lmax = bars.empty() ? -1e300 : std::log10(bars.back().hi);
    for (const auto& m : markers) {
        lmin = std::min(lmin, std::log10(m.ms));
        lmax = std::max(lmax, std::log10(m.ms));
    }
    if (lmax - lmin < 0.5) {
        const double mid = (lmax + lmin) / 2;
        lmin = mid - 0.25;
        lmax = mid + 0.25;
    }
    const double pad = (lmax - lmin) * 0.02;
    lmin -= pad;
    lmax += pad;
    auto X = [&](double ms) { return kML + (std::log10(ms) - lmin) / (lmax - lmin) * pw; };
    std::int64_t max_n = 1;
    for (const auto& b : bars) max_n = std::max(max_n, b.n);
    const double ystep = std::max(1.0, NiceStep(static_cast<double>(max_n) / 4));
    const double ymax =
        std::max(ystep, std::ceil(static_cast<double>(max_n) / ystep - 1e-9) * ystep);
    auto Y = [&](double v) { return mt + ph - v / ymax * ph; };

    for (double v = 0; v <= ymax + 1e-9; v += ystep) {
        s += Line(kML, Y(v), kW - kMR, Y(v), v == 0 ? "#adb5bd" : "#e9ecef");
        s += Text(kML - 6, Y(v) + 4, Num(v), "text-anchor=\"end\"");
    }
    // X ticks: 1-2-5 per decade, or decades alone when that is too many.
    std::vector<double> ticks;
    for (int pass = 0; pass < 2; ++pass) {
        ticks.clear();
        for (int d = static_cast<int>(std::floor(lmin)); d <= static_cast<int>(std::ceil(lmax));
             ++d) {
            for (double m : {1.0, 2.0, 5.0}) {
                if (pass == 1 && m != 1.0) continue;
                const double v = m * std::pow(10.0, d);
                const double lv = std::log10(v);
                if (lv >= lmin && lv <= lmax) ticks.push_back(v);
            }
        }
        if (ticks.size() <= 12) break;
    }
    for (double v : ticks) {
        s += Line(X(v), mt + ph, X(v), mt + ph + 4, "#adb5bd");
        s += Line(X(v), mt, X(v), mt + ph, "#f1f3f5");
        s += Text(X(v), mt + ph + 16, Esc(MsLabel(v)), "text-anchor=\"middle\"");
    }
    s += Text(kML + pw / 2, kH - 6, "latency of acknowledged requests (log scale)",
              "text-anchor=\"middle\"");
    s += Text(14, mt + ph / 2, "requests",
              "text-anchor=\"middle\" transform=\"rotate(-90 14 " + C(mt + ph / 2) + ")\"");

    for (const auto& b : bars) {
        const double x0 = X(b.lo), x1 = X(b.hi);
        double h = static_cast<double>(b.n) / ymax * ph;
        if (b.n > 0) h = std::max(h, 1.5);
        const double pct = total > 0 ? 100.0 * static_cast<double>(b.n) / total : 0;
        s += Rect(x0 + 0.5, mt + ph - h, std::max(x1 - x0 - 1, 0.8), h, "#74c0fc",
                  "stroke=\"#4dabf7\" stroke-width=\".5\"") +
             "><title>" + Esc(MsLabel(b.lo)) + "\u2013" + Esc(MsLabel(b.hi)) + ": " + I(b.n) +
             " requests (" + Fix(pct, 1) + "%)</title></rect>";
    }
    // Markers with labels staggered into rows so that close percentiles stay readable.
    std::vector<double> row_end(static_cast<std::size_t>(rows), -1e300);
    for (const auto& m : markers) {
        const double x = X(m.ms);
        const std::string label = std::string(m.name) + " " +
                                  (m.ms < 1000 ? Num(RoundDigits(m.ms, 1)) + " ms" : MsLabel(m.ms));
        const double w = TextWidth(label, 11.5) + 6;
        double lx = std::clamp(x - w / 2, 2.0, kW - 2 - w);
        std::size_t row = 0;
        while (row + 1 < row_end.size() && row_end[row] > lx) ++row;
        row_end[row] = lx + w;
        const double ly = 10 + 15 * static_cast<double>(row) + 10;
        s += Line(x, ly + 3, x, mt + ph, m.color,
                  std::string("stroke-width=\"2\"") +
                      (*m.dash ? std::string(" stroke-dasharray=\"") + m.dash + "\"" : ""));
        s += Text(lx + w / 2, ly, Esc(label),
                  std::string("text-anchor=\"middle\" font-weight=\"600\" style=\"fill:") +
                      m.color + "\"");
    }
    return s + "</svg>";
}

std::string Row(std::initializer_list<std::string> cells, std::string_view cls = "") {
    std::string s = cls.empty() ? "<tr>" : "<tr class=\"" + std::string(cls) + "\">";
    for (const auto& c : cells) s += c;
    return s + "</tr>";
}

std::string Td(const std::string& escaped, bool num = false) {
    return (num ? "<td class=\"n\">" : "<td>") + escaped + "</td>";
}

/// The configuration as key/value pairs, two pairs a row; a long value gets a row of its own.
class KvTable {
  public:
    void Add(std::string_view key, std::string escaped_value, bool wide = false) {
        items_.push_back({std::string(key), std::move(escaped_value), wide});
    }
    std::string Html() const {
        std::string s = "<table class=\"kv\">";
        std::size_t open = 0;  // cells in the current row
        auto close_row = [&] {
            if (open == 1) s += "<td colspan=\"2\"></td>";
            if (open != 0) s += "</tr>";
            open = 0;
        };
        for (const auto& it : items_) {
            if (it.wide) {
                close_row();
                s += "<tr><th>" + it.key + "</th><td colspan=\"3\">" + it.value + "</td></tr>";
                continue;
            }
            if (open == 0) s += "<tr>";
            s += "<th>" + it.key + "</th><td>" + it.value + "</td>";
            if (++open == 2) close_row();
        }
        close_row();
        return s + "</table>";
    }

  private:
    struct Item {
        std::string key, value;
        bool wide;
    };
    std::vector<Item> items_;
};

std::string ConfigTable(const Report& r) {
    const RunConfig& c = r.config;
    const bool local = !BlackBox(c);
    KvTable t;
    t.Add("mode", Esc(c.mode));
    t.Add("scenario", Esc(c.scenario));
    t.Add("gateway", Esc(c.gateway));
    t.Add("duration", Fix(r.duration_s, 1) + " s");
    if (local) {
        t.Add("replicas", I(c.replicas) + (c.min_available > 0
                                               ? " (at least " + I(c.min_available) + " available)"
                                               : std::string()));
    }
    t.Add("concurrency", I(c.concurrency));
    t.Add("client retry", OnOff(c.client_retry));
    if (local) {
        t.Add("gateway retry", OnOff(c.gateway_retry));
        t.Add("drain delay",
              OnOff(c.service_drain_delay) +
                  (c.service_drain_delay ? " (" + Num(c.drain_delay_s) + " s)" : std::string()));
        t.Add("preStop", Esc(c.prestop.empty() ? "none" : c.prestop));
        t.Add("grace period", Num(c.grace_s) + " s");
        t.Add("endpoint lag",
              Num(c.endpoint_lag_min_s) + "\u2013" + Num(c.endpoint_lag_max_s) + " s");
    }
    t.Add("requests", "up to " + I(c.requests_target));
    t.Add("max duration", Num(c.max_duration_s) + " s");
    t.Add("work", I(c.work_ms_min) + "\u2013" + I(c.work_ms_max) + " ms");
    t.Add("ledger share", Num(c.ledger_share * 100) + "%");
    t.Add("rollout", r.rollout_start_s < 0
                         ? std::string("-")
                         : Fix(r.rollout_start_s, 1) + "\u2013" + Secs(r.rollout_end_s) + " s");
    t.Add("seed", std::to_string(c.seed));
    if (!c.target.empty()) t.Add("target", Esc(c.target), true);
    if (!c.store.empty()) {
        t.Add("store", Esc(c.store), true);
        const StoreBefore& b = r.store_before;
        if (b.read)
            t.Add("store before",
                  b.Empty() ? std::string("empty") : Esc(StoreBeforeText(b)) + " (earlier rows)",
                  true);
        else if (!b.error.empty())
            t.Add("store before", "not read: " + Esc(b.error), true);
        if (!r.run_id.empty()) t.Add("run accounts", "drill-" + Esc(r.run_id) + "-*", true);
    }
    if (!c.rollout_cmd.empty()) t.Add("rollout command", Esc(c.rollout_cmd), true);
    if (!r.started_at.empty()) t.Add("started", Esc(r.started_at), true);
    return t.Html();
}

std::string CountRow(std::string_view name, std::int64_t n, bool bad_if_nonzero,
                     const std::string& note = "") {
    const bool bad = bad_if_nonzero && n != 0;
    std::string st = bad_if_nonzero ? (bad ? "\u2717" : "\u2713") : "";
    return Row({"<td>" + std::string(name) +
                    (note.empty() ? "" : " <span class=\"note\">" + note + "</span>") + "</td>",
                Td(I(n), true), "<td class=\"st\">" + st + "</td>"},
               bad ? "bad" : (bad_if_nonzero ? "good" : ""));
}

std::string CountsTable(const Verdict& v) {
    std::string s = "<table>";
    s += CountRow("requests", v.requests, false);
    s += CountRow("acknowledged", v.acknowledged, false);
    s += CountRow("retried", v.retried, false);
    s += Row({Td("attempts in all"), Td(I(v.attempts), true), "<td></td>"}, "cause");
    s += CountRow("failed", v.failed, true);
    for (const auto& [cause, n] : v.failed_by_cause) {
        s += Row({Td(Esc(cause)), Td(I(n), true), "<td></td>"}, "cause");
    }
    s += CountRow("lost", v.lost, true);
    s += CountRow("duplicated", v.duplicated, true);
    if (v.half_done_checked) {
        s += CountRow("half-done", v.half_done, true);
    } else {
        s += Row({Td("half-done <span class=\"note\">(black-box mode)</span>"),
                  "<td class=\"n note\">not checked</td>", "<td class=\"st\"></td>"});
    }
    s += CountRow("balance mismatches", v.balance_mismatches, true);
    return s + "</table>";
}

std::string LatencyTable(const Report& r) {
    std::string s =
        "<table><tr><th></th><th class=\"n\">requests</th><th class=\"n\">p50</th>"
        "<th class=\"n\">p99</th><th class=\"n\">max</th></tr>";
    auto row = [](const char* name, const Latency& l) {
        if (l.count == 0) {
            return Row({Td(name), Td("0", true), Td("-", true), Td("-", true), Td("-", true)});
        }
        return Row({Td(name), Td(I(l.count), true), Td(Fix(l.p50_ms, 1) + " ms", true),
                    Td(Fix(l.p99_ms, 1) + " ms", true), Td(Fix(l.max_ms, 1) + " ms", true)});
    };
    s += row("overall", r.latency_overall);
    s += row("during rollout", r.latency_during_rollout);
    s += "</table>";
    return s;
}

std::string ReplicaTable(const Report& r) {
    if (r.replicas.empty()) {
        return std::string("<p class=\"note\">No replicas observed") +
               (r.config.mode == "black-box" ? " (black-box mode: the rollout command owns them)"
                                             : "") +
               ".</p>";
    }
    std::string s =
        "<table><tr><th>replica</th><th class=\"n\">pid</th><th class=\"n\">started</th>"
        "<th>ended by</th><th class=\"n\">termination start</th>"
        "<th class=\"n\">termination \u2192 exit</th><th class=\"n\">served</th>"
        "<th class=\"n\">served while draining</th><th>SIGKILLed</th><th>exit</th></tr>";
    for (const auto& rep : r.replicas) {
        const std::string ended =
            !rep.terminated ? "-" : (rep.by_scenario ? "scenario" : "end of run");
        s += Row(
            {Td(Esc(rep.name)), Td(rep.pid > 0 ? I(rep.pid) : "-", true),
             Td(Fix(rep.started_s, 2) + " s", true), Td(ended),
             Td(rep.termination_start_s < 0 ? "-" : Fix(rep.termination_start_s, 2) + " s", true),
             Td(rep.termination_to_exit_s < 0 ? "-" : Fix(rep.termination_to_exit_s, 2) + " s",
                true),
             Td(I(rep.served), true), Td(I(rep.served_while_draining), true),
             rep.sigkilled ? "<td class=\"yes\">yes</td>" : Td("no"),
             Td(rep.exit.empty() ? "-" : Esc(rep.exit))});
    }
    return s + "</table>";
}

std::string Swatch(const char* color, const std::string& label) {
    return "<span><i class=\"sw\" style=\"background:" + std::string(color) + "\"></i>" + label +
           "</span>";
}

std::string TimelineLegend(const Report& r) {
    std::string s = "<div class=\"legend\">";
    s += Swatch(kAckColor, "acknowledged (first attempt)");
    s += Swatch(kRetryColor, "acknowledged after retry");
    s += Swatch(kFailColor, "failed");
    s += "<i class=\"sep\"></i>";
    s += "<span><i class=\"sw\" style=\"background:#e7f0fd;border:1px solid #a5c8f5\"></i>"
         "scenario phase</span>";
    std::map<std::string, int> gw;
    for (const auto& g : r.gateway) ++gw[g.what];
    std::string gw_label = "gateway change";
    if (!gw.empty()) {
        gw_label += " (";
        bool first = true;
        for (const auto& [what, n] : gw) {
            if (!first) gw_label += ", ";
            first = false;
            std::string plural = what;
            if (n != 1 && !plural.empty() && plural.back() != 's') plural += 's';
            gw_label += I(n) + " " + Esc(plural);
        }
        gw_label += ")";
    }
    s += "<span><i class=\"sw\" style=\"background:" + std::string(kGatewayColor) +
         ";transform:rotate(45deg) scale(.75)\"></i>" + gw_label + "</span>";
    s += "<i class=\"sep\"></i>";
    s += Swatch(ClassColor("starting"), "starting");
    s += Swatch(ClassColor("serving"), "serving (ready, in upstream)");
    s += Swatch(ClassColor("draining"), "draining (removed, preStop, SIGTERM)");
    s += Swatch(ClassColor("closing"), "closing");
    s += "<span><i class=\"sw\" style=\"background:#495057;border-radius:50%\"></i>exited</span>";
    s += "<span><b style=\"color:#c92a2a;margin-right:5px\">\u2715</b>killed</span>";
    s += "<span><i class=\"sw\" style=\"height:0;width:16px;border-top:2.5px dashed #e03131;"
         "border-radius:0;vertical-align:3px\"></i>gone, still in the upstream</span>";
    return s + "</div>";
}

}  // namespace

std::string RenderHtml(const Report& r) {
    const Verdict& v = r.verdict;
    const bool ok = v.ok();
    const char* cls = ok ? "pass" : "fail";
    std::string s;
    s.reserve(64 * 1024);
    s += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
    s += "<title>rollsafe drill: " + std::string(ok ? "PASS" : "FAIL") + " \u2014 " +
         Esc(r.config.scenario) + " via " + Esc(r.config.gateway) + "</title>";
    s += "<style>" + std::string(kCss) + "</style></head><body><main>";

    s += "<header><h1>rollsafe drill</h1><span class=\"badge " + std::string(cls) + "\">" +
         (ok ? "PASS" : "FAIL") + "</span><span class=\"sub\">scenario <b>" +
         Esc(r.config.scenario) + "</b> \u00b7 gateway <b>" + Esc(r.config.gateway) +
         "</b> \u00b7 " + Esc(r.config.mode) + " mode \u00b7 " + Fix(r.duration_s, 1) + " s";
    if (!r.started_at.empty()) s += " \u00b7 " + Esc(r.started_at);
    s += "</span></header>";
    s += "<div class=\"line " + std::string(cls) + "\">" + Esc(VerdictLine(v)) + "</div>";
    auto chip = [](const char* name, bool on) {
        return "<span class=\"chip " + std::string(on ? "on" : "off") + "\">" + name + ": " +
               (on ? "on" : "off") + "</span>";
    };
    s += "<div class=\"chips\">" + chip("client retry", r.config.client_retry);
    if (!BlackBox(r.config)) {
        s += chip("gateway retry", r.config.gateway_retry) +
             chip("service drain delay", r.config.service_drain_delay) +
             "<span class=\"chip\">preStop: " +
             Esc(r.config.prestop.empty() ? "none" : r.config.prestop) + "</span>";
    }
    s += "</div>";

    s += "<div class=\"grid\" style=\"margin-top:16px\"><section class=\"card\"><h2>"
         "Configuration</h2>" +
         ConfigTable(r) + "</section><section class=\"card\"><h2>Verdict</h2>" + CountsTable(v) +
         "</section></div>";

    s += "<section class=\"card\"><h2>Timeline</h2>" + TimelineLegend(r) + TimelineSvg(r) +
         "</section>";

    s += "<section class=\"card\"><h2>Latency</h2><div class=\"row\"><div class=\"chart\">" +
         LatencySvg(r) + "</div><div class=\"side\">" + LatencyTable(r) +
         "<p class=\"note\">From the first attempt to the final answer, acknowledged requests "
         "only. Marked on the chart: overall p50, p99 and max.</p></div></div></section>";

    s += "<section class=\"card\"><h2>Replicas</h2>" + ReplicaTable(r) + "</section>";

    s += "<section class=\"card\"><h2>Problems</h2>";
    if (v.problems.empty()) {
        s += "<p class=\"note\">None.</p>";
    } else {
        constexpr std::size_t kShown = 20;
        s += "<ol class=\"problems\">";
        for (std::size_t i = 0; i < v.problems.size() && i < kShown; ++i) {
            s += "<li>" + Esc(v.problems[i]) + "</li>";
        }
        s += "</ol>";
        if (v.problems.size() > kShown) {
            s += "<details><summary>" + std::to_string(v.problems.size() - kShown) +
                 " more</summary><ol class=\"problems\" start=\"" + std::to_string(kShown + 1) +
                 "\">";
            for (std::size_t i = kShown; i < v.problems.size(); ++i) {
                s += "<li>" + Esc(v.problems[i]) + "</li>";
            }
            s += "</ol></details>";
        }
    }
    if (v.earlier_problems != 0) {
        s += "<h3>Already in the store before this run (not counted)</h3><p class=\"note\">" +
             I(v.earlier_problems) +
             " problems in rows that are not this run's were there when it started; "
             "<code>rollsafe audit</code> lists them all.</p><ol class=\"problems\">";
        for (const auto& e : v.earlier) s += "<li>" + Esc(e) + "</li>";
        s += "</ol>";
    }
    s += "</section>";
    s += "<footer>rollsafe drill report \u00b7 self-contained page: no script, no external "
         "resources.</footer></main></body></html>\n";
    return s;
}

}  // namespace rollsafe::drill
