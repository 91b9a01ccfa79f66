// RS001-RS005 and RS010: Kubernetes workloads that run `rollsafe serve`.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "lint/rules.hpp"
#include "lint/yaml_access.hpp"
#include "rollsafe/util/duration.hpp"

namespace rollsafe::lint {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kDefaultDrainDelay{5'000};
constexpr milliseconds kDefaultShutdownTimeout{25'000};
constexpr milliseconds kDefaultIdleTimeout{75'000};
constexpr milliseconds kMargin{5'000};
constexpr long long kDefaultGraceSeconds = 30;

std::vector<std::string> SplitWords(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string w;
    while (in >> w) out.push_back(w);
    return out;
}

/// command + args, each element split on whitespace so that `sh -c "exec rollsafe serve
/// --drain-delay 10s"` reads like the exec form.
std::vector<std::string> CommandWords(const YAML::Node& container) {
    std::vector<std::string> words;
    for (std::string_view key : {"command", "args"}) {
        for (const auto& item : Items(At(container, {key}))) {
            if (auto s = Str(item))
                for (auto& w : SplitWords(*s)) words.push_back(std::move(w));
        }
    }
    return words;
}

bool IsRollsafeContainer(const YAML::Node& container) {
    if (auto image = Str(At(container, {"image"}));
        image && image->find("rollsafe") != std::string::npos)
        return true;
    const auto words = CommandWords(container);
    for (std::size_t i = 0; i + 1 < words.size(); ++i) {
        std::string w = words[i];
        while (!w.empty() && (w.back() == '"' || w.back() == '\'')) w.pop_back();
        if (w.ends_with("rollsafe") && words[i + 1] == "serve") return true;
    }
    return false;
}

/// A value of a container's environment, as far as the linted files tell.
struct EnvValue {
    std::optional<std::string> value;  ///< nullopt: set, but from somewhere not linted
    std::string origin;                ///< "env", "ConfigMap rollsafe", "a Secret"...
};

class Workload {
  public:
    Workload(const Model& model, const YamlDoc& doc) : model_(model), doc_(doc) {}

    const ConfigMapData* FindConfigMap(const std::string& name) const {
        const std::string ns = NamespaceOf(doc_.root);
        for (const auto& cm : model_.config_maps) {
            if (cm.name != name) continue;
            if (!ns.empty() && !cm.name_space.empty() && ns != cm.name_space) continue;
            return &cm;
        }
        return nullptr;
    }

    /// The container's environment: envFrom first, then env (which overrides it, as in
    /// Kubernetes).
    /// `*unresolved` lists the envFrom sources that are not in the linted files.
    std::map<std::string, EnvValue> Environment(const YAML::Node& container,
                                                std::vector<std::string>* unresolved) const {
        std::map<std::string, EnvValue> env;
        for (const auto& from : Items(At(container, {"envFrom"}))) {
            const std::string prefix = Str(At(from, {"prefix"})).value_or("");
            if (auto name = Str(At(from, {"configMapRef", "name"}))) {
                if (const ConfigMapData* cm = FindConfigMap(*name)) {
                    for (const auto& [k, v] : cm->data)
                        env[prefix + k] = EnvValue{v, "ConfigMap " + *name};
                } else {
                    unresolved->push_back("ConfigMap " + *name);
                }
            } else if (auto secret = Str(At(from, {"secretRef", "name"}))) {
                unresolved->push_back("Secret " + *secret);
            }
        }
        for (const auto& item : Items(At(container, {"env"}))) {
            auto name = Str(At(item, {"name"}));
            if (!name) continue;
            if (Entry v = Get(item, "value"); v) {
                env[*name] = EnvValue{Str(v.value).value_or(""), "env"};
            } else if (auto cm_name = Str(At(item, {"valueFrom", "configMapKeyRef", "name"}))) {
                const auto key = Str(At(item, {"valueFrom", "configMapKeyRef", "key"}));
                const ConfigMapData* cm = FindConfigMap(*cm_name);
                if (cm != nullptr && key && cm->data.count(*key) > 0) {
                    env[*name] = EnvValue{cm->data.at(*key), "ConfigMap " + *cm_name};
                } else {
                    env[*name] = EnvValue{std::nullopt, "ConfigMap " + *cm_name};
                }
            } else if (auto secret = Str(At(item, {"valueFrom", "secretKeyRef", "name"}))) {
                env[*name] = EnvValue{std::nullopt, "Secret " + *secret};
            } else if (Get(item, "valueFrom")) {
                env[*name] = EnvValue{std::nullopt, "a valueFrom reference"};
            }
        }
        return env;
    }

    /// A `rollsafe serve` duration flag as the container will see it: the command line wins
    /// over ROLLSAFE_<FLAG>, which wins over the default.
    struct Setting {
        milliseconds value{};
        std::string origin;  ///< for messages: "--drain-delay 10s in args", "default"
    };
    Setting Resolve(const YAML::Node& container, const std::string& flag,
                    milliseconds fallback) const {
        std::vector<std::string> unresolved;
        const auto env = Environment(container, &unresolved);
        const auto words = CommandWords(container);
        auto expand = [&](const std::string& v) {
            // Kubernetes expands $(VAR) in command and args from the container's environment,
            // once: an expanded value is not scanned again (it may itself contain "$(").
            std::string out;
            std::size_t i = 0;
            while (i < v.size()) {
                const auto at = v.find("$(", i);
                const auto close = at == std::string::npos ? at : v.find(')', at);
                if (close == std::string::npos) {
                    out += v.substr(i);
                    break;
                }
                out += v.substr(i, at - i);
                const auto it = env.find(v.substr(at + 2, close - at - 2));
                out += it != env.end() && it->second.value ? *it->second.value
                                                           : v.substr(at, close - at + 1);
                i = close + 1;
            }
            return out;
        };
        const std::string dashed = "--" + flag;
        std::optional<std::string> from_args;
        for (std::size_t i = 0; i < words.size(); ++i) {
            if (words[i] == dashed && i + 1 < words.size()) from_args = expand(words[i + 1]);
            if (words[i].starts_with(dashed + "="))
                from_args = expand(words[i].substr(dashed.size() + 1));
        }
        std::string env_name = "ROLLSAFE_";
        for (char c : flag) env_name += c == '-' ? '_' : static_cast<char>(std::toupper(c));
        const std::string fallback_text = "default " + util::FormatDuration(fallback);
        if (from_args) {
            if (auto d = util::ParseDuration(*from_args))
                return {*d, dashed + " " + *from_args + " in the container's args"};
            return {fallback, fallback_text + ": " + dashed + " '" + *from_args +
                                  "' in args is not a duration (serve would exit 2)"};
        }
        if (auto it = env.find(env_name); it != env.end()) {
            if (!it->second.value)
                return {fallback, fallback_text + " assumed: " + env_name + " comes from " +
                                      it->second.origin + ", not in the linted files"};
            if (auto d = util::ParseDuration(*it->second.value))
                return {*d, env_name + "=" + *it->second.value + " (" + it->second.origin + ")"};
            return {fallback, fallback_text + ": " + env_name + "='" + *it->second.value +
                                  "' is not a duration (serve would exit 2)"};
        }
        if (!unresolved.empty())
            return {fallback, fallback_text + " assumed: envFrom " + unresolved.front() +
                                  " is not in the linted files"};
        return {fallback, fallback_text};
    }

  private:
    const Model& model_;
    const YamlDoc& doc_;
};

/// An integer field; a present value of another type is a parse finding and reads as absent.
std::optional<long long> IntField(const YamlDoc& doc, const YAML::Node& map, std::string_view key,
                                  const std::string& path, std::vector<Finding>* out) {
    Entry e = Get(map, key);
    if (!e || e.value.IsNull()) return std::nullopt;
    if (auto v = Int(e.value)) return v;
    out->push_back(MakeFinding(doc, e.key, "parse", Severity::kError,
                               path + ": expected an integer, found " + Describe(e.value),
                               "write a whole number"));
    return std::nullopt;
}

std::string Seconds(long long s) { return std::to_string(s) + "s"; }

/// `sleep N` inside an exec hook's words: the total of every sleep, nullopt when none.
std::optional<milliseconds> SleepInWords(const std::vector<std::string>& words) {
    std::optional<milliseconds> total;
    for (std::size_t i = 0; i + 1 < words.size(); ++i) {
        std::string w = words[i];
        if (!(w == "sleep" || w.ends_with("/sleep"))) continue;
        std::string arg = words[i + 1];
        while (!arg.empty() && (arg.back() == ';' || arg.back() == '"' || arg.back() == '\''))
            arg.pop_back();
        double factor = 1000;
        if (!arg.empty() && std::string_view("smhd").find(arg.back()) != std::string_view::npos) {
            factor = arg.back() == 's'   ? 1000
                     : arg.back() == 'm' ? 60'000
                     : arg.back() == 'h' ? 3'600'000
                                         : 86'400'000;
            arg.pop_back();
        }
        char* end = nullptr;
        const double n = std::strtod(arg.c_str(), &end);
        if (arg.empty() || end != arg.c_str() + arg.size() || !std::isfinite(n) || n < 0) continue;
        total = total.value_or(milliseconds(0)) + milliseconds(static_cast<long long>(n * factor));
    }
    return total;
}

struct PreStop {
    milliseconds wait{0};
    std::string what;  ///< "preStop sleep 20s + ", or "" when it adds nothing
};

PreStop ReadPreStop(const YamlDoc& doc, const YAML::Node& pre_stop, std::vector<Finding>* out) {
    PreStop p;
    if (Entry sleep = Get(pre_stop, "sleep")) {
        if (auto s = IntField(doc, sleep.value, "seconds", "lifecycle.preStop.sleep.seconds", out);
            s && *s > 0) {
            p.wait = milliseconds(*s * 1000);
            p.what = "preStop sleep " + Seconds(*s) + " + ";
        }
        return p;
    }
    if (Entry exec = Get(pre_stop, "exec")) {
        std::vector<std::string> words;
        for (const auto& item : Items(At(exec.value, {"command"})))
            if (auto s = Str(item))
                for (auto& w : SplitWords(*s)) words.push_back(std::move(w));
        if (auto d = SleepInWords(words); d && d->count() > 0) {
            p.wait = *d;
            p.what = "preStop exec sleep " + util::FormatDuration(*d) + " + ";
        }
    }
    // httpGet /lifecycle/prestop blocks for the drain delay and the SIGTERM after it goes
    // straight to closing: its wait is the drain delay, counted once below.
    return p;
}

std::map<std::string, std::string> Labels(const YAML::Node& map) {
    std::map<std::string, std::string> labels;
    if (!map.IsMap()) return labels;
    for (auto it = map.begin(); it != map.end(); ++it) {
        auto k = Str(it->first);
        auto v = Str(it->second);
        if (k && v) labels[*k] = *v;
    }
    return labels;
}

std::string FormatLabels(const std::map<std::string, std::string>& labels) {
    std::string s;
    for (const auto& [k, v] : labels) s += (s.empty() ? "" : ",") + k + "=" + v;
    return s.empty() ? "(no labels)" : s;
}

/// Whether a label selector (policy/v1 semantics: an empty selector selects every pod, an
/// absent one none) selects pods with `labels`.
bool Selects(const YAML::Node& selector, const std::map<std::string, std::string>& labels) {
    if (!selector.IsMap()) return false;
    if (Entry ml = Get(selector, "matchLabels"); ml && !ml.value.IsNull()) {
        if (!ml.value.IsMap()) return false;
        for (const auto& [k, v] : Labels(ml.value)) {
            auto it = labels.find(k);
            if (it == labels.end() || it->second != v) return false;
        }
    }
    for (const auto& expr : Items(At(selector, {"matchExpressions"}))) {
        const auto key = Str(At(expr, {"key"}));
        const auto op = Str(At(expr, {"operator"}));
        if (!key || !op) return false;
        std::vector<std::string> values;
        for (const auto& v : Items(At(expr, {"values"})))
            if (auto s = Str(v)) values.push_back(*s);
        const auto it = labels.find(*key);
        const bool has = it != labels.end();
        const bool in = has && std::find(values.begin(), values.end(), it->second) != values.end();
        if (*op == "In" && !in) return false;
        if (*op == "NotIn" && in) return false;
        if (*op == "Exists" && !has) return false;
        if (*op == "DoesNotExist" && has) return false;
        if (*op != "In" && *op != "NotIn" && *op != "Exists" && *op != "DoesNotExist") return false;
    }
    return true;
}

bool AnyPdbSelects(const Model& model, const std::string& ns,
                   const std::map<std::string, std::string>& labels) {
    if (labels.empty()) return false;
    for (const auto& doc : model.objects) {
        if (KindOf(doc.root) != "PodDisruptionBudget") continue;
        const std::string pdb_ns = NamespaceOf(doc.root);
        if (!ns.empty() && !pdb_ns.empty() && ns != pdb_ns) continue;
        if (Selects(At(doc.root, {"spec", "selector"}), labels)) return true;
    }
    return false;
}

/// The first of `candidates` that exists, for a finding's line.
YAML::Node FirstKey(std::initializer_list<Entry> candidates, const YAML::Node& fallback) {
    for (const Entry& e : candidates)
        if (e) return e.key;
    return fallback;
}

void CheckCapacity(const YamlDoc& doc, const Model& model, const std::string& kind,
                   std::vector<Finding>* out) {
    const YAML::Node& obj = doc.root;
    const Entry spec = Get(obj, "spec");
    const Entry tmpl = Get(spec.value, "template");
    const Entry tmpl_labels = Get(At(tmpl.value, {"metadata"}), "labels");
    const auto labels = Labels(tmpl_labels.value);
    const YAML::Node labels_at = FirstKey({tmpl_labels, tmpl, spec}, obj);
    const bool pdb = AnyPdbSelects(model, NamespaceOf(obj), labels);
    const std::string add_pdb =
        "add a PodDisruptionBudget (maxUnavailable: 1) whose "
        "spec.selector.matchLabels is a subset of " +
        FormatLabels(labels);

    if (kind == "StatefulSet") {
        if (!pdb)
            out->push_back(MakeFinding(
                doc, labels_at, "RS004", Severity::kError,
                "no PodDisruptionBudget in the linted files selects the StatefulSet's pods (" +
                    FormatLabels(labels) + "): a node drain evicts them without limit",
                add_pdb));
        return;
    }

    const Entry strategy = Get(spec.value, "strategy");
    const Entry type = Get(strategy.value, "type");
    const Entry rolling = Get(strategy.value, "rollingUpdate");
    const Entry max_unavailable = Get(rolling.value, "maxUnavailable");
    if (Str(type.value).value_or("") == "Recreate") {
        out->push_back(MakeFinding(
            doc, type.key, "RS004", Severity::kError,
            "strategy Recreate stops every pod before new ones start: each rollout is an outage",
            "use type: RollingUpdate with rollingUpdate.maxUnavailable: 0 and maxSurge: 1"));
        return;
    }
    std::string unavailable = "25% (the default)";
    bool zero = false;
    if (max_unavailable && !max_unavailable.value.IsNull()) {
        if (auto n = Int(max_unavailable.value)) {
            zero = *n == 0;
            unavailable = std::to_string(*n);
        } else if (auto s = Str(max_unavailable.value);
                   s && s->size() > 1 && s->back() == '%' &&
                   std::all_of(s->begin(), s->end() - 1, [](char c) { return std::isdigit(c); })) {
            // A percentage counts even when it rounds down to 0 pods today: replicas change.
            zero = s->find_first_not_of('0') == s->size() - 1;
            unavailable = *s;
        } else {
            out->push_back(MakeFinding(doc, max_unavailable.key, "parse", Severity::kError,
                                       "spec.strategy.rollingUpdate.maxUnavailable: expected an "
                                       "integer or a percentage, found " +
                                           Describe(max_unavailable.value),
                                       "write 0, 1 or a percentage such as 25%"));
            return;
        }
    }
    if (pdb) return;
    if (!zero) {
        out->push_back(MakeFinding(
            doc, FirstKey({max_unavailable, rolling, strategy, spec}, obj), "RS004",
            Severity::kError,
            "maxUnavailable " + unavailable +
                " lets a rolling update take serving pods away, and no PodDisruptionBudget in "
                "the linted files selects the pods (" +
                FormatLabels(labels) + ")",
            "set spec.strategy.rollingUpdate.maxUnavailable: 0 (with maxSurge: 1), or " + add_pdb));
    } else {
        out->push_back(MakeFinding(doc, labels_at, "RS004", Severity::kWarning,
                                   "no PodDisruptionBudget in the linted files selects the pods (" +
                                       FormatLabels(labels) +
                                       "): a node drain evicts every replica on the node at once",
                                   add_pdb));
    }
}

void CheckReplicas(const YamlDoc& doc, std::vector<Finding>* out) {
    const Entry spec = Get(doc.root, "spec");
    const Entry replicas = Get(spec.value, "replicas");
    const auto n = IntField(doc, spec.value, "replicas", "spec.replicas", out);
    if (replicas && !replicas.value.IsNull() && !n) return;  // reported as a parse finding
    const long long count = n.value_or(1);
    if (count >= 2) return;
    out->push_back(
        MakeFinding(doc, replicas ? replicas.key : spec.key, "RS005", Severity::kError,
                    "replicas " + std::to_string(count) + (replicas ? "" : " (the default)") +
                        ": while the only replica drains or restarts nothing else serves",
                    "set spec.replicas: 2 or more"));
}

void CheckContainer(const YamlDoc& doc, const Workload& w, const YAML::Node& pod_spec,
                    const Entry& pod_spec_entry, const YAML::Node& c, std::vector<Finding>* out) {
    const std::string cname = Str(At(c, {"name"})).value_or("?");
    const std::string who = "container '" + cname + "'";
    const auto drain = w.Resolve(c, "drain-delay", kDefaultDrainDelay);
    const auto shutdown = w.Resolve(c, "shutdown-timeout", kDefaultShutdownTimeout);

    // RS003
    const Entry lifecycle = Get(c, "lifecycle");
    const Entry pre_stop = Get(lifecycle.value, "preStop");
    if (!pre_stop || !pre_stop.value.IsMap()) {
        out->push_back(MakeFinding(
            doc, c, "RS003", Severity::kError,
            who + " has no lifecycle.preStop hook: the pod is removed from the endpoints while "
                  "it already closes connections",
            "add lifecycle.preStop.httpGet {path: /lifecycle/prestop, port: 9090} (the admin "
            "port)"));
    }

    // RS001
    const PreStop wait = ReadPreStop(doc, pre_stop.value, out);
    const Entry grace = Get(pod_spec, "terminationGracePeriodSeconds");
    const auto grace_value = IntField(doc, pod_spec, "terminationGracePeriodSeconds",
                                      "spec.template.spec.terminationGracePeriodSeconds", out);
    if (!(grace && !grace.value.IsNull() && !grace_value)) {
        const long long grace_s = grace_value.value_or(kDefaultGraceSeconds);
        const milliseconds need = wait.wait + drain.value + shutdown.value + kMargin;
        const long long need_s = (need.count() + 999) / 1000;
        if (grace_s * 1000 < need.count()) {
            out->push_back(MakeFinding(
                doc, grace ? grace.key : pod_spec_entry.key, "RS001", Severity::kError,
                "terminationGracePeriodSeconds " + std::to_string(grace_s) +
                    (grace ? "" : " (the default)") + " is less than the " + Seconds(need_s) +
                    " that " + who + " may need to stop: " + wait.what + "drain delay " +
                    util::FormatDuration(drain.value) + " (" + drain.origin +
                    ") + shutdown timeout " + util::FormatDuration(shutdown.value) + " (" +
                    shutdown.origin + ") + 5s margin; the kubelet kills requests still running",
                "set terminationGracePeriodSeconds: " + std::to_string(need_s) +
                    " or more, or shorten the preStop wait or --shutdown-timeout"));
        }
    }

    // RS002
    const Entry readiness = Get(c, "readinessProbe");
    if (!readiness || !readiness.value.IsMap()) {
        out->push_back(MakeFinding(
            doc, readiness ? readiness.key : c, "RS002", Severity::kError,
            who + " has no readinessProbe: Kubernetes cannot see the drain begin",
            "add readinessProbe.httpGet {path: /readyz, port: 9090} with periodSeconds: 1 and "
            "failureThreshold: 2"));
    } else {
        const auto period =
            IntField(doc, readiness.value, "periodSeconds", "readinessProbe.periodSeconds", out);
        const auto failures = IntField(doc, readiness.value, "failureThreshold",
                                       "readinessProbe.failureThreshold", out);
        const long long p = period.value_or(10);
        const long long f = failures.value_or(3);
        if (p * f * 1000 >= drain.value.count()) {
            out->push_back(MakeFinding(
                doc, readiness.key, "RS002", Severity::kError,
                "readinessProbe needs periodSeconds " + std::to_string(p) +
                    (period ? "" : " (default)") + " x failureThreshold " + std::to_string(f) +
                    (failures ? "" : " (default)") + " = " + Seconds(p * f) +
                    " to notice a drain, not less than the drain delay " +
                    util::FormatDuration(drain.value) + " (" + drain.origin +
                    "): the pod stays in the endpoints after its listener closed",
                "lower periodSeconds and failureThreshold (e.g. 1 and 2) or raise --drain-delay "
                "above " +
                    Seconds(p * f)));
        }
    }

    // RS010
    const Entry liveness = Get(c, "livenessProbe");
    if (!liveness || !liveness.value.IsMap()) {
        out->push_back(
            MakeFinding(doc, c, "RS010", Severity::kWarning,
                        who + " has no livenessProbe: a wedged process is never restarted",
                        "add livenessProbe.httpGet {path: /livez, port: 9090}"));
    } else if (auto path = Str(At(liveness.value, {"httpGet", "path"}));
               path && (*path == "/readyz" || *path == "/health")) {
        out->push_back(MakeFinding(
            doc, liveness.key, "RS010", Severity::kWarning,
            who + "'s livenessProbe probes " + *path +
                ", which fails on purpose while the pod drains: the kubelet would restart it "
                "mid-drain",
            "point livenessProbe.httpGet.path at /livez"));
    }
    if (!Get(c, "startupProbe")) {
        out->push_back(MakeFinding(
            doc, c, "RS010", Severity::kWarning,
            who + " has no startupProbe: a slow start (store migration) counts against the "
                  "liveness probe",
            "add startupProbe.httpGet {path: /livez, port: 9090} with a generous "
            "failureThreshold"));
    }
}

}  // namespace

IdleTimeout ServiceIdleTimeout(const Model& model) {
    std::optional<IdleTimeout> best;
    for (const auto& doc : model.objects) {
        const std::string kind = KindOf(doc.root);
        if (kind != "Deployment" && kind != "StatefulSet") continue;
        Workload w(model, doc);
        for (const auto& c : Items(At(doc.root, {"spec", "template", "spec", "containers"}))) {
            if (!IsRollsafeContainer(c)) continue;
            const auto s = w.Resolve(c, "idle-timeout", kDefaultIdleTimeout);
            if (!best || s.value < best->value)
                best = IdleTimeout{s.value, s.origin + " of " + kind + " " + NameOf(doc.root)};
        }
    }
    if (best) return *best;
    return IdleTimeout{kDefaultIdleTimeout,
                       "the default (no rollsafe container in the linted "
                       "files)"};
}

void CheckWorkloads(const Model& model, std::vector<Finding>* out) {
    for (const auto& doc : model.objects) {
        const std::string kind = KindOf(doc.root);
        if (kind != "Deployment" && kind != "StatefulSet") continue;
        const Entry spec = Get(doc.root, "spec");
        const Entry tmpl = Get(spec.value, "template");
        const Entry pod_spec = Get(tmpl.value, "spec");
        const Entry containers = Get(pod_spec.value, "containers");
        if (containers && !containers.value.IsSequence()) {
            out->push_back(MakeFinding(doc, containers.key, "parse", Severity::kError,
                                       "spec.template.spec.containers: expected a list, found " +
                                           Describe(containers.value),
                                       "write a list of containers"));
            continue;
        }
        bool any = false;
        Workload w(model, doc);
        for (const auto& c : Items(containers.value)) {
            if (!c.IsMap() || !IsRollsafeContainer(c)) continue;
            any = true;
            CheckContainer(doc, w, pod_spec.value, pod_spec, c, out);
        }
        // Only workloads that run rollsafe are held to its rules: a gateway's Deployment in
        // the same directory is someone else's business.
        if (!any) continue;
        CheckCapacity(doc, model, kind, out);
        CheckReplicas(doc, out);
    }
}

}  // namespace rollsafe::lint
