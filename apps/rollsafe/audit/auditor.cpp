#include "audit/auditor.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace rollsafe::audit {
namespace {

namespace json = boost::json;

using Key = std::pair<std::string, std::string>;  // (principal, key)

struct Effect {
    std::string_view kind;
    const std::string& id;
    const std::string& key;
    const std::string& principal;
};

struct Account {
    std::optional<std::int64_t> stored;
    std::vector<std::int64_t> seqs;
    std::int64_t sum = 0;
    bool sum_overflows = false;
};

std::string Line(const json::object& o) { return json::serialize(o); }

}  // namespace

AuditResult Audit(const Snapshot& snapshot, std::int64_t now_ms) {
    AuditResult r;
    r.resources = static_cast<std::int64_t>(snapshot.resources.size());
    r.entries = static_cast<std::int64_t>(snapshot.entries.size());
    r.operations = static_cast<std::int64_t>(snapshot.operations.size());

    // ---- operations ----
    std::map<Key, const store::Operation*> ops;
    for (const auto& op : snapshot.operations) {
        ops.emplace(Key{op.principal, op.key}, &op);
        if (op.state != "in_progress") continue;
        ++r.in_progress;
        if (op.lease_until_ms > now_ms) continue;
        ++r.expired_in_progress;
        r.problem_lines.push_back(Line({{"problem", "expired_in_progress"},
                                        {"principal", op.principal},
                                        {"key", op.key},
                                        {"owner", op.owner},
                                        {"lease_until_ms", op.lease_until_ms},
                                        {"now_ms", now_ms},
                                        {"recovery_point", op.recovery_point}}));
    }

    // ---- effects ----
    std::vector<Effect> effects;
    effects.reserve(snapshot.resources.size() + snapshot.entries.size());
    for (const auto& res : snapshot.resources)
        effects.push_back({"resource", res.id, res.idempotency_key, res.principal});
    for (const auto& e : snapshot.entries)
        effects.push_back({"entry", e.entry_id, e.idempotency_key, e.principal});

    std::map<Key, std::vector<const Effect*>> by_key;
    std::vector<std::string> orphan_lines;
    for (const auto& e : effects) {
        const store::Operation* op = nullptr;
        if (!e.key.empty()) {
            by_key[Key{e.principal, e.key}].push_back(&e);
            if (auto it = ops.find(Key{e.principal, e.key}); it != ops.end()) op = it->second;
        }
        const bool complete = op && op->state == "completed";
        r.effect_lines.push_back(Line({{"kind", e.kind},
                                       {"id", e.id},
                                       {"key", e.key},
                                       {"principal", e.principal},
                                       {"complete", complete}}));
        if (complete) continue;
        ++r.orphans;
        json::object o{{"problem", "orphan"},
                       {"kind", e.kind},
                       {"id", e.id},
                       {"principal", e.principal},
                       {"key", e.key}};
        if (e.key.empty()) {
            o["reason"] = "no_key";
        } else if (!op) {
            o["reason"] = "no_operation";
        } else {
            o["reason"] = "not_completed";
            o["state"] = op->state;
        }
        orphan_lines.push_back(Line(o));
    }
    for (const auto& [key, group] : by_key) {
        if (group.size() < 2) continue;
        ++r.duplicates;
        json::array ids;
        for (const Effect* e : group)
            ids.emplace_back(json::object{{"kind", e->kind}, {"id", e->id}});
        r.problem_lines.push_back(Line({{"problem", "duplicate"},
                                        {"principal", key.first},
                                        {"key", key.second},
                                        {"count", group.size()},
                                        {"effects", std::move(ids)}}));
    }
    r.problem_lines.insert(r.problem_lines.end(), orphan_lines.begin(), orphan_lines.end());

    // ---- ledger ----
    std::vector<std::string> order;  // accounts in input order, then those only entries name
    std::unordered_map<std::string, Account> accounts;
    for (const auto& [name, balance] : snapshot.accounts) {
        auto [it, inserted] = accounts.try_emplace(name);
        if (inserted) order.push_back(name);
        if (!it->second.stored) it->second.stored = balance;
    }
    for (const auto& e : snapshot.entries) {
        auto [it, inserted] = accounts.try_emplace(e.account);
        if (inserted) order.push_back(e.account);
        Account& a = it->second;
        a.seqs.push_back(e.seq);
        if (!a.sum_overflows && __builtin_add_overflow(a.sum, e.amount, &a.sum))
            a.sum_overflows = true;
    }
    for (const auto& name : order) {
        Account& a = accounts[name];
        bool bad = false;
        if (!a.stored || a.sum_overflows || *a.stored != a.sum) {
            bad = true;
            r.problem_lines.push_back(
                Line({{"problem", "balance_mismatch"},
                      {"account", name},
                      {"stored", a.stored ? json::value(*a.stored) : json::value(nullptr)},
                      {"sum", a.sum_overflows ? json::value(nullptr) : json::value(a.sum)},
                      {"entries", a.seqs.size()}}));
        }
        std::sort(a.seqs.begin(), a.seqs.end());
        for (std::size_t i = 0; i < a.seqs.size(); ++i) {
            const auto expected = static_cast<std::int64_t>(i) + 1;
            if (a.seqs[i] == expected) continue;
            bad = true;
            const char* reason = i > 0 && a.seqs[i] == a.seqs[i - 1] ? "repeat"
                                 : a.seqs[i] > expected              ? "gap"
                                                                     : "out_of_range";
            r.problem_lines.push_back(Line({{"problem", "seq_mismatch"},
                                            {"account", name},
                                            {"expected", expected},
                                            {"found", a.seqs[i]},
                                            {"reason", reason}}));
            break;  // the first deviation says enough; the rest would only echo it
        }
        if (bad) ++r.balance_mismatches;
    }

    r.ok = r.expired_in_progress == 0 && r.duplicates == 0 && r.orphans == 0 &&
           r.balance_mismatches == 0;
    r.summary_line = Line({{"summary", true},
                           {"resources", r.resources},
                           {"entries", r.entries},
                           {"operations", r.operations},
                           {"in_progress", r.in_progress},
                           {"expired_in_progress", r.expired_in_progress},
                           {"duplicates", r.duplicates},
                           {"orphans", r.orphans},
                           {"balance_mismatches", r.balance_mismatches},
                           {"ok", r.ok}});
    return r;
}

}  // namespace rollsafe::audit
