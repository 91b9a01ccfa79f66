/// @file
/// @brief The column lists both stores read rows with, in the order their row readers expect:
/// one definition, so a column added to the schema cannot be read differently by SQLite and
/// PostgreSQL. Macros, because each is spliced into longer SQL literals.
#pragma once

#define kSelectOp                                                                       \
    "SELECT principal, key, fingerprint, state, owner, lease_until_ms, recovery_point," \
    " recovery_state, method, path, request_body, response_status, response_headers,"   \
    " response_body, created_at_ms, updated_at_ms FROM journal"
#define kSelectResource \
    "SELECT id, data, created_at, COALESCE(idempotency_key, ''), owner, principal FROM resources"
#define kSelectEntry                                                                    \
    "SELECT entry_id, account, amount, seq, balance, memo, idempotency_key, principal," \
    " created_at FROM entries"
