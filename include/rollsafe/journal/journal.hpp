/// @file
/// @brief The operation journal's rules: idempotency keys, principals, fingerprints, and the
/// claim decision. Backend-independent: the rules run as store jobs over store::Tx.
///
/// Claim → execute → replay (docs/journal.md):
/// - a new `(principal, key)` is claimed by inserting the row `in_progress` with a lease;
/// - the same key with another method/path/body is a mismatch (422);
/// - a completed row is replayed byte for byte;
/// - an `in_progress` row with a live lease is a conflict (409 + Retry-After, never 503);
/// - an `in_progress` row whose lease expired is taken over and resumed from its recovery
///   point.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rollsafe/store/store.hpp"

namespace rollsafe::journal {

/// Longest accepted Idempotency-Key, in characters.
inline constexpr std::size_t kMaxKeyLength = 255;

/// Extracts the key from an `Idempotency-Key` header value. The IETF draft makes the value a
/// structured-field string (`"abc"`); the bare form (`abc`) that most clients send is accepted
/// too. Returns the key, or nullopt with `error` set: empty, longer than 255, or a character
/// outside visible ASCII (0x21–0x7E).
std::optional<std::string> ParseIdempotencyKey(std::string_view header, std::string* error);

/// The principal that scopes keys: until authentication exists, "bearer:" + the first 32 hex
/// digits of SHA-256 of the `Authorization` value when present (the credential itself is
/// never stored), else "anonymous". One client can never replay another's response.
std::string PrincipalFor(std::optional<std::string_view> authorization);

/// Lower-case hex SHA-256 of method, path and body (unambiguously delimited).
std::string Fingerprint(std::string_view method, std::string_view path, std::string_view body);

/// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

enum class Decision {
    kExecute,     ///< new row inserted: run the operation from the start
    kResume,      ///< an expired lease was taken over: resume from op.recovery_point
    kReplay,      ///< completed: answer op's stored response
    kInProgress,  ///< another owner holds a live lease: 409, retry after `retry_after_s`
    kMismatch,    ///< same key, different request: 422
};

struct ClaimResult {
    Decision decision = Decision::kExecute;
    store::Operation op;             ///< the row as it now is (with our ownership if claimed)
    std::int64_t retry_after_s = 0;  ///< for kInProgress: seconds left on the lease, at least 1
};

/// The decision for a request whose key already has a row `existing` (taking the row over
/// when its lease expired). Throws store::Error from the Tx.
ClaimResult Decide(store::Tx& tx, const store::Operation& existing, const store::Operation& fresh,
                   std::int64_t now_ms);

/// Decides and records the claim inside a write transaction. `fresh` is the row to insert:
/// principal, key, fingerprint, request, owner, lease_until_ms, timestamps, state
/// "in_progress". Throws store::Error from the Tx.
ClaimResult Claim(store::Tx& tx, const store::Operation& fresh, std::int64_t now_ms);

}  // namespace rollsafe::journal
