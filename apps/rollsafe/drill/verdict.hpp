/// @file
/// @brief The drill's audit: what the clients were told, checked against what was stored.
///
/// The load generator keeps one LoadRecord per logical request (one idempotency key). After
/// the load, local mode checks them against a snapshot of the store (CheckStore); black-box
/// mode, which cannot read the store, checks them through the API (CheckThroughApi). Both add
/// to a Verdict whose request/acknowledged/retried/failed counts CountRequests fills.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "audit/auditor.hpp"
#include "drill/report.hpp"

namespace rollsafe::drill {

/// One logical request of the load: one key, retried by the client until it lands or gives up.
struct LoadRecord {
    enum class Kind { kResource, kEntry };
    Kind kind = Kind::kResource;
    std::string key;            ///< the Idempotency-Key every attempt sent
    std::string body;           ///< the JSON body sent
    std::string account;        ///< kEntry: the account
    std::int64_t amount = 0;    ///< kEntry: the amount
    std::int64_t work_ms = 0;   ///< kResource: the work_ms asked for
    bool acknowledged = false;  ///< a 2xx arrived
    int status = 0;             ///< the final status, 0 when none
    /// When acknowledged: the id from the 2xx body ("id" for a resource, "entry_id" for an
    /// entry); empty when the body had none.
    std::string id;
    std::string failure_cause;  ///< when not acknowledged, e.g. "status 502", "deadline"
    int attempts = 0;
    double start_s = 0, end_s = 0;  ///< seconds since the drill started
};

/// Fills `v->requests`, `acknowledged`, `retried` (attempts > 1), `attempts`, `failed` and
/// `failed_by_cause` from `records`. Does not touch the other fields.
void CountRequests(const std::vector<LoadRecord>& records, Verdict* v);

/// Local mode. Checks `records` against `snapshot` (taken after the replicas were stopped or
/// the recovery worker had run) as of `now_ms`, counting into `v`. Rows are matched to records
/// by idempotency key alone (the keys are UUIDs unique to the run; the drill sends no
/// Authorization, so every row has the anonymous principal):
/// - lost: an acknowledged key with no stored effect, whose effects all have ids other than
///   the acknowledged id, or (a resource) whose stored `data` differs from the `data` of
///   `body` (compared as JSON values);
/// - duplicated: a key of `records` with two or more stored effects; plus the store-wide
///   duplicates audit::Audit finds for other keys. A key counts once.
/// - half_done: a key of `records` whose journal row is still in progress (whatever its
///   lease), or that has an effect but no completed journal row; plus the store-wide expired
///   operations and orphans that audit::Audit finds for other keys (once per operation);
/// - balance_mismatches: an account of `records` whose stored balance differs from the sum of
///   the acknowledged amounts to it (an account never stored counts as balance 0; an entry
///   executed although its client never got a 2xx shows up here), plus the store-wide
///   balance problems audit::Audit finds (sum of entries, seq gaps). An account counts once.
/// Rows of keys not in `records` (an older run on the same store, another app) only count
/// through the store-wide audit, and only when the problem is new: with `before` (the
/// StoreProblemIds of the store as the run started), a store-wide problem whose id is in it,
/// in rows that are not the run's, is not counted but added to `v->earlier_problems` (its
/// sentence to `v->earlier`, at most 20 and a last line saying how many more); without
/// `before` every store-wide problem counts. Adds one sentence per counted problem to
/// `v->problems` (at most 200 in all, the last saying how many were left out), e.g. `lost: key
/// K acknowledged as resource ID (201 after 3 attempts) is not stored (it has no journal row
/// either)`.
void CheckStore(const std::vector<LoadRecord>& records, const audit::Snapshot& snapshot,
                std::int64_t now_ms, Verdict* v, const std::set<std::string>* before = nullptr);

/// One id per problem audit::Audit finds in `snapshot` as of `now_ms`: per operation (an
/// expired operation and its orphaned effects are one), per keyless effect, per duplicated
/// (principal, key), per account. Taken before the run, for CheckStore's `before`.
std::set<std::string> StoreProblemIds(const audit::Snapshot& snapshot, std::int64_t now_ms);

/// Black-box mode. For every acknowledged resource, `GET {base_url}/resources/{id}` must be
/// 200 with the data that was sent (compared as JSON values); for every account of
/// `records`, `GET {base_url}/accounts/{a}` must be 200 (or 404 when no entry was
/// acknowledged) with a balance equal to the sum of the acknowledged amounts and exactly one
/// entry per acknowledged key (the API does not show keys; the load sets each entry's `memo`
/// to its key, so a memo seen twice is a duplicate and an acknowledged key without an entry
/// is lost). Duplicated resources cannot be seen through the API. Sets
/// `v->half_done_checked = false`. Each GET (client::Get) is retried for up to
/// `per_get_deadline_ms` on connection errors and 5xx; a GET that never answers counts as
/// lost (resource) or a mismatch (account) with a sentence saying so. Sentences as in
/// CheckStore. Throws std::invalid_argument when `base_url` is not a URL client::ParseUrl
/// accepts.
void CheckThroughApi(const std::vector<LoadRecord>& records, const std::string& base_url,
                     Verdict* v, int per_get_deadline_ms = 10000);

}  // namespace rollsafe::drill
