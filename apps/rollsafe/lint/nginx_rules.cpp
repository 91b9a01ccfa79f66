// RS006-RS008 for nginx: configuration files, ingress-nginx Ingress annotations and the
// ingress-nginx controller ConfigMap.
#include <fnmatch.h>

#include <algorithm>
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

constexpr milliseconds kNginxDefaultKeepalive{60'000};
/// Includes of linted files are expanded at most this deep, and at most this many files per
/// lookup: files that include themselves or each other (`include *.conf;`) must neither loop
/// nor explode.
constexpr int kMaxIncludeDepth = 8;
constexpr int kMaxIncludedFiles = 256;

/// `# rollsafe: idempotency-keys`, spaces optional.
bool IsMarker(const std::string& comment) {
    std::string squeezed;
    for (char c : comment)
        if (c != ' ' && c != '\t') squeezed += c;
    return squeezed.starts_with("rollsafe:idempotency-keys");
}

bool AnyMarker(const std::vector<NginxComment>& comments) {
    for (const auto& c : comments)
        if (IsMarker(c.text)) return true;
    return false;
}

/// A block's marker: a marker comment inside it, or on its line or the line above it (in the
/// enclosing block).
bool Marked(const NginxDirective& d, const std::vector<NginxComment>& enclosing) {
    if (AnyMarker(d.comments)) return true;
    for (const auto& c : enclosing)
        if ((c.line == d.line || c.line == d.line - 1) && IsMarker(c.text)) return true;
    return false;
}

struct Located {
    const NginxFile* file = nullptr;
    const NginxDirective* directive = nullptr;
};

/// The result of looking a directive up through a block and its includes.
struct Lookup {
    std::optional<Located> found;
    bool unknown = false;  ///< an include that is not among the linted files may set it
    std::string unread;    ///< that include's argument
};

class NginxSet {
  public:
    explicit NginxSet(const Model& model) : model_(model) {}

    /// The linted files an `include` argument matches (by file name; globs allowed).
    std::vector<const NginxFile*> Resolve(const std::string& include) const {
        std::string pattern = include;
        if (auto slash = pattern.rfind('/'); slash != std::string::npos)
            pattern = pattern.substr(slash + 1);
        std::vector<const NginxFile*> out;
        for (const auto& f : model_.nginx)
            if (fnmatch(pattern.c_str(), f.file_name.c_str(), 0) == 0) out.push_back(&f);
        return out;
    }

    /// `name` among `block` (directives of one block of `file`), following includes of linted
    /// files. The last one wins, as the block is read in order.
    Lookup Find(const NginxFile& file, const std::vector<NginxDirective>& block,
                std::string_view name) const {
        int budget = kMaxIncludedFiles;
        return Find(file, block, name, 0, &budget);
    }

  private:
    Lookup Find(const NginxFile& file, const std::vector<NginxDirective>& block,
                std::string_view name, int depth, int* budget) const {
        Lookup result;
        for (const auto& d : block) {
            if (d.name == name) {
                result.found = Located{&file, &d};
                continue;
            }
            if (d.name != "include" || d.args.empty()) continue;
            const auto files = Resolve(d.args.front());
            if (files.empty() || depth >= kMaxIncludeDepth ||
                *budget < static_cast<int>(files.size())) {
                result.unknown = true;
                result.unread = d.args.front();
                continue;
            }
            *budget -= static_cast<int>(files.size());
            for (const NginxFile* f : files) {
                Lookup inner = Find(*f, f->conf.directives, name, depth + 1, budget);
                if (inner.found) result.found = inner.found;
                if (inner.unknown) {
                    result.unknown = true;
                    result.unread = inner.unread;
                }
            }
        }
        return result;
    }

  public:
    /// The upstream block called `name` in any linted file, with its enclosing comments.
    std::optional<std::pair<const NginxDirective*, const std::vector<NginxComment>*>> Upstream(
        const std::string& name) const {
        for (const auto& f : model_.nginx) {
            if (auto u = FindUpstream(f.conf.directives, f.conf.comments, name, 0)) return u;
        }
        return std::nullopt;
    }

  private:
    static std::optional<std::pair<const NginxDirective*, const std::vector<NginxComment>*>>
    FindUpstream(const std::vector<NginxDirective>& block,
                 const std::vector<NginxComment>& comments, const std::string& name, int depth) {
        for (const auto& d : block) {
            if (d.name == "upstream" && d.has_block && !d.args.empty() && d.args.front() == name)
                return std::make_pair(&d, &comments);
            if (d.name == "http" && d.has_block && depth < 2)
                if (auto u = FindUpstream(d.children, d.comments, name, depth + 1)) return u;
        }
        return std::nullopt;
    }

    const Model& model_;
};

/// The upstream name of a proxy_pass URL ("http://rollsafe/x" → "rollsafe"); "" for a
/// variable or an address.
std::string UpstreamName(const std::string& url) {
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return "";
    std::string host = url.substr(scheme + 3);
    if (auto end = host.find_first_of("/:"); end != std::string::npos) host.resize(end);
    if (host.find('$') != std::string::npos) return "";
    return host;
}

std::string Where(const Located& at) {
    return at.file->source->name + ":" + std::to_string(at.directive->line + at.file->line_offset);
}

std::string Joined(const std::vector<std::string>& args) {
    std::string s;
    for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
    return s;
}

class Checker {
  public:
    Checker(const Model& model, const IdleTimeout& idle, std::vector<Finding>* out)
        : set_(model), idle_(idle), out_(out) {}

    void File(const NginxFile& f) {
        std::vector<const NginxDirective*> ancestors;
        Walk(f, f.conf.directives, f.conf.comments, &ancestors);
    }

  private:
    void Add(const NginxFile& f, int line, std::string rule, Severity severity, std::string message,
             std::string fix) {
        out_->push_back(Finding{f.source->name, line + f.line_offset, 0, severity, std::move(rule),
                                std::move(message), std::move(fix)});
    }

    void Walk(const NginxFile& f, const std::vector<NginxDirective>& block,
              const std::vector<NginxComment>& comments,
              std::vector<const NginxDirective*>* ancestors) {
        for (const auto& d : block) {
            if (!d.has_block) continue;
            if (d.name == "upstream") Upstream(f, d);
            if (d.name == "location") Location(f, d, comments, *ancestors);
            ancestors->push_back(&d);
            Walk(f, d.children, d.comments, ancestors);
            ancestors->pop_back();
        }
    }

    void Upstream(const NginxFile& f, const NginxDirective& u) {
        const NginxDirective* keepalive = nullptr;
        const NginxDirective* timeout = nullptr;
        for (const auto& d : u.children) {
            if (d.name == "keepalive") keepalive = &d;
            if (d.name == "keepalive_timeout") timeout = &d;
        }
        // Without `keepalive` nginx does not pool upstream connections.
        if (keepalive == nullptr) return;
        const std::string name = u.args.empty() ? "?" : u.args.front();
        milliseconds value = kNginxDefaultKeepalive;
        if (timeout != nullptr) {
            const auto parsed =
                timeout->args.empty() ? std::nullopt : ParseNginxTime(timeout->args.front());
            if (!parsed) {
                Add(f, timeout->line, "parse", Severity::kError,
                    "keepalive_timeout '" + Joined(timeout->args) + "' is not an nginx time",
                    "write e.g. 60s");
                return;
            }
            value = *parsed;
        }
        if (value < idle_.value) return;
        Add(f, (timeout != nullptr ? timeout : keepalive)->line, "RS006", Severity::kError,
            "upstream '" + name + "' keeps idle connections for keepalive_timeout " +
                (timeout != nullptr ? timeout->args.front()
                                    : std::string("60s (nginx's default with keepalive)")) +
                ", not less than the service's --idle-timeout " +
                util::FormatDuration(idle_.value) + " (" + idle_.source +
                "): nginx may send a request on a connection the replica is closing",
            "set keepalive_timeout below " + util::FormatDuration(idle_.value) +
                " in the upstream (e.g. 60s) or raise --idle-timeout");
    }

    void Location(const NginxFile& f, const NginxDirective& loc,
                  const std::vector<NginxComment>& enclosing,
                  const std::vector<const NginxDirective*>& ancestors) {
        const Lookup pass = set_.Find(f, loc.children, "proxy_pass");
        if (!pass.found || pass.found->directive->args.empty()) return;
        const std::string upstream_name = UpstreamName(pass.found->directive->args.front());
        bool marked = Marked(loc, enclosing);
        if (!marked && !upstream_name.empty()) {
            if (auto u = set_.Upstream(upstream_name)) marked = Marked(*u->first, *u->second);
        }

        // The innermost block that sets proxy_next_upstream wins (nginx does not merge it).
        Lookup next = set_.Find(f, loc.children, "proxy_next_upstream");
        for (auto it = ancestors.rbegin(); !next.found && !next.unknown && it != ancestors.rend();
             ++it)
            next = set_.Find(f, (*it)->children, "proxy_next_upstream");
        if (!next.found && !next.unknown)
            next = set_.Find(f, f.conf.directives, "proxy_next_upstream");
        if (!next.found && next.unknown) return;  // set, maybe, in a file we do not read

        const std::string path = loc.args.empty() ? "?" : Joined(loc.args);
        const bool own =
            next.found && next.found->file == &f &&
            std::find_if(loc.children.begin(), loc.children.end(), [&](const NginxDirective& d) {
                return &d == next.found->directive;
            }) != loc.children.end();
        const int line = own ? next.found->directive->line : loc.line;
        const std::vector<std::string> args =
            next.found ? next.found->directive->args : std::vector<std::string>{"error", "timeout"};
        const std::string shown =
            "proxy_next_upstream " + Joined(args) +
            (next.found ? (own ? std::string() : " (from " + Where(*next.found) + ")")
                        : std::string(" (nginx's default)"));
        bool non_idempotent = false;
        bool off = false;
        for (const auto& a : args) {
            non_idempotent = non_idempotent || a == "non_idempotent";
            off = off || a == "off";
        }
        if (non_idempotent && !off && !marked) {
            Add(f, line, "RS007", Severity::kError,
                "location " + path + " retries POSTs (" + shown + ") toward " +
                    (upstream_name.empty() ? std::string("its backend")
                                           : "upstream '" + upstream_name + "'") +
                    ", which is not marked as carrying idempotency keys: a POST a closing "
                    "replica may already have executed is sent again",
                "mark the location or its upstream with the comment "
                "`# rollsafe: idempotency-keys` if every POST carries an Idempotency-Key, else "
                "drop non_idempotent");
        } else if (marked && (!non_idempotent || off)) {
            Add(f, line, "RS008", Severity::kWarning,
                "location " + path + " carries idempotency keys but does not retry POSTs (" +
                    shown + "): a POST that meets a closing replica becomes a 502",
                "add non_idempotent: proxy_next_upstream error timeout http_502 http_503 "
                "non_idempotent (e.g. include deploy/nginx/rollsafe-retry.conf)");
        }
    }

    NginxSet set_;
    const IdleTimeout& idle_;
    std::vector<Finding>* out_;
};

void CheckIngress(const YamlDoc& doc, std::vector<Finding>* out) {
    const Entry annotations = Get(At(doc.root, {"metadata"}), "annotations");
    const Entry next = Get(annotations.value, "nginx.ingress.kubernetes.io/proxy-next-upstream");
    const Entry marker = Get(annotations.value, "rollsafe.dev/idempotency-keys");
    const bool marked = Str(marker.value).value_or("") == "true";
    const std::string value = Str(next.value).value_or("");
    bool non_idempotent = false;
    bool off = false;
    std::istringstream words(value);
    for (std::string w; words >> w;) {
        non_idempotent = non_idempotent || w == "non_idempotent";
        off = off || w == "off";
    }
    const std::string name = NameOf(doc.root);
    if (non_idempotent && !off && !marked) {
        out->push_back(
            MakeFinding(doc, next.key, "RS007", Severity::kError,
                        "Ingress '" + name + "' retries POSTs (proxy-next-upstream: " + value +
                            ") without the annotation rollsafe.dev/idempotency-keys: \"true\"",
                        "annotate rollsafe.dev/idempotency-keys: \"true\" if every POST carries an "
                        "Idempotency-Key, else drop non_idempotent"));
        return;
    }
    if (!marked || non_idempotent) return;
    // Only an Ingress that ingress-nginx serves: another controller ignores the annotation.
    bool nginx = Str(At(doc.root, {"spec", "ingressClassName"})).value_or("").find("nginx") !=
                 std::string::npos;
    if (annotations.value.IsMap())
        for (auto it = annotations.value.begin(); it != annotations.value.end(); ++it) {
            const std::string k = Str(it->first).value_or("");
            nginx = nginx || k.starts_with("nginx.ingress.kubernetes.io/") ||
                    (k == "kubernetes.io/ingress.class" &&
                     Str(it->second).value_or("").find("nginx") != std::string::npos);
        }
    if (!nginx) return;
    out->push_back(MakeFinding(
        doc, next ? next.key : marker.key, "RS008", Severity::kWarning,
        "Ingress '" + name + "' carries idempotency keys but does not retry POSTs (" +
            (next ? "proxy-next-upstream: " + value : std::string("ingress-nginx's default")) +
            "): a POST that meets a closing replica becomes a 502",
        "annotate nginx.ingress.kubernetes.io/proxy-next-upstream: \"error timeout http_502 "
        "http_503 non_idempotent\""));
}

void CheckControllerConfigMap(const YamlDoc& doc, const IdleTimeout& idle,
                              std::vector<Finding>* out) {
    const Entry e = Get(At(doc.root, {"data"}), "upstream-keepalive-timeout");
    if (!e) return;
    const auto seconds = Int(e.value);
    if (!seconds || *seconds < 0) {
        out->push_back(MakeFinding(
            doc, e.key, "parse", Severity::kError,
            "upstream-keepalive-timeout: expected whole seconds, found " + Describe(e.value),
            "write e.g. \"60\""));
        return;
    }
    if (*seconds * 1000 < idle.value.count()) return;
    out->push_back(MakeFinding(
        doc, e.key, "RS006", Severity::kError,
        "ingress-nginx keeps idle upstream connections for upstream-keepalive-timeout " +
            std::to_string(*seconds) + "s, not less than the service's --idle-timeout " +
            util::FormatDuration(idle.value) + " (" + idle.source +
            "): nginx may send a request on a connection the replica is closing",
        "set upstream-keepalive-timeout below " + util::FormatDuration(idle.value) +
            " (e.g. \"60\") or raise --idle-timeout"));
}

}  // namespace

void CheckNginx(const Model& model, const IdleTimeout& idle, std::vector<Finding>* out) {
    Checker checker(model, idle, out);
    for (const auto& f : model.nginx) checker.File(f);
    for (const auto& doc : model.objects) {
        const std::string kind = KindOf(doc.root);
        if (kind == "Ingress") CheckIngress(doc, out);
        if (kind == "ConfigMap") CheckControllerConfigMap(doc, idle, out);
    }
}

}  // namespace rollsafe::lint
