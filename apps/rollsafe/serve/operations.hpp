/// @file
/// @brief Exactly-once execution of the reference API's POSTs over the operation journal:
/// claim → (reserve → work → finalize) → replay, shared by request handlers and the recovery
/// worker. See docs/journal.md.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "rollsafe/http/context.hpp"
#include "rollsafe/http/message.hpp"
#include "rollsafe/lock/lock.hpp"
#include "rollsafe/metrics/registry.hpp"
#include "rollsafe/store/store.hpp"
#include "rollsafe/util/clock.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::serve {

/// FIFO mutual exclusion per key (the ledger's per-account lock on one replica). Thread-safe.
class KeyedLock {
  public:
    /// Calls `granted` exactly once, when the caller holds `key`: at once (on this thread)
    /// when it is free, else from the Release() that hands it over, in arrival order.
    void Acquire(const std::string& key, std::function<void(bool)> granted);
    /// Hands `key` to the next waiter, or frees it.
    void Release(const std::string& key);

  private:
    std::mutex mu_;
    std::unordered_map<std::string, std::deque<std::function<void(bool)>>> held_;
};

/// Holds a KeyedLock key until destroyed.
class KeyGuard {
  public:
    KeyGuard() = default;
    KeyGuard(KeyedLock* lock, std::string key) : lock_(lock), key_(std::move(key)) {}
    KeyGuard(KeyGuard&& o) noexcept
        : lock_(std::exchange(o.lock_, nullptr)), key_(std::move(o.key_)) {}
    KeyGuard& operator=(KeyGuard&& o) noexcept {
        if (this != &o) {
            if (lock_) lock_->Release(key_);
            lock_ = std::exchange(o.lock_, nullptr);
            key_ = std::move(o.key_);
        }
        return *this;
    }
    ~KeyGuard() {
        if (lock_) lock_->Release(key_);
    }

  private:
    KeyedLock* lock_ = nullptr;
    std::string key_;
};

/// Everything an operation needs from its process. All references must outlive the handlers.
struct OperationEnv {
    store::Store& store;
    const util::Clock& clock;
    util::RandomSource random;
    std::chrono::milliseconds lease{10'000};
    int retry_after_seconds = 1;
    std::int64_t max_work_ms = 600'000;
    /// Test hook: called with "reserved", "worked" or "completed" right after that recovery
    /// point is committed, with "locked" right after an account lock (`--lock redis`) is taken,
    /// and with "writing" right before a write under that lock is sent to the store (the
    /// integration tests SIGKILL or SIGSTOP the process there). May be empty.
    std::function<void(const std::string& point)> after_commit;
    /// Per-account order for ledger entries within this process.
    std::shared_ptr<KeyedLock> account_locks = std::make_shared<KeyedLock>();
    /// `--lock redis`: a ledger entry is written while holding this service's lock on its
    /// account, and carries the lock's fencing token into the store, which refuses a stale one
    /// (the write is then retried under a new lock, at most 3 times). Null: the store orders
    /// each account's writers itself (`--lock postgres`, or SQLite's single writer).
    lock::LockService* account_lock = nullptr;
    /// Expiry of an account lock. An entry waits at most this + 1 s for its account's lock
    /// (then 503 + Retry-After), and does not write under a lock older than 4/5 of it (it takes
    /// a new one first).
    std::chrono::milliseconds lock_ttl{5000};
    /// Where lock events are counted (may be null).
    metrics::Registry* metrics = nullptr;
};

/// A validated request, parsed from the client's body or from the journal row on recovery.
struct Plan {
    enum class Kind { kResource, kEntry };
    Kind kind = Kind::kResource;
    std::int64_t work_ms = 0;
    std::string data_json;  ///< resource: the "data" value
    std::string account;    ///< entry
    std::int64_t amount = 0;
    std::string memo;
};

/// Parses and validates a POST body for `path` ("/resources" or "/accounts/{a}/entries").
/// Throws http::ApiError (400) naming the problem. Content type is checked by the caller.
Plan ParsePlan(const std::string& path, const std::string& body, std::int64_t max_work_ms);

/// The exactly-once POST handler: validates Idempotency-Key (400 when missing or bad) and the
/// content type (415), claims the key, then replays (`Idempotent-Replayed: true`), answers 409
/// + Retry-After (in progress elsewhere) or 422 (same key, different request), or runs the
/// operation to completion. A cancelled request releases its claim before returning.
boost::asio::awaitable<http::Response> HandleIdempotentPost(OperationEnv& env, http::Request& req,
                                                            http::RequestContext& ctx);

/// Drives an operation we own (claimed or taken over) from its recovery point to completion
/// and returns the stored response. If `ctx` is cancelled mid-way the claim is released and
/// a 503 is returned; if ownership was lost (our lease expired and another replica took
/// over) a 409 is returned. Used by the handler and by the recovery worker.
/// `op` must stay alive until the returned awaitable completes.
boost::asio::awaitable<http::Response> RunOperation(OperationEnv& env, const store::Operation& op,
                                                    http::RequestContext& ctx);

/// Entries of one account run one at a time in arrival order: waits for the account's lock
/// when `path`/`body` is a ledger entry, and returns the guard (empty for other requests).
boost::asio::awaitable<KeyGuard> LockFor(OperationEnv& env, const Plan& plan);

/// True for `application/json` and `application/*+json`, parameters (charset) ignored.
bool IsJsonMediaType(std::string_view content_type);

/// Serialises a response for the journal and back.
std::string HeadersToJson(const http::Headers& h);
http::Headers HeadersFromJson(const std::string& json);

}  // namespace rollsafe::serve
