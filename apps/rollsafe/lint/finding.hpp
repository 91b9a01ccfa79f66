/// @file
/// @brief What `rollsafe lint` reports: one Finding per broken invariant, and the catalogue of
/// rules (docs/lint.md) that findings refer to.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rollsafe::lint {

enum class Severity { kError, kWarning };

/// "error" or "warning".
inline std::string_view SeverityName(Severity s) {
    return s == Severity::kError ? "error" : "warning";
}

/// One entry of the rule catalogue.
struct RuleInfo {
    std::string_view id;       ///< "RS001" ... "RS010", or "parse"
    std::string_view name;     ///< "grace-period"
    Severity severity;         ///< the severity of most of its findings (RS004 also warns)
    std::string_view summary;  ///< one sentence, for SARIF and --help
};

/// Every rule, in id order, "parse" last.
inline const std::vector<RuleInfo>& RuleCatalogue() {
    static const std::vector<RuleInfo> rules = {
        {"RS001", "grace-period", Severity::kError,
         "terminationGracePeriodSeconds covers preStop wait + drain delay + shutdown timeout + "
         "5 s"},
        {"RS002", "readiness-too-slow", Severity::kError,
         "readinessProbe periodSeconds x failureThreshold is below the drain delay"},
        {"RS003", "no-prestop", Severity::kError, "the rollsafe container has a preStop hook"},
        {"RS004", "drain-capacity", Severity::kError,
         "rolling updates keep every replica (maxUnavailable: 0) or a PodDisruptionBudget "
         "selects the pods"},
        {"RS005", "single-replica", Severity::kError, "spec.replicas is at least 2"},
        {"RS006", "keepalive-order", Severity::kError,
         "the gateway's upstream keep-alive timeout is below the service's --idle-timeout"},
        {"RS007", "unsafe-post-retry", Severity::kError,
         "a gateway retries POSTs only toward routes marked as carrying idempotency keys"},
        {"RS008", "post-retry-off", Severity::kWarning,
         "a route marked as carrying idempotency keys lets the gateway retry POSTs"},
        {"RS009", "kong-healthchecks", Severity::kError,
         "a Kong upstream has active or passive health checks; active ones probe /readyz"},
        {"RS010", "probes", Severity::kWarning,
         "the rollsafe container has liveness (/livez) and startup probes"},
        {"parse", "parse", Severity::kError, "every linted file can be parsed"},
    };
    return rules;
}

/// The catalogue entry for `id`; nullptr for an unknown id.
inline const RuleInfo* FindRule(std::string_view id) {
    for (const auto& r : RuleCatalogue())
        if (r.id == id) return &r;
    return nullptr;
}

/// One broken invariant at one place.
struct Finding {
    std::string file;  ///< as the user named it (or "<stdin>")
    int line = 0;      ///< 1-based; 0 when unknown
    int column = 0;    ///< 1-based; 0 when unknown (only parse findings carry one)
    Severity severity = Severity::kError;
    std::string rule;     ///< catalogue id: "RS001", ..., "parse"
    std::string message;  ///< what is wrong, with the numbers that make it wrong
    std::string fix;      ///< how to fix it; may be empty
};

/// The rule name of `f` ("grace-period"), or its id when unknown.
inline std::string_view RuleName(const Finding& f) {
    const RuleInfo* r = FindRule(f.rule);
    return r != nullptr ? r->name : std::string_view(f.rule);
}

}  // namespace rollsafe::lint
