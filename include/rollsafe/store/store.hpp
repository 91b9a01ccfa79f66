/// @file
/// @brief The storage interface of the reference API, and the SQLite implementation's factory.
///
/// Every call is asynchronous: it returns at once and invokes its callback exactly once, on a
/// store thread, when the work is durable (writes) or read (reads). Callers on an event loop
/// must hop back to their own executor inside the callback. Store work never runs on the
/// caller's thread, so an I/O thread is never blocked by the database.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rollsafe::store {

/// What the caller should do about a failure. Carried by every error so that the retry
/// decision never depends on message text.
enum class ErrorKind {
    kNone,       ///< success
    kConflict,   ///< a unique constraint decided against us: do not retry as is
    kTransient,  ///< the store is busy or unreachable: retry later (503 + Retry-After)
    kInDoubt,    ///< the commit may or may not have happened: re-read before deciding
    kFenced,     ///< written under a lock that was lost (a newer fencing token was seen):
                 ///< nothing was written; take the lock again, then retry
    kPermanent,  ///< a bug or corrupt data: 500, do not retry
};

struct Status {
    ErrorKind kind = ErrorKind::kNone;
    std::string message;

    bool ok() const { return kind == ErrorKind::kNone; }
    static Status Ok() { return {}; }
};

/// A stored resource (`POST /resources`).
/// A stored resource (`POST /resources`).
struct Resource {
    std::string id;
    std::string data_json;        ///< the request's "data" value, serialized
    std::string created_at;       ///< RFC 3339 UTC
    std::string idempotency_key;  ///< empty when the request carried none
    std::string owner;            ///< the replica that wrote it
    std::string principal;        ///< who asked for it
};

/// One row of the operation journal: `(principal, key)` → what was asked, who runs it, how far
/// it got, and, once completed, the response to replay.
struct Operation {
    std::string principal;
    std::string key;
    std::string fingerprint;          ///< hash of method, path and body
    std::string state;                ///< "in_progress" or "completed"
    std::string owner;                ///< claim token of the current owner ("" when released)
    std::int64_t lease_until_ms = 0;  ///< Unix ms; the owner must renew before this
    std::string recovery_point;       ///< last phase committed ("" = just claimed)
    std::string recovery_state;       ///< JSON the next phase needs (e.g. the reserved id)
    std::string method;               ///< the request, kept so that recovery needs no client
    std::string path;
    std::string request_body;
    int response_status = 0;       ///< set when completed
    std::string response_headers;  ///< JSON array of [name, value] pairs
    std::string response_body;
    std::int64_t created_at_ms = 0;
    std::int64_t updated_at_ms = 0;
};

/// One entry of the ordered ledger.
struct LedgerEntry {
    std::string entry_id;
    std::string account;
    std::int64_t amount = 0;
    std::int64_t seq = 0;
    std::int64_t balance = 0;  ///< the account's balance right after this entry
    std::string memo;
    std::string idempotency_key;
    std::string principal;
    std::string created_at;
};

/// A store error that carries the retry decision. Thrown by Tx methods; a job that lets it
/// escape is rolled back and its callback gets the kind.
struct Error : std::runtime_error {
    Error(ErrorKind k, const std::string& what) : std::runtime_error(what), kind(k) {}
    ErrorKind kind;
};

/// Thrown by Tx::AppendEntry when the write carries a fencing token not higher than the highest
/// the store has seen for that account: the writer's lock expired and somebody else has written
/// under a newer one since. Nothing was written.
struct FencedError : Error {
    FencedError(const std::string& account, std::int64_t token, std::int64_t highest_seen)
        : Error(ErrorKind::kFenced, "fencing token " + std::to_string(token) + " for account '" +
                                        account + "' is stale: the store has seen " +
                                        std::to_string(highest_seen)),
          highest(highest_seen) {}
    std::int64_t highest;  ///< the account's highest token so far (a lock service that lost
                           ///< its counter restarts above it)
};

/// The statements a job may run inside its transaction. Methods throw store::Error on failure.
/// A Tx is valid only during the job it was passed to, on the store's thread.
class Tx {
  public:
    virtual ~Tx() = default;

    // ---- journal ----
    virtual std::optional<Operation> GetOperation(const std::string& principal,
                                                  const std::string& key) = 0;
    /// Inserts a new row; false (and nothing written) when `(principal, key)` exists.
    virtual bool InsertOperation(const Operation& op) = 0;
    /// Takes over an in_progress row whose lease expired before `now_ms`; false when the row
    /// is not in_progress or its lease is live (somebody else got there first).
    virtual bool TakeOver(const std::string& principal, const std::string& key,
                          const std::string& new_owner, std::int64_t lease_until_ms,
                          std::int64_t now_ms) = 0;
    /// Records a committed phase; false when `owner` no longer owns the row.
    virtual bool SaveProgress(const std::string& principal, const std::string& key,
                              const std::string& owner, const std::string& recovery_point,
                              const std::string& recovery_state, std::int64_t lease_until_ms,
                              std::int64_t now_ms) = 0;
    /// Extends the lease; false when `owner` no longer owns the row.
    virtual bool Renew(const std::string& principal, const std::string& key,
                       const std::string& owner, std::int64_t lease_until_ms) = 0;
    /// Marks the row completed with the response to replay; false when not owned.
    virtual bool Complete(const std::string& principal, const std::string& key,
                          const std::string& owner, int status, const std::string& headers_json,
                          const std::string& body, std::int64_t now_ms) = 0;
    /// Gives the row up at once (lease expired, no owner) so another replica may take it over
    /// without waiting; false when not owned.
    virtual bool Release(const std::string& principal, const std::string& key,
                         const std::string& owner, std::int64_t now_ms) = 0;
    /// in_progress rows whose lease expired before `now_ms`, oldest first.
    virtual std::vector<Operation> ExpiredOperations(std::int64_t now_ms, int limit) = 0;
    /// Deletes up to `limit` completed rows last updated before `before_ms`; returns how many.
    virtual int DeleteCompletedBefore(std::int64_t before_ms, int limit) = 0;
    /// Every journal row (for audits).
    virtual std::vector<Operation> AllOperations() = 0;

    // ---- resources ----
    virtual void InsertResource(const Resource& r) = 0;
    virtual std::optional<Resource> GetResource(const std::string& id) = 0;
    virtual std::vector<Resource> AllResources() = 0;

    // ---- ledger ----
    /// Appends `entry` to its account (created at balance 0 if new), filling in the next seq
    /// (1, 2, …; no gaps) and the new balance. Returns false, writing nothing, when the
    /// balance would overflow int64.
    ///
    /// `fence` is the fencing token of the lock the caller holds on the account (`--lock
    /// redis`), or 0 when the store itself orders the account's writers (`--lock postgres`:
    /// a transaction-scoped advisory lock; SQLite: its single writer). A token not higher than
    /// the highest the store has seen for the account throws FencedError, writing nothing; an
    /// accepted one becomes the new highest. Tokens only ever rise and each writes once, so a
    /// lock holder that was paused past its lock's expiry cannot write after its successor has.
    virtual bool AppendEntry(LedgerEntry& entry, std::int64_t fence) = 0;
    /// Balance and entries in seq order; nullopt for an account never written.
    virtual std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> GetAccount(
        const std::string& account) = 0;
    /// Every account with its stored balance.
    virtual std::vector<std::pair<std::string, std::int64_t>> AllAccounts() = 0;
    /// Every entry of every account, in (account, seq) order.
    virtual std::vector<LedgerEntry> AllEntries() = 0;
};

/// A unit of work. Runs on a store thread inside a transaction (for writes, a savepoint of
/// the group transaction): returning a non-ok Status or throwing rolls back everything it
/// did. Results leave through the lambda's captures. A job may run more than once (the
/// PostgreSQL store re-runs one that hit a deadlock or serialization failure, after rolling it
/// back): it must set its results, not accumulate into them.
using Job = std::function<Status(Tx&)>;

struct Durability {
    /// SQLite `PRAGMA synchronous`: "full" (default; an acknowledged write survives power
    /// loss), "normal" (survives a process crash, not power loss) or "off".
    std::string synchronous = "full";
    /// Most writes grouped into one commit.
    int max_batch = 256;
    /// Open an existing store for reading only (audits): no file is created, nothing is
    /// migrated or written, and Write() fails with kPermanent.
    bool read_only = false;
    /// PostgreSQL store only (`--pg-pool`): worker threads, each owning one connection; a
    /// job holds one connection for its whole transaction.
    int pg_pool = 8;
    /// PostgreSQL store only (`--pg-batch`, 1..64): most queued writes a worker runs in one
    /// transaction, each in its own savepoint, with one commit for all (1: a transaction per
    /// write). At most 64 keeps each transaction's subtransactions in PostgreSQL's per-backend
    /// cache, so other sessions' snapshots never overflow it.
    int pg_batch = 32;
};

/// Storage for the reference API. Implementations are thread-safe.
class Store {
  public:
    virtual ~Store() = default;

    /// Runs `job` in a write transaction; `done` runs after the commit (or failure), on a
    /// store thread. Concurrent writes share one commit; each job is atomic on its own.
    virtual void Write(Job job, std::function<void(Status)> done) = 0;

    /// Runs `job` against a consistent read snapshot.
    virtual void Read(Job job, std::function<void(Status)> done) = 0;

    /// Inserts `r` durably; the callback runs after the commit (or failure).
    void InsertResource(Resource r, std::function<void(Status)> done);

    /// Reads a resource by id; `found` is empty when there is none.
    void GetResource(std::string id,
                     std::function<void(Status, std::optional<Resource> found)> done);

    /// True while the store answers (used by readiness).
    virtual bool Healthy() const = 0;

    /// Finishes queued work, then stops the store threads. Idempotent; must not be called from
    /// a store callback. Calls made after it fail with kTransient, their callback running at
    /// once on the caller's thread.
    virtual void Shutdown() = 0;
};

/// Opens (creating if needed) the SQLite database at `path` in WAL mode, creates or migrates
/// the schema, and starts one writer thread (group commit) and one reader thread. Several
/// processes may open the same file. Throws std::runtime_error with a clear message when the
/// file cannot be opened or migrated.
std::unique_ptr<Store> OpenSqliteStore(const std::string& path, Durability durability = {});

/// True for `postgres://` and `postgresql://` URLs (the PostgreSQL store's).
bool IsPostgresUrl(std::string_view url);

/// Parses a `--store` URL. Supported: `sqlite:PATH` (also `sqlite://PATH`) and
/// `postgres://USER@HOST:PORT/DB?...` (also `postgresql://`; any libpq connection URI): a pool
/// of `durability.pg_pool` connections, the schema created or migrated at open (see
/// docs/stores.md). Throws std::invalid_argument naming what is wrong, std::runtime_error when
/// the store cannot be opened (PostgreSQL unreachable at start included).
std::unique_ptr<Store> OpenStore(const std::string& url, Durability durability = {});

}  // namespace rollsafe::store
