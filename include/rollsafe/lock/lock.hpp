/// @file
/// @brief A lock service shared by replicas: named locks that expire, each grant carrying a
/// fencing token. `--lock redis://HOST:PORT` orders ledger entries of one account across
/// replicas with it; the store then refuses a write whose token is lower than the highest it
/// has seen for the account (store::Tx::AppendEntry), so a holder that was paused past its
/// lock's expiry cannot write after its successor. See docs/locks.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace rollsafe::lock {

/// The outcome of one attempt to take a lock.
struct Attempt {
    enum class Result {
        kAcquired,     ///< the caller holds the lock until it releases it or the TTL passes
        kBusy,         ///< somebody else holds it: try again later
        kUnavailable,  ///< the lock service did not answer (503 + Retry-After)
    };
    Result result = Result::kUnavailable;
    /// kAcquired: the fencing token. Every grant of one name gets a higher token than every
    /// earlier grant of it (as long as the service keeps its counter; see RaiseFence).
    std::int64_t fence = 0;
    /// kAcquired: the holder's secret; Release() needs it.
    std::string token;
    /// kUnavailable: why.
    std::string error;
};

/// Named locks with expiry and fencing tokens. Thread-safe. Calls return at once; callbacks run
/// exactly once, on the service's own threads, except for a call refused on the spot (after
/// Shutdown, or within a short fail-fast window after Redis failed), whose callback runs on the
/// caller's thread before the call returns: hop back to your executor either way.
class LockService {
  public:
    virtual ~LockService() = default;

    /// One attempt to take `name` for `ttl`, without waiting: kBusy while it is held.
    virtual void TryAcquire(const std::string& name, std::chrono::milliseconds ttl,
                            std::function<void(Attempt)> done) = 0;

    /// Releases `name` if `token` still holds it; a lock that expired and was taken by someone
    /// else is left alone. `done` (may be empty) gets whether it was released.
    virtual void Release(const std::string& name, const std::string& token,
                         std::function<void(bool released)> done) = 0;

    /// Makes every later token of `name` higher than `highest` (a store has seen `highest`;
    /// a service that lost its counter, e.g. restarted without persistence, would otherwise
    /// hand out tokens the store refuses forever). `done` may be empty.
    virtual void RaiseFence(const std::string& name, std::int64_t highest,
                            std::function<void(bool ok)> done) = 0;

    /// True while the service answers.
    virtual bool Healthy() const = 0;

    /// Fails queued calls (kUnavailable), stops the threads. Idempotent; not from a callback.
    virtual void Shutdown() = 0;
};

struct RedisOptions {
    std::chrono::milliseconds connect_timeout{1000};
    /// Per command: an unreachable or stalled Redis fails the attempt after this long.
    std::chrono::milliseconds command_timeout{1000};
    /// Connections, one thread each.
    int connections = 2;
    /// Keys are `<prefix>{<name>}:lock` (the holder's token, with a PX expiry) and
    /// `<prefix>{<name>}:fence` (the INCR counter of fencing tokens); the hash tag keeps both
    /// in one Redis Cluster slot.
    std::string key_prefix = "rollsafe:";
};

/// Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (port 6379, db 0 by default; IPv6 hosts in
/// brackets) and connects. Throws std::invalid_argument naming what is wrong with the URL, and
/// std::runtime_error when Redis does not answer a PING at start. Afterwards an unreachable
/// Redis only fails attempts (kUnavailable) until a connection is made again.
std::unique_ptr<LockService> OpenRedisLock(const std::string& url, RedisOptions options = {});

}  // namespace rollsafe::lock
