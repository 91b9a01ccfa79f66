// Redis lock service over hiredis' blocking API on a small pool of threads, like the
// PostgreSQL store: the event loops never wait on Redis.
#include <hiredis/hiredis.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rollsafe/lock/lock.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::lock {
namespace {

// SET NX PX and INCR in one script: a token is only ever issued together with the lock, and
// two grants of one name can never get the same or a lower token. Idempotent for one holder
// token: an acquire whose reply was lost and is sent again finds its own lock and gets the same
// fencing token back, instead of waiting for its own lock to expire.
constexpr const char* kAcquire =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "return redis.call('INCR', KEYS[2]) end "
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return tonumber(redis.call('GET', KEYS[2]) or '0') end return 0";
// Compare-and-delete: a holder whose lock expired must not delete its successor's.
constexpr const char* kRelease =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
constexpr const char* kRaise =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
    "redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";

struct Endpoint {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string user;  ///< Redis 6 ACL user; empty: the default user
    std::string password;
};

Endpoint ParseUrl(const std::string& url) {
    constexpr std::string_view kScheme = "redis://";
    if (!url.starts_with(kScheme))
        throw std::invalid_argument("lock URL must start with redis://, not '" + url + "'");
    std::string rest = url.substr(kScheme.size());
    Endpoint ep;
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        std::string auth = rest.substr(0, at);
        rest = rest.substr(at + 1);
        const auto colon = auth.find(':');
        if (colon == std::string::npos) {
            ep.password = auth;
        } else {
            ep.user = auth.substr(0, colon);
            ep.password = auth.substr(colon + 1);
        }
    }
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            if (db.size() > 2 || db.find_first_not_of("0123456789") != std::string::npos)
                throw std::invalid_argument("redis URL database must be a number 0-99, not '" + db +
                                            "'");
            ep.db = std::stoi(db);
        }
    }
    std::string port;
    if (rest.starts_with("[")) {
        const auto close = rest.find(']');
        if (close == std::string::npos)
            throw std::invalid_argument("redis URL has an unclosed '[' in '" + url + "'");
        ep.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':')
                throw std::invalid_argument("redis URL: expected ':' after ']' in '" + url + "'");
            port = rest.substr(close + 2);
        }
    } else if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        ep.host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
    } else {
        ep.host = rest;
    }
    if (ep.host.empty()) throw std::invalid_argument("redis URL has no host: '" + url + "'");
    if (!port.empty()) {
        if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
            std::stoi(port) < 1 || std::stoi(port) > 65535)
            throw std::invalid_argument("redis URL port must be 1-65535, not '" + port + "'");
        ep.port = std::stoi(port);
    }
    return ep;
}

timeval ToTimeval(std::chrono::milliseconds d) {
    return {static_cast<time_t>(d.count() / 1000),
            static_cast<suseconds_t>(d.count() % 1000 * 1000)};
}

struct ReplyDeleter {
    void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

/// Sends one command and reads its reply (null when the connection failed).
Reply Send(redisContext* c, const std::vector<std::string>& argv) {
    std::vector<const char*> a;
    std::vector<size_t> len;
    for (const auto& s : argv) {
        a.push_back(s.data());
        len.push_back(s.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(a.size()), a.data(), len.data())));
}

/// One connection, reopened on the next command after any failure.
class Conn {
  public:
    Conn(const Endpoint& ep, const RedisOptions& o) : ep_(ep), o_(o) {}
    ~Conn() { Close(); }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    /// Runs one command; nullopt (and `why`) when Redis did not answer or answered an error.
    /// A pooled connection that turns out dead (Redis restarted since its last use) is
    /// replaced and the command sent once more: every command here may safely run twice (a
    /// lock taken twice only delays the next holder by its TTL).
    std::optional<Reply> Command(const std::vector<std::string>& argv, std::string* why) {
        const bool reused = c_ != nullptr;
        auto r = Once(argv, why);
        // Only a connection the server had closed (EOF, reset) is worth a second try; a timeout
        // means Redis is slow or gone, and trying again would only double the wait.
        if (!r && reused && peer_closed_) r = Once(argv, why);
        return r;
    }

  private:
    std::optional<Reply> Once(const std::vector<std::string>& argv, std::string* why) {
        peer_closed_ = false;
        if (!Ensure(why)) return std::nullopt;
        Reply r = Send(c_, argv);
        if (!r) {
            *why = std::string("redis: ") + (c_->errstr[0] ? c_->errstr : "no reply");
            peer_closed_ = c_->err == REDIS_ERR_EOF ||
                           (c_->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE));
            Close();  // a timed-out connection may still deliver the late reply: never reuse it
            return std::nullopt;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            *why = "redis: " + std::string(r->str, r->len);
            return std::nullopt;
        }
        return r;
    }

    bool Ensure(std::string* why) {
        if (c_) return true;
        const timeval ct = ToTimeval(o_.connect_timeout);
        c_ = redisConnectWithTimeout(ep_.host.c_str(), ep_.port, ct);
        if (!c_ || c_->err) {
            *why = "cannot connect to redis " + ep_.host + ":" + std::to_string(ep_.port) + ": " +
                   (c_ ? c_->errstr : "out of memory");
            Close();
            return false;
        }
        const timeval cmd = ToTimeval(o_.command_timeout);
        redisSetTimeout(c_, cmd);
        auto setup = [&](std::vector<std::string> argv) {
            Reply r = Send(c_, argv);
            if (!r || r->type == REDIS_REPLY_ERROR) {
                *why = "redis " + argv[0] +
                       " failed: " + (r ? std::string(r->str, r->len) : std::string(c_->errstr));
                return false;
            }
            return true;
        };
        const std::vector<std::string> auth =
            ep_.user.empty() ? std::vector<std::string>{"AUTH", ep_.password}
                             : std::vector<std::string>{"AUTH", ep_.user, ep_.password};
        if ((!ep_.password.empty() && !setup(auth)) ||
            (ep_.db != 0 && !setup({"SELECT", std::to_string(ep_.db)}))) {
            Close();
            return false;
        }
        return true;
    }
    void Close() {
        if (c_) redisFree(c_);
        c_ = nullptr;
    }

    Endpoint ep_;
    RedisOptions o_;
    redisContext* c_ = nullptr;
    bool peer_closed_ = false;
};

class RedisLock final : public LockService {
  public:
    RedisLock(const std::string& url, RedisOptions o) : ep_(ParseUrl(url)), o_(std::move(o)) {
        if (o_.connections < 1 || o_.connections > 64)
            throw std::invalid_argument("redis lock connections must be 1-64");
        for (int i = 0; i < o_.connections; ++i) conns_.push_back(std::make_unique<Conn>(ep_, o_));
        std::string why;
        auto pong = conns_[0]->Command({"PING"}, &why);
        if (!pong) throw std::runtime_error(why);
        for (auto& c : conns_) threads_.emplace_back([this, conn = c.get()] { Loop(*conn); });
    }
    ~RedisLock() override { Shutdown(); }

    void TryAcquire(const std::string& name, std::chrono::milliseconds ttl,
                    std::function<void(Attempt)> done) override {
        // Unique per grant: a release must only ever match the grant it belongs to.
        const std::string token = util::NewUuid(random_);
        Submit(
            [this, name, ttl, token, done](Conn& c) {
                std::string why;
                auto r = Run(c,
                             {"EVAL", kAcquire, "2", LockKey(name), FenceKey(name), token,
                              std::to_string(std::max<std::int64_t>(1, ttl.count()))},
                             &why);
                Attempt a;
                if (!r || (*r)->type != REDIS_REPLY_INTEGER) {
                    a.error = r ? "redis: unexpected reply to the lock script" : why;
                } else {
                    if ((*r)->integer > 0) {
                        a.result = Attempt::Result::kAcquired;
                        a.fence = (*r)->integer;
                        a.token = token;
                    } else {
                        a.result = Attempt::Result::kBusy;
                    }
                }
                done(std::move(a));
            },
            [done](const std::string& why) {
                Attempt a;
                a.error = why;
                done(std::move(a));
            });
    }

    void Release(const std::string& name, const std::string& token,
                 std::function<void(bool)> done) override {
        Submit(
            [this, name, token, done](Conn& c) {
                std::string why;
                auto r = Run(c, {"EVAL", kRelease, "1", LockKey(name), token}, &why);
                if (done) done(r && (*r)->type == REDIS_REPLY_INTEGER && (*r)->integer == 1);
            },
            [done](const std::string&) {
                if (done) done(false);
            });
    }

    void RaiseFence(const std::string& name, std::int64_t highest,
                    std::function<void(bool)> done) override {
        Submit(
            [this, name, highest, done](Conn& c) {
                std::string why;
                auto r =
                    Run(c, {"EVAL", kRaise, "1", FenceKey(name), std::to_string(highest)}, &why);
                if (done) done(r.has_value());
            },
            [done](const std::string&) {
                if (done) done(false);
            });
    }

    bool Healthy() const override { return up_.load(std::memory_order_relaxed); }

    void Shutdown() override {
        std::call_once(stopped_, [this] {
            {
                std::lock_guard lock(mu_);
                stopping_ = true;
            }
            cv_.notify_all();
            for (auto& t : threads_)
                if (t.joinable()) t.join();
            conns_.clear();
        });
    }

  private:
    using Clock = std::chrono::steady_clock;
    struct Item {
        std::function<void(Conn&)> run;
        std::function<void(const std::string& why)> refuse;
        Clock::time_point queued;
    };

    // One hash tag for both keys of a name: on a Redis Cluster they live in one slot, as a
    // script that touches both requires.
    std::string LockKey(const std::string& name) const {
        return o_.key_prefix + "{" + name + "}:lock";
    }
    std::string FenceKey(const std::string& name) const {
        return o_.key_prefix + "{" + name + "}:fence";
    }
    /// Runs one command and keeps the health in step: an answer means up; no answer means
    /// down, and calls fail at once for kFailFast instead of each waiting out the timeouts
    /// again behind one another (the first call after it probes Redis).
    std::optional<Reply> Run(Conn& c, const std::vector<std::string>& argv, std::string* why) {
        auto r = c.Command(argv, why);
        up_.store(r.has_value(), std::memory_order_relaxed);
        if (!r) {
            std::lock_guard lock(mu_);
            last_error_ = *why;
            fail_until_ = Clock::now() + kFailFast;
        }
        return r;
    }

    void Submit(std::function<void(Conn&)> run, std::function<void(const std::string&)> refuse) {
        std::string why = "the lock service is shut down";
        {
            std::lock_guard lock(mu_);
            if (!stopping_ && Clock::now() >= fail_until_) {
                queue_.push_back({std::move(run), std::move(refuse), Clock::now()});
                cv_.notify_one();
                return;
            }
            if (!stopping_)
                why =
                    last_error_ + " (not retried for " + std::to_string(kFailFast.count()) + " ms)";
        }
        refuse(why);
    }

    void Loop(Conn& conn) {
        for (;;) {
            Item item;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (stopping_) break;
                item = std::move(queue_.front());
                queue_.pop_front();
            }
            // A call that waited longer than a command may take (the threads were stuck on a
            // silent Redis) is answered now rather than after yet another wait.
            if (Clock::now() - item.queued > o_.command_timeout) {
                item.refuse("the lock service did not take the call within " +
                            std::to_string(o_.command_timeout.count()) + " ms");
                continue;
            }
            item.run(conn);
        }
        // Stopping: whatever is still queued is refused, not run against a closing pool.
        for (;;) {
            Item item;
            {
                std::lock_guard lock(mu_);
                if (queue_.empty()) return;
                item = std::move(queue_.front());
                queue_.pop_front();
            }
            item.refuse("the lock service is shut down");
        }
    }

    Endpoint ep_;
    RedisOptions o_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::once_flag stopped_;
    std::atomic<bool> up_{true};
    static constexpr std::chrono::milliseconds kFailFast{250};
    Clock::time_point fail_until_{};  // guarded by mu_
    std::string last_error_;          // guarded by mu_
    util::RandomSource random_ = util::SystemRandom();
};

}  // namespace

std::unique_ptr<LockService> OpenRedisLock(const std::string& url, RedisOptions options) {
    return std::make_unique<RedisLock>(url, std::move(options));
}

}  // namespace rollsafe::lock
