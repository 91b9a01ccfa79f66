// RS006-RS009 for Kong: declarative configs (kong.yaml), kong.conf and KongUpstreamPolicy.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "lint/rules.hpp"
#include "lint/yaml_access.hpp"
#include "rollsafe/util/duration.hpp"

namespace rollsafe::lint {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kTag = "idempotency-keys";
/// Kong's defaults: Service.retries and upstream_keepalive_idle_timeout (seconds).
constexpr long long kDefaultRetries = 5;
constexpr double kDefaultKeepaliveSeconds = 60;

std::string FormatSecondsValue(double s) {
    if (s == std::floor(s)) return std::to_string(static_cast<long long>(s)) + "s";
    return std::to_string(s) + "s";
}

bool HasTag(const YAML::Node& object) {
    for (const auto& t : Items(At(object, {"tags"})))
        if (Str(t).value_or("") == kTag) return true;
    return false;
}

bool AcceptsPost(const YAML::Node& route) {
    const Entry methods = Get(route, "methods");
    if (!methods || methods.value.IsNull()) return true;  // no methods: every method
    for (const auto& m : Items(methods.value)) {
        std::string s = Str(m).value_or("");
        std::transform(s.begin(), s.end(), s.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        if (s == "POST") return true;
    }
    return false;
}

std::string RouteName(const YAML::Node& route, std::size_t index) {
    if (auto n = Str(At(route, {"name"}))) return *n;
    return "#" + std::to_string(index + 1);
}

/// The service a top-level route names: `service: NAME` or `service: {name: NAME}`.
std::string RouteService(const YAML::Node& route) {
    const YAML::Node s = At(route, {"service"});
    if (auto name = Str(s)) return *name;
    if (auto name = Str(At(s, {"name"}))) return *name;
    if (auto id = Str(At(s, {"id"}))) return *id;
    return "";
}

void CheckKeepalive(const YamlDoc& doc, const IdleTimeout& idle, std::vector<Finding>* out) {
    const YAML::Node& root = doc.root;
    std::vector<Entry> found;
    if (Entry e = Get(root, "upstream_keepalive_idle_timeout")) found.push_back(e);
    for (std::string_view list : {"services", "upstreams"})
        for (const auto& item : Items(At(root, {list})))
            if (Entry e = Get(item, "upstream_keepalive_idle_timeout")) found.push_back(e);
    auto check = [&](double seconds, const YAML::Node& at, bool is_default) {
        if (seconds * 1000 < static_cast<double>(idle.value.count())) return;
        out->push_back(MakeFinding(
            doc, at, "RS006", Severity::kError,
            "Kong keeps idle upstream connections for upstream_keepalive_idle_timeout " +
                FormatSecondsValue(seconds) + (is_default ? " (Kong's default)" : "") +
                ", not less than the service's --idle-timeout " + util::FormatDuration(idle.value) +
                " (" + idle.source +
                "): Kong may send a request on a connection the replica is closing",
            "set upstream_keepalive_idle_timeout below " + util::FormatDuration(idle.value) +
                " (e.g. 60) or raise --idle-timeout"));
    };
    if (found.empty()) {
        check(kDefaultKeepaliveSeconds, Get(root, "_format_version").key, true);
        return;
    }
    for (const Entry& e : found) {
        if (auto v = Number(e.value); v && *v >= 0) {
            check(*v, e.key, false);
        } else {
            out->push_back(MakeFinding(doc, e.key, "parse", Severity::kError,
                                       "upstream_keepalive_idle_timeout: expected a number of "
                                       "seconds, found " +
                                           Describe(e.value),
                                       "write a number of seconds, e.g. 60"));
        }
    }
}

void CheckRetries(const YamlDoc& doc, std::vector<Finding>* out) {
    const YAML::Node& root = doc.root;
    const auto top_routes = Items(At(root, {"routes"}));
    for (const auto& service : Items(At(root, {"services"}))) {
        if (!service.IsMap()) continue;
        const std::string name = Str(At(service, {"name"})).value_or("(unnamed)");
        const Entry retries = Get(service, "retries");
        long long n = kDefaultRetries;
        if (retries && !retries.value.IsNull()) {
            auto v = Int(retries.value);
            if (!v) {
                out->push_back(MakeFinding(doc, retries.key, "parse", Severity::kError,
                                           "services[" + name +
                                               "].retries: expected an integer, found " +
                                               Describe(retries.value),
                                           "write a whole number"));
                continue;
            }
            n = *v;
        }
        const YAML::Node at = retries ? retries.key : service;
        const bool service_marked = HasTag(service);
        std::vector<YAML::Node> routes = Items(At(service, {"routes"}));
        for (const auto& r : top_routes)
            if (!name.empty() && RouteService(r) == name) routes.push_back(r);
        std::vector<std::string> unmarked;
        bool any_marked = service_marked;
        for (std::size_t i = 0; i < routes.size(); ++i) {
            if (!routes[i].IsMap() || !AcceptsPost(routes[i])) continue;
            if (service_marked || HasTag(routes[i])) {
                any_marked = true;
            } else {
                unmarked.push_back(RouteName(routes[i], i));
            }
        }
        const std::string retries_text =
            "retries " + std::to_string(n) + (retries ? "" : " (Kong's default)");
        if (n > 0 && !unmarked.empty()) {
            std::string list;
            for (const auto& u : unmarked) list += (list.empty() ? "" : ", ") + u;
            out->push_back(MakeFinding(
                doc, at, "RS007", Severity::kError,
                "service '" + name + "' has " + retries_text + " and its route(s) " + list +
                    " accept POST without the tag '" + std::string(kTag) +
                    "': Kong re-sends a POST that a closing replica may already have executed",
                "tag the service (or the routes) '" + std::string(kTag) +
                    "' if every POST carries an Idempotency-Key, else set retries: 0 or limit "
                    "the routes' methods"));
        }
        if (n == 0 && any_marked) {
            out->push_back(
                MakeFinding(doc, at, "RS008", Severity::kWarning,
                            "service '" + name +
                                "' carries idempotency keys but has retries 0: a POST "
                                "that meets a closing replica becomes a 502 Kong could have "
                                "retried safely",
                            "set retries: 3 (or more)"));
        }
    }
}

/// A field by its declarative (snake_case) or KongUpstreamPolicy (camelCase) name.
YAML::Node Field(const YAML::Node& map, std::string_view snake, std::string_view camel) {
    if (Entry e = Get(map, snake)) return e.value;
    return At(map, {camel});
}

bool Positive(const YAML::Node& n) { return Number(n).value_or(0) > 0; }

void CheckHealthchecks(const YamlDoc& doc, const YAML::Node& owner, const Entry& healthchecks,
                       const std::string& what, std::vector<Finding>* out) {
    const YAML::Node& hc = healthchecks.value;
    const Entry active = Get(hc, "active");
    const YAML::Node passive = At(hc, {"passive"});
    const bool active_on = Positive(At(active.value, {"healthy", "interval"})) ||
                           Positive(At(active.value, {"unhealthy", "interval"}));
    const YAML::Node unhealthy = At(passive, {"unhealthy"});
    const bool passive_on = Positive(Field(unhealthy, "http_failures", "httpFailures")) ||
                            Positive(Field(unhealthy, "tcp_failures", "tcpFailures")) ||
                            Positive(At(unhealthy, {"timeouts"}));
    if (!active_on && !passive_on) {
        out->push_back(MakeFinding(
            doc, healthchecks ? healthchecks.key : owner, "RS009", Severity::kError,
            what + " has neither active health checks (healthy/unhealthy interval > 0) nor "
                   "passive ones (unhealthy http_failures/tcp_failures/timeouts > 0): Kong "
                   "keeps balancing onto a replica that is draining or gone",
            "add healthchecks.active {http_path: /readyz, healthy.interval: 2, "
            "unhealthy.interval: 1, unhealthy.http_failures: 1} and passive "
            "unhealthy.tcp_failures/http_failures"));
        return;
    }
    if (!active_on) return;
    const std::string type = Str(At(active.value, {"type"})).value_or("http");
    const std::string path = Str(Field(active.value, "http_path", "httpPath")).value_or("/");
    if (type == "tcp" || path != "/readyz") {
        out->push_back(
            MakeFinding(doc, active.key, "RS009", Severity::kWarning,
                        what + "'s active health check probes " +
                            (type == "tcp" ? std::string("a TCP connect") : "'" + path + "'") +
                            ", not /readyz: a draining replica still looks healthy to Kong",
                        "set healthchecks.active.http_path: /readyz (type: http)"));
    }
}

void CheckUpstreams(const YamlDoc& doc, std::vector<Finding>* out) {
    for (const auto& upstream : Items(At(doc.root, {"upstreams"}))) {
        if (!upstream.IsMap()) continue;
        const std::string name = Str(At(upstream, {"name"})).value_or("(unnamed)");
        CheckHealthchecks(doc, upstream, Get(upstream, "healthchecks"),
                          "Kong upstream '" + name + "'", out);
    }
}

void CheckKongConf(const KongConfFile& f, const IdleTimeout& idle, std::vector<Finding>* out) {
    auto report = [&](const KongConfFile::Value& v, const std::string& key,
                      std::optional<milliseconds> d) {
        if (!d) {
            out->push_back(Finding{f.source->name, v.line, 0, Severity::kError, "parse",
                                   key + ": '" + v.text + "' is not a time value",
                                   "write a number of seconds"});
            return;
        }
        if (*d < idle.value) return;
        out->push_back(
            Finding{f.source->name, v.line, 0, Severity::kError, "RS006",
                    key + " " + v.text + " is not less than the service's --idle-timeout " +
                        util::FormatDuration(idle.value) + " (" + idle.source +
                        "): Kong may send a request on a connection the replica is closing",
                    "set " + key + " below " + util::FormatDuration(idle.value) +
                        " or raise "
                        "--idle-timeout"});
    };
    if (auto it = f.entries.find("upstream_keepalive_idle_timeout"); it != f.entries.end()) {
        std::optional<milliseconds> d;
        char* end = nullptr;
        const double s = std::strtod(it->second.text.c_str(), &end);
        if (!it->second.text.empty() && end == it->second.text.c_str() + it->second.text.size() &&
            std::isfinite(s) && s >= 0)
            d = milliseconds(static_cast<long long>(s * 1000));
        report(it->second, it->first, d);
    }
    if (auto it = f.entries.find("nginx_upstream_keepalive_timeout"); it != f.entries.end())
        report(it->second, it->first, ParseNginxTime(it->second.text));
}

}  // namespace

void CheckKong(const Model& model, const IdleTimeout& idle, std::vector<Finding>* out) {
    for (const auto& doc : model.kong) {
        CheckKeepalive(doc, idle, out);
        CheckRetries(doc, out);
        CheckUpstreams(doc, out);
    }
    for (const auto& f : model.kong_conf) CheckKongConf(f, idle, out);
    for (const auto& doc : model.objects) {
        if (KindOf(doc.root) != "KongUpstreamPolicy") continue;
        const Entry spec = Get(doc.root, "spec");
        CheckHealthchecks(doc, spec ? spec.key : doc.root, Get(spec.value, "healthchecks"),
                          "KongUpstreamPolicy '" + NameOf(doc.root) + "'", out);
    }
}

}  // namespace rollsafe::lint
