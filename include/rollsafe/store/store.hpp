/// @file
/// @brief The storage interface of the reference API, and the SQLite implementation's factory.
///
/// Every call is asynchronous: it returns at once and invokes its callback exactly once, on a
/// store thread, when the work is durable (writes) or read (reads). Callers on an event loop
/// must hop back to their own executor inside the callback. Store work never runs on the
/// caller's thread, so an I/O thread is never blocked by the database.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace rollsafe::store {

/// What the caller should do about a failure. Carried by every error so that the retry
/// decision never depends on message text.
enum class ErrorKind {
    kNone,       ///< success
    kConflict,   ///< a unique constraint decided against us: do not retry as is
    kTransient,  ///< the store is busy or unreachable: retry later (503 + Retry-After)
    kInDoubt,    ///< the commit may or may not have happened: re-read before deciding
    kPermanent,  ///< a bug or corrupt data: 500, do not retry
};

struct Status {
    ErrorKind kind = ErrorKind::kNone;
    std::string message;

    bool ok() const { return kind == ErrorKind::kNone; }
    static Status Ok() { return {}; }
};

/// A stored resource (`POST /resources`).
struct Resource {
    std::string id;
    std::string data_json;        ///< the request's "data" value, serialized
    std::string created_at;       ///< RFC 3339 UTC
    std::string idempotency_key;  ///< empty when the request carried none
    std::string owner;            ///< the replica that wrote it
};

struct Durability {
    /// SQLite `PRAGMA synchronous`: "full" (default; an acknowledged write survives power
    /// loss), "normal" (survives a process crash, not power loss) or "off".
    std::string synchronous = "full";
    /// Most writes grouped into one commit.
    int max_batch = 256;
};

/// Storage for the reference API. Implementations are thread-safe.
class Store {
  public:
    virtual ~Store() = default;

    /// Inserts `r` durably; the callback runs after the commit (or failure).
    virtual void InsertResource(Resource r, std::function<void(Status)> done) = 0;

    /// Reads a resource by id; `found` is empty when there is none.
    virtual void GetResource(std::string id,
                             std::function<void(Status, std::optional<Resource> found)> done) = 0;

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

/// Parses a `--store` URL. Supported: `sqlite:PATH` (also `sqlite://PATH`). Throws
/// std::invalid_argument naming what is wrong.
std::unique_ptr<Store> OpenStore(const std::string& url, Durability durability = {});

}  // namespace rollsafe::store
