/// @file
/// @brief The checks behind `rollsafe audit`: every stored effect has exactly one completed
/// operation, no operation is stuck past its lease, and every ledger account adds up.
///
/// A pure function of one snapshot of the store, so that each rule is tested without a
/// database and the same checks can serve the rollout drill.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rollsafe/store/store.hpp"

namespace rollsafe::audit {

/// What the audit reads, all from one consistent snapshot.
struct Snapshot {
    std::vector<store::Operation> operations;
    std::vector<store::Resource> resources;
    std::vector<store::LedgerEntry> entries;
    /// Every account with its stored balance.
    std::vector<std::pair<std::string, std::int64_t>> accounts;
};

/// The outcome of Audit(). Every `*_lines` element is one compact JSON object without a
/// trailing newline.
struct AuditResult {
    /// One line per stored effect, resources first, then ledger entries, each in input order:
    /// `{"kind":"resource"|"entry","id":…,"key":…,"principal":…,"complete":true|false}`.
    /// An effect stored twice appears twice.
    std::vector<std::string> effect_lines;
    /// One line per problem found, for standard error, e.g.
    /// `{"problem":"duplicate","principal":…,"key":…,"count":2,"ids":[…]}`. Order: expired
    /// operations, duplicates (by principal, key), orphans (in effect order), accounts (in
    /// input order, then accounts that only entries name).
    std::vector<std::string> problem_lines;
    /// `{"summary":true,"resources":N,…,"ok":true|false}` with the counts below.
    std::string summary_line;

    std::int64_t resources = 0;
    std::int64_t entries = 0;
    std::int64_t operations = 0;
    /// Journal rows whose state is "in_progress".
    std::int64_t in_progress = 0;
    /// In-progress rows whose lease ended at or before `now_ms`: nobody is finishing them.
    std::int64_t expired_in_progress = 0;
    /// (principal, key) pairs with a non-empty key that carry two or more effects, counted
    /// across resources and entries; each pair counts once whatever its number of effects.
    std::int64_t duplicates = 0;
    /// Effects without a completed operation: an empty key (written before the journal
    /// existed), no journal row for their (principal, key), or a row not "completed".
    std::int64_t orphans = 0;
    /// Accounts whose stored balance differs from the sum of their entries' amounts (or that
    /// entries name but that has no stored balance), or whose seqs are not exactly 1..n.
    /// Each account counts once whatever its number of problems.
    std::int64_t balance_mismatches = 0;
    /// No expired operation, duplicate, orphan or balance mismatch.
    bool ok = true;
};

/// Checks `snapshot` as of `now_ms` (Unix ms; a lease with `lease_until_ms <= now_ms` has
/// expired). Never throws on bad data: every inconsistency is a problem line and a count.
AuditResult Audit(const Snapshot& snapshot, std::int64_t now_ms);

}  // namespace rollsafe::audit
