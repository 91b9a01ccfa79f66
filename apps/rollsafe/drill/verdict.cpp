#include "drill/verdict.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "rollsafe/client/client.hpp"

namespace rollsafe::drill {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr std::size_t kMaxProblems = 200;
/// Sentences listed for problems that were in the store before the run.
constexpr std::size_t kMaxEarlier = 20;

/// Adds sentences to `v->problems` up to kMaxProblems; the last slot, when needed, says how
/// many were left out.
class Problems {
  public:
    explicit Problems(Verdict* v) : v_(v) {}
    void Add(std::string sentence) {
        if (v_->problems.size() + 1 < kMaxProblems)
            v_->problems.push_back(std::move(sentence));
        else
            ++dropped_;
    }
    void Finish() {
        if (dropped_ > 0 && v_->problems.size() < kMaxProblems)
            v_->problems.push_back("... and " + std::to_string(dropped_) +
                                   " more problems not listed");
        dropped_ = 0;
    }

  private:
    Verdict* v_;
    std::int64_t dropped_ = 0;
};

std::string Attempts(int n) { return std::to_string(n) + (n == 1 ? " attempt" : " attempts"); }

/// "201 after 3 attempts", or "not acknowledged: status 502 after 5 attempts".
std::string Outcome(const LoadRecord& r) {
    if (r.acknowledged) return std::to_string(r.status) + " after " + Attempts(r.attempts);
    std::string cause = r.failure_cause;
    if (cause.empty()) cause = r.status != 0 ? "status " + std::to_string(r.status) : "no answer";
    return "not acknowledged: " + cause + " after " + Attempts(r.attempts);
}

/// "resource 0190…" or "entry 0190… to account a1", as the client was told it.
std::string Acknowledged(const LoadRecord& r) {
    std::string s = r.kind == LoadRecord::Kind::kResource ? "resource" : "entry";
    s += r.id.empty() ? " (the answer carried no id)" : " " + r.id;
    if (r.kind == LoadRecord::Kind::kEntry) s += " to account " + r.account;
    return s;
}

/// "key K acknowledged as resource ID (201 after 3 attempts)".
std::string AckedKey(const LoadRecord& r) {
    return "key " + r.key + " acknowledged as " + Acknowledged(r) + " (" + Outcome(r) + ")";
}

/// "key K (resource, 201 after 3 attempts)" for any record.
std::string AnyKey(const LoadRecord& r) {
    if (r.acknowledged) return AckedKey(r);
    std::string what =
        r.kind == LoadRecord::Kind::kResource ? "resource" : "entry to account " + r.account;
    return "key " + r.key + " (" + what + ", " + Outcome(r) + ")";
}

std::optional<json::value> ParseJson(std::string_view text) {
    boost::system::error_code ec;
    json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec) return std::nullopt;
    return v;
}

/// The "data" member of the body a resource request sent; nullopt when there is none.
std::optional<json::value> SentData(const LoadRecord& r) {
    auto body = ParseJson(r.body);
    if (!body || !body->is_object()) return std::nullopt;
    const json::value* data = body->as_object().if_contains("data");
    if (data == nullptr) return std::nullopt;
    return *data;
}

/// A member as text: strings unquoted, anything else serialized, "" when missing.
std::string Text(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (v == nullptr) return {};
    if (v->is_string()) return std::string(v->as_string());
    return json::serialize(*v);
}

std::optional<std::int64_t> Int(const json::value* v) {
    if (v == nullptr) return std::nullopt;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() &&
        v->as_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(v->as_uint64());
    return std::nullopt;
}

std::string Signed(std::int64_t n) { return (n > 0 ? "+" : "") + std::to_string(n); }

/// Sums amounts, remembering an overflow instead of wrapping.
struct Sum {
    std::int64_t value = 0;
    bool overflow = false;
    void Add(std::int64_t n) {
        if (!overflow && __builtin_add_overflow(value, n, &value)) overflow = true;
    }
    std::string Str() const {
        return overflow ? "more than int64 can hold" : std::to_string(value);
    }
};

/// Entry records of one account: what was acknowledged to it, and the keys that were
/// executed although their client was never told (they explain a stored balance above the
/// acknowledged sum).
struct AccountRecords {
    Sum acknowledged;
    std::int64_t acknowledged_count = 0;
    std::vector<const LoadRecord*> records;
    std::vector<std::string> executed_unacknowledged;  ///< "key K +5"
};

/// Entry records grouped by account, accounts in the order they first appear.
std::vector<std::pair<std::string, AccountRecords>> GroupByAccount(
    const std::vector<LoadRecord>& records) {
    std::vector<std::pair<std::string, AccountRecords>> out;
    std::unordered_map<std::string, std::size_t> index;
    std::set<std::string> seen_keys;
    for (const auto& r : records) {
        if (r.kind != LoadRecord::Kind::kEntry || !seen_keys.insert(r.key).second) continue;
        auto [it, inserted] = index.try_emplace(r.account, out.size());
        if (inserted) out.emplace_back(r.account, AccountRecords{});
        AccountRecords& a = out[it->second].second;
        a.records.push_back(&r);
        if (r.acknowledged) {
            a.acknowledged.Add(r.amount);
            ++a.acknowledged_count;
        }
    }
    return out;
}

/// "balance mismatch: account A stores balance 12, but the 2 entries acknowledged to it sum to
/// 10 (+2; executed but never acknowledged: key K +2)".
std::string BalanceSentence(const std::string& account, const std::string& stored,
                            std::optional<std::int64_t> stored_value, const AccountRecords& a) {
    std::string s = "balance mismatch: account " + account + " " + stored + ", but the " +
                    std::to_string(a.acknowledged_count) +
                    (a.acknowledged_count == 1 ? " entry" : " entries") +
                    " acknowledged to it sum to " + a.acknowledged.Str();
    std::vector<std::string> notes;
    std::int64_t diff = 0;
    if (stored_value && !a.acknowledged.overflow &&
        !__builtin_sub_overflow(*stored_value, a.acknowledged.value, &diff))
        notes.push_back("difference " + Signed(diff));
    if (!a.executed_unacknowledged.empty()) {
        std::string keys = "executed but never acknowledged: ";
        const std::size_t shown = std::min<std::size_t>(a.executed_unacknowledged.size(), 5);
        for (std::size_t i = 0; i < shown; ++i)
            keys += (i > 0 ? ", " : "") + a.executed_unacknowledged[i];
        if (shown < a.executed_unacknowledged.size())
            keys += " and " + std::to_string(a.executed_unacknowledged.size() - shown) + " more";
        notes.push_back(keys);
    }
    if (!notes.empty()) {
        s += " (";
        for (std::size_t i = 0; i < notes.size(); ++i) s += (i > 0 ? "; " : "") + notes[i];
        s += ")";
    }
    return s;
}

/// What the store holds for one key of the run.
struct Stored {
    std::vector<const store::Resource*> resources;
    std::vector<const store::LedgerEntry*> entries;
    std::vector<const store::Operation*> operations;

    std::size_t Effects() const { return resources.size() + entries.size(); }
    bool HasId(const std::string& id) const {
        for (const auto* r : resources)
            if (r->id == id) return true;
        for (const auto* e : entries)
            if (e->entry_id == id) return true;
        return false;
    }
    /// "resource X, entry Y (account A, seq 3)".
    std::string EffectList() const {
        std::string s;
        for (const auto* r : resources) s += (s.empty() ? "" : ", ") + ("resource " + r->id);
        for (const auto* e : entries)
            s += (s.empty() ? "" : ", ") + ("entry " + e->entry_id + " (account " + e->account +
                                            ", seq " + std::to_string(e->seq) + ")");
        return s;
    }
};

/// "lease expired 1200 ms before the audit" or "lease live for 800 ms more".
std::string Lease(std::int64_t lease_until_ms, std::int64_t now_ms) {
    if (lease_until_ms <= now_ms)
        return "lease expired " + std::to_string(now_ms - lease_until_ms) + " ms before the audit";
    return "lease live for " + std::to_string(lease_until_ms - now_ms) + " ms more";
}

std::string OperationState(const store::Operation& op, std::int64_t now_ms) {
    return "owner " + (op.owner.empty() ? std::string("none") : op.owner) + ", recovery point \"" +
           op.recovery_point + "\", " + Lease(op.lease_until_ms, now_ms);
}

/// What a store-wide problem (one line of audit::Audit) counts as.
enum class Kind { kHalfDone, kDuplicated, kBalance };

/// Identifies one store-wide problem across two audits of the same store, so that one found
/// before the run is recognised after it: per operation (an expired operation and the orphaned
/// effects of its key are one problem), per keyless effect, per duplicated key, per account.
std::string AccountId(const std::string& account) { return "account\n" + account; }
std::string ProblemId(const json::object& o) {
    const std::string problem = Text(o, "problem");
    if (problem == "balance_mismatch" || problem == "seq_mismatch")
        return AccountId(Text(o, "account"));
    if (problem == "orphan" && Text(o, "reason") == "no_key")
        return "keyless\n" + Text(o, "kind") + "\n" + Text(o, "id");
    const std::string pk = Text(o, "principal") + "\n" + Text(o, "key");
    return problem == "duplicate" ? "duplicate\n" + pk : "operation\n" + pk;
}

/// Whose rows a store-wide problem is in, as its sentence says.
enum class Whose {
    kRun,       ///< an account of the run
    kOther,     ///< rows not of the run (no baseline to tell more)
    kOtherNew,  ///< rows not of the run, problem not in the store before the run
    kOtherOld,  ///< rows not of the run, problem already there before it
};

/// The sentence for one store-wide problem line.
std::pair<Kind, std::string> StoreWideSentence(const json::object& o, Whose whose,
                                               std::int64_t now_ms) {
    const std::string problem = Text(o, "problem");
    const std::string note = whose == Whose::kRun        ? ""
                             : whose == Whose::kOtherNew ? "not of this run, new since its start"
                                                         : "not of this run";
    const std::string who = "key " + Text(o, "key") + " (principal " + Text(o, "principal") +
                            (note.empty() ? ")" : ", " + note + ")");
    if (problem == "expired_in_progress")
        return {Kind::kHalfDone,
                "half-done: operation of " + who + " is in_progress with its lease " +
                    "expired (owner " + Text(o, "owner") + ", recovery point \"" +
                    Text(o, "recovery_point") + "\", lease until " + Text(o, "lease_until_ms") +
                    " ms, audit at " + std::to_string(now_ms) + " ms)"};
    if (problem == "orphan") {
        const std::string reason = Text(o, "reason");
        const std::string effect = Text(o, "kind") + " " + Text(o, "id");
        if (reason == "no_key")  // nobody's: no key tells whose it is
            return {Kind::kHalfDone,
                    "half-done: " + effect +
                        " was stored without an idempotency key, so no journal row accounts for "
                        "it" +
                        (whose == Whose::kOtherNew ? " (new since the run's start)" : "")};
        if (reason == "no_operation")
            return {Kind::kHalfDone, "half-done: " + effect + " of " + who + " has no journal row"};
        return {Kind::kHalfDone, "half-done: " + effect + " of " + who + " has its journal row " +
                                     Text(o, "state") + ", not completed"};
    }
    if (problem == "duplicate") {
        std::string ids;
        if (const json::value* effects = o.if_contains("effects"); effects && effects->is_array())
            for (const auto& e : effects->as_array())
                if (e.is_object())
                    ids += (ids.empty() ? "" : ", ") + Text(e.as_object(), "kind") + " " +
                           Text(e.as_object(), "id");
        return {Kind::kDuplicated,
                "duplicated: " + who + " is stored " + Text(o, "count") + " times: " + ids};
    }
    const std::string account =
        "account " + Text(o, "account") + (note.empty() ? "" : " (" + note + ")");
    if (problem == "balance_mismatch") {
        const std::string stored = Text(o, "stored");
        const std::string sum = Text(o, "sum");
        return {Kind::kBalance, "balance mismatch: " + account + " " +
                                    (stored == "null" ? "has entries but no stored balance"
                                                      : "stores balance " + stored) +
                                    ", but its " + Text(o, "entries") + " stored entries sum to " +
                                    (sum == "null" ? "more than int64 can hold" : sum)};
    }
    return {Kind::kBalance, "balance mismatch: " + account +
                                " has entry seqs that are not 1..n: expected seq " +
                                Text(o, "expected") + ", found " + Text(o, "found") + " (" +
                                Text(o, "reason") + ")"};
}

// ---- black box ----

/// Percent-encodes everything but RFC 3986 unreserved characters, for one path segment.
std::string PathSegment(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

/// The outcome of GetRetried: a response below 500, or why there was none.
struct Fetched {
    std::optional<client::Response> response;
    std::string last_error;  ///< the last attempt's failure, e.g. "status 503"
};

/// GETs `url` until it answers below 500 or `deadline_ms` has passed; connection errors and
/// 5xx are retried with a doubling pause (50 ms to 1 s), each attempt bounded by what is left.
Fetched GetRetried(const std::string& url, int deadline_ms) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + milliseconds(std::max(deadline_ms, 1));
    milliseconds pause{50};
    Fetched f;
    for (;;) {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        std::string error;
        auto r = client::Get(url, std::max(left, milliseconds(1)), &error);
        if (r && r->status < 500) {
            f.response = std::move(r);
            return f;
        }
        f.last_error = r ? "status " + std::to_string(r->status) : error;
        if (Clock::now() + pause >= deadline) return f;
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, milliseconds(1000));
    }
}

}  // namespace

void CountRequests(const std::vector<LoadRecord>& records, Verdict* v) {
    v->requests = static_cast<std::int64_t>(records.size());
    v->acknowledged = v->retried = v->attempts = v->failed = 0;
    v->failed_by_cause.clear();
    for (const auto& r : records) {
        v->attempts += r.attempts;
        if (r.attempts > 1) ++v->retried;
        if (r.acknowledged) {
            ++v->acknowledged;
            continue;
        }
        ++v->failed;
        std::string cause = r.failure_cause;
        if (cause.empty()) cause = r.status != 0 ? "status " + std::to_string(r.status) : "unknown";
        ++v->failed_by_cause[cause];
    }
}

void CheckStore(const std::vector<LoadRecord>& records, const audit::Snapshot& snapshot,
                std::int64_t now_ms, Verdict* v, const std::set<std::string>* before) {
    Problems problems(v);
    std::set<std::string> earlier_ids;

    // Keys are UUIDs, unique to this run, and the drill sends no Authorization: rows are
    // matched by key alone, whatever their principal.
    std::unordered_map<std::string, Stored> run;
    std::vector<const LoadRecord*> order;
    for (const auto& r : records)
        if (run.try_emplace(r.key).second) order.push_back(&r);
    const auto of_run = [&](const std::string& key) -> Stored* {
        if (key.empty()) return nullptr;  // effects written without a key belong to nobody
        auto it = run.find(key);
        return it == run.end() ? nullptr : &it->second;
    };
    for (const auto& op : snapshot.operations)
        if (Stored* s = of_run(op.key)) s->operations.push_back(&op);
    for (const auto& res : snapshot.resources)
        if (Stored* s = of_run(res.idempotency_key)) s->resources.push_back(&res);
    for (const auto& e : snapshot.entries)
        if (Stored* s = of_run(e.idempotency_key)) s->entries.push_back(&e);

    // ---- per key of the run ----
    for (const LoadRecord* rp : order) {
        const LoadRecord& r = *rp;
        const Stored& s = run.at(r.key);

        if (s.Effects() >= 2) {
            ++v->duplicated;
            problems.Add("duplicated: " + AnyKey(r) + " is stored " + std::to_string(s.Effects()) +
                         " times: " + s.EffectList());
        }

        const store::Operation* completed = nullptr;
        const store::Operation* unfinished = nullptr;
        for (const auto* op : s.operations) {
            if (op->state == "completed")
                completed = completed ? completed : op;
            else
                unfinished = unfinished ? unfinished : op;
        }

        if (r.acknowledged) {
            if (s.Effects() == 0) {
                ++v->lost;
                std::string journal = completed    ? "its journal row is completed"
                                      : unfinished ? "its journal row is " + unfinished->state
                                                   : "it has no journal row either";
                problems.Add("lost: " + AckedKey(r) + " is not stored (" + journal + ")");
            } else if (!r.id.empty() && !s.HasId(r.id)) {
                ++v->lost;
                problems.Add("lost: " + AckedKey(r) + " is stored as " + s.EffectList() +
                             " instead");
            } else if (r.kind == LoadRecord::Kind::kResource && !s.resources.empty()) {
                const store::Resource* stored = s.resources.front();
                for (const auto* res : s.resources)
                    if (res->id == r.id) stored = res;
                const auto sent = SentData(r);
                const auto got = ParseJson(stored->data_json);
                if (sent && (!got || *got != *sent)) {
                    ++v->lost;
                    problems.Add("lost: " + AckedKey(r) + " is stored with data " +
                                 stored->data_json + ", not the " + json::serialize(*sent) +
                                 " that was sent");
                }
            }
        }

        if (unfinished != nullptr && completed == nullptr) {
            ++v->half_done;
            std::string s_effects = s.Effects() == 0 ? "nothing is stored for it yet"
                                                     : "already stored: " + s.EffectList();
            problems.Add("half-done: " + AnyKey(r) + " has its journal row still " +
                         unfinished->state + " (" + OperationState(*unfinished, now_ms) + "); " +
                         s_effects);
        } else if (s.Effects() > 0 && completed == nullptr) {
            ++v->half_done;
            problems.Add("half-done: " + AnyKey(r) + " has " + s.EffectList() +
                         " stored but no journal row");
        }
    }

    // ---- accounts of the run: stored balance against the acknowledged sum ----
    std::unordered_map<std::string, std::int64_t> stored_balance;
    for (const auto& [account, balance] : snapshot.accounts)
        stored_balance.emplace(account, balance);
    std::set<std::string> run_accounts;
    std::set<std::string> counted;  // ProblemId of every store-wide problem counted (or skipped)
    for (auto& [account, a] : GroupByAccount(records)) {
        run_accounts.insert(account);
        for (const LoadRecord* r : a.records) {
            if (r->acknowledged) continue;
            for (const auto* e : run.at(r->key).entries)
                a.executed_unacknowledged.push_back("key " + r->key + " " + Signed(e->amount));
        }
        const auto it = stored_balance.find(account);
        const std::int64_t stored = it == stored_balance.end() ? 0 : it->second;
        if (!a.acknowledged.overflow && stored == a.acknowledged.value) continue;
        ++v->balance_mismatches;
        counted.insert(AccountId(account));
        problems.Add(BalanceSentence(account,
                                     it == stored_balance.end()
                                         ? "is not stored (balance 0)"
                                         : "stores balance " + std::to_string(stored),
                                     stored, a));
    }

    // ---- the store-wide audit, without counting twice what was found per key above ----
    // A problem in rows of the run counts. One in rows that are not the run's counts only
    // when it was not in the store before the run (`before`): the run's replicas were writing
    // then, and a fresh store has no other rows. What was already there is listed apart.
    const audit::AuditResult result = audit::Audit(snapshot, now_ms);
    std::size_t earlier_listed = 0;
    for (const auto& line : result.problem_lines) {
        const auto parsed = ParseJson(line);
        if (!parsed || !parsed->is_object()) continue;
        const json::object& o = parsed->as_object();
        const std::string problem = Text(o, "problem");
        const bool account_problem = problem == "balance_mismatch" || problem == "seq_mismatch";
        // Keys of the run were judged above, one sentence per key.
        if (!account_problem && of_run(Text(o, "key")) != nullptr) continue;
        const bool ours = account_problem && run_accounts.count(Text(o, "account")) != 0;
        const std::string id = ProblemId(o);
        if (!ours && before != nullptr && before->count(id) != 0) {
            if (!earlier_ids.insert(id).second) continue;
            ++v->earlier_problems;
            if (earlier_listed++ < kMaxEarlier)
                v->earlier.push_back(StoreWideSentence(o, Whose::kOtherOld, now_ms).second);
            continue;
        }
        const bool first = counted.insert(id).second;
        // An operation counts once (expired, and its effects orphaned); an account counts once
        // but every sentence about it is kept (it may be off in more than one way).
        if (!first && !account_problem) continue;
        const Whose whose = ours                ? Whose::kRun
                            : before != nullptr ? Whose::kOtherNew
                                                : Whose::kOther;
        auto [kind, sentence] = StoreWideSentence(o, whose, now_ms);
        if (first) {
            if (kind == Kind::kHalfDone)
                ++v->half_done;
            else if (kind == Kind::kDuplicated)
                ++v->duplicated;
            else
                ++v->balance_mismatches;
        }
        problems.Add(std::move(sentence));
    }
    if (earlier_listed > kMaxEarlier)
        v->earlier.push_back("... and " + std::to_string(earlier_listed - kMaxEarlier) +
                             " more (rollsafe audit lists them all)");
    problems.Finish();
}

std::set<std::string> StoreProblemIds(const audit::Snapshot& snapshot, std::int64_t now_ms) {
    std::set<std::string> ids;
    for (const auto& line : audit::Audit(snapshot, now_ms).problem_lines) {
        const auto parsed = ParseJson(line);
        if (parsed && parsed->is_object()) ids.insert(ProblemId(parsed->as_object()));
    }
    return ids;
}

void CheckThroughApi(const std::vector<LoadRecord>& records, const std::string& base_url,
                     Verdict* v, int per_get_deadline_ms) {
    std::string base = base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    std::string why;
    if (!client::ParseUrl(base + "/", &why))
        throw std::invalid_argument("cannot check through the API at '" + base_url + "': " + why);
    v->half_done_checked = false;
    Problems problems(v);
    const std::string waited = std::to_string(per_get_deadline_ms) + " ms";

    // ---- resources: every acknowledged one readable, with the data that was sent ----
    std::set<std::string> seen_keys;
    for (const auto& r : records) {
        if (r.kind != LoadRecord::Kind::kResource || !r.acknowledged ||
            !seen_keys.insert(r.key).second)
            continue;
        if (r.id.empty()) {
            ++v->lost;
            problems.Add("lost: " + AckedKey(r) + " cannot be read back without its id");
            continue;
        }
        const std::string path = "/resources/" + PathSegment(r.id);
        const Fetched f = GetRetried(base + path, per_get_deadline_ms);
        if (!f.response) {
            ++v->lost;
            problems.Add("lost: " + AckedKey(r) + " could not be read back: GET " + path +
                         " did not answer below 500 within " + waited + " (last: " + f.last_error +
                         ")");
            continue;
        }
        if (f.response->status == 404) {
            ++v->lost;
            problems.Add("lost: " + AckedKey(r) + " is not stored (GET " + path + " → 404)");
            continue;
        }
        const auto body = ParseJson(f.response->body);
        const json::value* got =
            body && body->is_object() ? body->as_object().if_contains("data") : nullptr;
        if (f.response->status != 200 || got == nullptr) {
            ++v->lost;
            problems.Add("lost: " + AckedKey(r) + " could not be read back: GET " + path + " → " +
                         std::to_string(f.response->status) + " " +
                         f.response->body.substr(0, 200));
            continue;
        }
        const auto sent = SentData(r);
        if (sent && *got != *sent) {
            ++v->lost;
            problems.Add("lost: " + AckedKey(r) + " is stored with data " + json::serialize(*got) +
                         ", not the " + json::serialize(*sent) + " that was sent");
        }
    }

    // ---- accounts: balance = acknowledged sum, one entry per acknowledged key (by memo) ----
    for (auto& [account, a] : GroupByAccount(records)) {
        const std::string path = "/accounts/" + PathSegment(account);
        const Fetched f = GetRetried(base + path, per_get_deadline_ms);
        if (!f.response) {
            ++v->balance_mismatches;
            problems.Add("balance mismatch: account " + account + " could not be read: GET " +
                         path + " did not answer below 500 within " + waited +
                         " (last: " + f.last_error + ")");
            continue;
        }
        std::int64_t balance = 0;
        std::map<std::string, std::vector<std::string>> ids_by_memo;  // memo → entry ids
        bool readable = f.response->status == 404;
        if (f.response->status == 200) {
            const auto body = ParseJson(f.response->body);
            const json::object* o = body && body->is_object() ? &body->as_object() : nullptr;
            const auto stored = o ? Int(o->if_contains("balance")) : std::nullopt;
            const json::value* entries = o ? o->if_contains("entries") : nullptr;
            if (stored && entries && entries->is_array()) {
                readable = true;
                balance = *stored;
                for (const auto& e : entries->as_array())
                    if (e.is_object())
                        ids_by_memo[Text(e.as_object(), "memo")].push_back(
                            Text(e.as_object(), "entry_id"));
            }
        }
        if (!readable) {
            ++v->balance_mismatches;
            problems.Add("balance mismatch: account " + account + " could not be read: GET " +
                         path + " → " + std::to_string(f.response->status) + " " +
                         f.response->body.substr(0, 200));
            continue;
        }
        for (const LoadRecord* r : a.records) {
            const auto it = ids_by_memo.find(r->key);
            const std::vector<std::string> none;
            const std::vector<std::string>& ids = it == ids_by_memo.end() ? none : it->second;
            std::string listed;
            for (const auto& id : ids) listed += (listed.empty() ? "entries " : ", ") + id;
            if (ids.size() >= 2) {
                ++v->duplicated;
                problems.Add("duplicated: " + AnyKey(*r) + " is stored " +
                             std::to_string(ids.size()) + " times (by memo in GET " + path +
                             "): " + listed);
            }
            if (!r->acknowledged) {
                if (!ids.empty())
                    a.executed_unacknowledged.push_back("key " + r->key + " " + Signed(r->amount));
                continue;
            }
            if (ids.empty()) {
                ++v->lost;
                problems.Add("lost: " + AckedKey(*r) + " is not stored (no entry of GET " + path +
                             " has memo " + r->key + ")");
            } else if (!r->id.empty() && std::find(ids.begin(), ids.end(), r->id) == ids.end()) {
                ++v->lost;
                problems.Add("lost: " + AckedKey(*r) + " is stored as " + listed + " instead");
            }
        }
        if (!a.acknowledged.overflow && balance == a.acknowledged.value) continue;
        ++v->balance_mismatches;
        problems.Add(BalanceSentence(account,
                                     f.response->status == 404
                                         ? "is not stored (GET " + path + " → 404, balance 0)"
                                         : "has balance " + std::to_string(balance),
                                     balance, a));
    }
    problems.Finish();
}

}  // namespace rollsafe::drill
