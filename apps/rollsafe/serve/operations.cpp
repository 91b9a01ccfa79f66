#include "serve/operations.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <limits>

#include "rollsafe/http/router.hpp"
#include "rollsafe/journal/journal.hpp"
#include "rollsafe/util/log.hpp"
#include "serve/resources.hpp"

namespace rollsafe::serve {

using http::ApiError;
using http::Request;
using http::Response;
namespace json = boost::json;

namespace {

json::object ParseObject(const std::string& body) {
    json::parse_options popt;
    popt.max_depth = kMaxJsonDepth;
    json::stream_parser p({}, popt);
    boost::system::error_code ec;
    const std::size_t used = p.write(body.data(), body.size(), ec);
    if (!ec) p.finish(ec);
    if (ec == json::error::too_deep)
        throw ApiError(
            400, "request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    if (ec)
        throw ApiError(400, "request body is not valid JSON: " + ec.message() + " (near byte " +
                                std::to_string(used) + ")");
    json::value v = p.release();
    if (!v.is_object()) throw ApiError(400, "request body must be a JSON object");
    return std::move(v.get_object());
}

std::int64_t WorkMs(const json::object& o, std::int64_t max_work_ms) {
    const auto* w = o.if_contains("work_ms");
    if (!w) return 0;
    std::int64_t ms = -1;
    if (w->is_int64())
        ms = w->as_int64();
    else if (w->is_uint64() && w->as_uint64() <= static_cast<std::uint64_t>(max_work_ms))
        ms = static_cast<std::int64_t>(w->as_uint64());
    else if (!w->is_uint64())
        throw ApiError(400, "\"work_ms\" must be an integer number of milliseconds");
    if (ms < 0 || ms > max_work_ms)
        throw ApiError(400, "\"work_ms\" must be between 0 and " + std::to_string(max_work_ms));
    return ms;
}

void RejectUnknown(const json::object& o, std::initializer_list<std::string_view> known) {
    for (const auto& kv : o)
        if (std::find(known.begin(), known.end(), kv.key()) == known.end())
            throw ApiError(400, "unknown field '" + std::string(kv.key()) + "'");
}

/// "/accounts/{account}/entries" → account, validated.
std::string AccountFromPath(const std::string& path) {
    constexpr std::string_view kPrefix = "/accounts/", kSuffix = "/entries";
    if (!path.starts_with(kPrefix) || !path.ends_with(kSuffix) ||
        path.size() <= kPrefix.size() + kSuffix.size())
        throw ApiError(404, "no route for " + path);
    std::string account =
        path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size());
    if (account.size() > 64 || !std::all_of(account.begin(), account.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
        }))
        throw ApiError(400, "account must be 1-64 characters of A-Z a-z 0-9 . _ -");
    return account;
}

Response Stored(const store::Operation& op) {
    Response r;
    r.status = op.response_status;
    r.headers = HeadersFromJson(op.response_headers);
    r.body = op.response_body;
    return r;
}

Response Conflict(std::int64_t retry_after_s, const std::string& why) {
    // 409, never 503: behind nginx with http_503 retries and max_fails, a 503 for "in
    // progress" would eject a healthy replica from the upstream.
    Response r = Response::Problem(409, why);
    r.With("Retry-After", std::to_string(retry_after_s));
    return r;
}

/// Runs one store job and waits for its commit.
/// Not a coroutine (see AwaitCallback): the job is copied into the store when awaited.
auto Commit(store::Store& store, store::Job job) {
    return http::AwaitCallback<store::Status>(
        [&store, job = std::move(job)](std::function<void(store::Status)> cb) mutable {
            store.Write(std::move(job), std::move(cb));
        });
}

// The replica that runs an operation: the claim token is "<replica>/<nonce>".
std::string ReplicaOf(const store::Operation& op) { return op.owner.substr(0, op.owner.find('/')); }

/// The last phase: the operation's effect and the row's completion, in one transaction.
Response Finalize(store::Tx& tx, OperationEnv& env, const Plan& plan, const store::Operation& op,
                  const json::object& state, std::int64_t fence) {
    const std::int64_t now = util::UnixMillis(env.clock);
    auto str = [&](std::string_view k) -> std::string {
        const auto* v = state.if_contains(k);
        return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    std::string id = str("id");
    if (id.empty()) id = util::NewUuidV7(env.random, static_cast<std::uint64_t>(now));
    std::string created_at = str("created_at");
    if (created_at.empty()) created_at = util::FormatRfc3339(env.clock.WallNow());
    Response res;
    if (plan.kind == Plan::Kind::kResource) {
        store::Resource r{id, plan.data_json, created_at, op.key, ReplicaOf(op), op.principal};
        tx.InsertResource(r);
        res = Response::Json(201, RenderResource(r));
        res.With("Location", "/resources/" + id);
    } else {
        store::LedgerEntry e;
        e.entry_id = id;
        e.account = plan.account;
        e.amount = plan.amount;
        e.memo = plan.memo;
        e.idempotency_key = op.key;
        e.principal = op.principal;
        e.created_at = created_at;
        if (!tx.AppendEntry(e, fence)) {
            res = Response::Problem(
                422, "the entry would overflow the balance of account '" + plan.account + "'");
        } else {
            json::object o;
            o["entry_id"] = e.entry_id;
            o["account"] = e.account;
            o["amount"] = e.amount;
            o["seq"] = e.seq;
            o["balance"] = e.balance;
            res = Response::Json(201, json::serialize(o));
        }
    }
    if (!tx.Complete(op.principal, op.key, op.owner, res.status, HeadersToJson(res.headers),
                     res.body, now))
        throw store::Error(store::ErrorKind::kConflict, "claim lost before completion");
    return res;
}

void CountLock(OperationEnv& env, const char* outcome) {
    if (env.metrics) env.metrics->CountLockEvent(outcome);
}

/// Holds an account lock of OperationEnv::account_lock; released when destroyed.
class FenceGuard {
  public:
    FenceGuard() = default;
    FenceGuard(lock::LockService* service, std::string account, lock::Attempt granted,
               util::Clock::Steady write_before)
        : service_(service),
          account_(std::move(account)),
          token_(std::move(granted.token)),
          fence_(granted.fence),
          write_before_(write_before) {}
    FenceGuard(FenceGuard&& o) noexcept { *this = std::move(o); }
    FenceGuard& operator=(FenceGuard&& o) noexcept {
        if (this != &o) {
            Reset();
            service_ = std::exchange(o.service_, nullptr);
            account_ = std::move(o.account_);
            token_ = std::move(o.token_);
            fence_ = std::exchange(o.fence_, 0);
            write_before_ = o.write_before_;
        }
        return *this;
    }
    ~FenceGuard() { Reset(); }

    explicit operator bool() const { return service_ != nullptr; }
    /// The fencing token to write with; 0 when no lock is held.
    std::int64_t fence() const { return service_ ? fence_ : 0; }
    /// True while it is still safe to start a write under the lock.
    bool Fresh(util::Clock::Steady now) const { return service_ && now < write_before_; }
    void Reset() {
        // Fire and forget: a release that does not arrive only makes the next holder wait for
        // the TTL; the compare-and-delete never frees a successor's lock.
        if (service_) service_->Release(account_, token_, {});
        service_ = nullptr;
    }

  private:
    lock::LockService* service_ = nullptr;
    std::string account_, token_;
    std::int64_t fence_ = 0;
    util::Clock::Steady write_before_{};
};

struct LockOutcome {
    FenceGuard guard;
    std::optional<Response> error;  ///< 503 + Retry-After when no lock was taken
};

/// Takes `account`'s lock from env.account_lock, polling while another replica holds it.
boost::asio::awaitable<LockOutcome> TakeAccountLock(OperationEnv& env, const std::string& account,
                                                    http::RequestContext& ctx) {
    LockOutcome out;
    auto unavailable = [&](std::string why) {
        Response r = Response::Problem(503, std::move(why));
        r.With("Retry-After", std::to_string(env.retry_after_seconds));
        return r;
    };
    const auto give_up = env.clock.SteadyNow() + env.lock_ttl + std::chrono::seconds(1);
    // A lock is held for one short transaction: poll often, or every waiter oversleeps it.
    std::chrono::milliseconds backoff{1};
    for (;;) {
        // The lock's lifetime is counted from before the request: it may be granted at once.
        const auto asked = env.clock.SteadyNow();
        lock::Attempt a =
            co_await http::AwaitCallback<lock::Attempt>([&](std::function<void(lock::Attempt)> cb) {
                env.account_lock->TryAcquire(account, env.lock_ttl, std::move(cb));
            });
        if (a.result == lock::Attempt::Result::kAcquired) {
            CountLock(env, "acquired");
            out.guard =
                FenceGuard(env.account_lock, account, std::move(a), asked + env.lock_ttl * 4 / 5);
            if (env.after_commit) env.after_commit("locked");
            co_return out;
        }
        if (a.result == lock::Attempt::Result::kUnavailable) {
            CountLock(env, "unavailable");
            util::LogEvent("lock_unavailable", {{"account", account}, {"error", a.error}});
            out.error = unavailable("the lock service is unavailable (" + a.error +
                                    "); nothing was stored");
            co_return out;
        }
        if (env.clock.SteadyNow() >= give_up) {
            CountLock(env, "busy");
            out.error = unavailable("account '" + account +
                                    "' stayed locked by another replica; nothing was stored");
            co_return out;
        }
        if (!co_await ctx.Sleep(backoff)) {
            out.error = unavailable(
                "cancelled by the server's shutdown while waiting for the account's lock; "
                "nothing was stored");
            co_return out;
        }
        backoff = std::min(backoff * 2, std::chrono::milliseconds(8));
    }
}

/// Locks taken in a row because each was already too old to write under.
constexpr int kFreshTakes = 3;

/// Makes `guard` a lock on `account` young enough to write under: a lock that is too old (a
/// pause, a slow store — even one right after it was taken) is taken again, at most
/// kFreshTakes times; past that the store's fencing check stands guard. Returns the 503 when no
/// lock could be taken.
boost::asio::awaitable<std::optional<Response>> TakeFreshLock(OperationEnv& env,
                                                              const std::string& account,
                                                              http::RequestContext& ctx,
                                                              FenceGuard& guard) {
    for (int take = 0; take < kFreshTakes && !guard.Fresh(env.clock.SteadyNow()); ++take) {
        if (guard) CountLock(env, "expired");
        guard.Reset();
        auto got = co_await TakeAccountLock(env, account, ctx);
        if (got.error) co_return std::move(got.error);
        guard = std::move(got.guard);
    }
    co_return std::nullopt;
}

/// After the store refused `guard`'s token (our lock expired and another holder wrote since;
/// nothing of ours was written): counts and logs it, makes the lock service's next token exceed
/// what the store has seen (a no-op unless the service lost its counter), and drops the lock.
boost::asio::awaitable<void> OnFenced(OperationEnv& env, const std::string& account,
                                      const std::string& key, FenceGuard& guard,
                                      std::int64_t highest) {
    CountLock(env, "fenced");
    util::LogEvent(
        "lock_fenced",
        {{"account", account}, {"key", key}, {"fence", guard.fence()}, {"highest_seen", highest}});
    co_await http::AwaitCallback<bool>([&](std::function<void(bool)> cb) {
        env.account_lock->RaiseFence(account, highest, std::move(cb));
    });
    guard.Reset();
}

/// Fenced writes retried under a new lock before answering 503.
constexpr int kFencedAttempts = 3;

}  // namespace

void KeyedLock::Acquire(const std::string& key, std::function<void(bool)> granted) {
    {
        std::lock_guard lock(mu_);
        auto [it, inserted] = held_.try_emplace(key);
        if (!inserted) {
            it->second.push_back(std::move(granted));
            return;
        }
    }
    granted(true);
}

void KeyedLock::Release(const std::string& key) {
    std::function<void(bool)> next;
    {
        std::lock_guard lock(mu_);
        auto it = held_.find(key);
        if (it == held_.end()) return;
        if (it->second.empty()) {
            held_.erase(it);
            return;
        }
        next = std::move(it->second.front());
        it->second.pop_front();
    }
    next(true);  // outside the lock: it may post, or (rarely) acquire again
}

boost::asio::awaitable<KeyGuard> LockFor(OperationEnv& env, const Plan& plan) {
    if (plan.kind != Plan::Kind::kEntry) co_return KeyGuard{};
    co_await http::AwaitCallback<bool>([&](std::function<void(bool)> cb) {
        env.account_locks->Acquire(plan.account, std::move(cb));
    });
    co_return KeyGuard(env.account_locks.get(), plan.account);
}

bool IsJsonMediaType(std::string_view ct) {
    std::string_view type = ct.substr(0, ct.find(';'));
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower == "application/json" ||
           (lower.starts_with("application/") && lower.ends_with("+json"));
}

std::string HeadersToJson(const http::Headers& h) {
    json::array a;
    for (const auto& [k, v] : h) a.push_back(json::array{json::string(k), json::string(v)});
    return json::serialize(a);
}

http::Headers HeadersFromJson(const std::string& text) {
    http::Headers out;
    boost::system::error_code ec;
    const json::value v = json::parse(text, ec);
    if (ec || !v.is_array()) return out;
    for (const auto& pair : v.get_array()) {
        const auto* a = pair.if_array();
        if (!a || a->size() != 2 || !(*a)[0].is_string() || !(*a)[1].is_string()) continue;
        out.emplace_back(std::string((*a)[0].get_string()), std::string((*a)[1].get_string()));
    }
    return out;
}

Plan ParsePlan(const std::string& path, const std::string& body, std::int64_t max_work_ms) {
    const json::object o = ParseObject(body);
    Plan p;
    if (path == "/resources") {
        RejectUnknown(o, {"data", "work_ms"});
        const auto* data = o.if_contains("data");
        if (!data) throw ApiError(400, "field \"data\" is required");
        p.kind = Plan::Kind::kResource;
        p.data_json = json::serialize(*data);
    } else {
        p.kind = Plan::Kind::kEntry;
        p.account = AccountFromPath(path);
        RejectUnknown(o, {"amount", "memo", "work_ms"});
        const auto* amount = o.if_contains("amount");
        if (!amount || !amount->is_int64() || amount->as_int64() == 0)
            throw ApiError(400, "\"amount\" must be a non-zero integer within int64");
        p.amount = amount->as_int64();
        if (const auto* memo = o.if_contains("memo")) {
            if (!memo->is_string()) throw ApiError(400, "\"memo\" must be a string");
            if (memo->as_string().size() > 256)
                throw ApiError(400, "\"memo\" must be at most 256 bytes");
            p.memo = std::string(memo->as_string());
        }
    }
    p.work_ms = WorkMs(o, max_work_ms);
    return p;
}

boost::asio::awaitable<Response> RunOperation(OperationEnv& env, const store::Operation& claimed,
                                              http::RequestContext& ctx) {
    store::Operation op = claimed;
    const Plan plan = ParsePlan(op.path, op.request_body, std::numeric_limits<std::int64_t>::max());
    json::object state;
    if (!op.recovery_state.empty()) {
        boost::system::error_code ec;
        auto v = json::parse(op.recovery_state, ec);
        if (!ec && v.is_object()) state = std::move(v.get_object());
    }
    auto hook = [&](const char* point) {
        if (env.after_commit) env.after_commit(point);
    };
    auto lease_until = [&] { return util::UnixMillis(env.clock) + env.lease.count(); };
    auto release = [&]() -> boost::asio::awaitable<void> {
        co_await Commit(env.store, [&](store::Tx& tx) {
            tx.Release(op.principal, op.key, op.owner, util::UnixMillis(env.clock));
            return store::Status::Ok();
        });
    };
    auto failed = [&](const store::Status& st) {
        // The error kind carries the retry decision: only a transient or in-doubt failure
        // invites a retry.
        if (st.kind == store::ErrorKind::kPermanent)
            return Response::Problem(500, "store error: " + st.message);
        Response r = Response::Problem(503, "store unavailable: " + st.message);
        r.With("Retry-After", std::to_string(env.retry_after_seconds));
        return r;
    };
    auto cancelled = [&]() -> boost::asio::awaitable<Response> {
        co_await release();
        Response r = Response::Problem(503,
                                       "cancelled by the server's shutdown; the operation "
                                       "was released and a retry will complete it");
        r.With("Retry-After", std::to_string(env.retry_after_seconds));
        co_return r;
    };
    auto lost = [&] {
        return Conflict(1,
                        "this operation was taken over by another replica; retry to get "
                        "its result");
    };

    // Cancelled while the claim was committing: commit nothing new, hand the row back.
    if (ctx.Cancelled()) co_return co_await cancelled();
    if (op.recovery_point.empty() && plan.work_ms > 0) {
        // reserve: the effect's id is fixed here, so a resumed operation creates the same one.
        state["id"] =
            util::NewUuidV7(env.random, static_cast<std::uint64_t>(util::UnixMillis(env.clock)));
        state["created_at"] = util::FormatRfc3339(env.clock.WallNow());
        bool owned = false;
        const std::string st_json = json::serialize(state);
        auto st = co_await Commit(env.store, [&](store::Tx& tx) {
            owned = tx.SaveProgress(op.principal, op.key, op.owner, "reserved", st_json,
                                    lease_until(), util::UnixMillis(env.clock));
            return store::Status::Ok();
        });
        if (!st.ok()) co_return failed(st);
        if (!owned) co_return lost();
        op.recovery_point = "reserved";
        op.recovery_state = st_json;
        hook("reserved");
    }
    if (op.recovery_point == "reserved") {
        // work: renew the lease as we go; a cancelled request hands the operation back at once.
        const auto slice = std::max<std::int64_t>(50, env.lease.count() / 3);
        std::int64_t left = plan.work_ms;
        while (left > 0) {
            const auto step = std::min(left, slice);
            if (!co_await ctx.Sleep(std::chrono::milliseconds(step)))
                co_return co_await cancelled();
            left -= step;
            bool owned = false;
            auto st = co_await Commit(env.store, [&](store::Tx& tx) {
                owned = tx.Renew(op.principal, op.key, op.owner, lease_until());
                return store::Status::Ok();
            });
            if (!st.ok()) co_return failed(st);
            if (!owned) co_return lost();
        }
        bool owned = false;
        auto st = co_await Commit(env.store, [&](store::Tx& tx) {
            owned = tx.SaveProgress(op.principal, op.key, op.owner, "worked", op.recovery_state,
                                    lease_until(), util::UnixMillis(env.clock));
            return store::Status::Ok();
        });
        if (!st.ok()) co_return failed(st);
        if (!owned) co_return lost();
        op.recovery_point = "worked";
        hook("worked");
    }
    // finalize
    if (ctx.Cancelled()) co_return co_await cancelled();
    FenceGuard guard;
    for (int attempt = 1;; ++attempt) {
        if (plan.kind == Plan::Kind::kEntry && env.account_lock) {
            if (auto error = co_await TakeFreshLock(env, plan.account, ctx, guard)) {
                // Hand the operation back at once: a retry elsewhere need not wait for the lease.
                co_await release();
                co_return *error;
            }
        }
        if (guard) hook("writing");
        Response res;
        bool owned = true;
        std::int64_t highest = 0;
        auto st = co_await Commit(env.store, [&](store::Tx& tx) {
            owned = true;  // a job may run more than once
            highest = 0;
            try {
                res = Finalize(tx, env, plan, op, state, guard.fence());
            } catch (const store::FencedError& f) {
                highest = f.highest;
                throw;
            } catch (const store::Error& e) {
                if (e.kind != store::ErrorKind::kConflict) throw;
                owned = false;
                return store::Status{store::ErrorKind::kConflict, e.what()};
            }
            return store::Status::Ok();
        });
        if (st.kind == store::ErrorKind::kFenced) {
            co_await OnFenced(env, plan.account, op.key, guard, highest);
            if (attempt < kFencedAttempts) continue;
            co_await release();  // a retry elsewhere need not wait for our lease
        }
        if (!owned) co_return lost();
        if (!st.ok()) co_return failed(st);
        hook("completed");
        co_return res;
    }
}

boost::asio::awaitable<Response> HandleIdempotentPost(OperationEnv& env, Request& req,
                                                      http::RequestContext& ctx) {
    const auto ct = req.Header("Content-Type");
    if (!ct || !IsJsonMediaType(*ct))
        throw ApiError(415, "Content-Type must be application/json, not '" +
                                std::string(ct.value_or("")) + "'");
    const auto header = req.Header("Idempotency-Key");
    if (!header)
        throw ApiError(400,
                       "the Idempotency-Key header is required on POST (any unique string "
                       "of 1-255 visible ASCII characters, e.g. a UUID)");
    std::string why;
    const auto key = journal::ParseIdempotencyKey(*header, &why);
    if (!key) throw ApiError(400, why);
    const Plan plan = ParsePlan(req.path, req.body, env.max_work_ms);

    // Entries of one account apply one at a time in arrival order: a new entry waits for the
    // account's lock, held until its response is ready. A key the journal already knows (a
    // replay, a conflict, a takeover) is decided without waiting behind other entries.
    KeyGuard account_lock;
    FenceGuard fence_guard;
    bool wants_lock = false;
    if (plan.kind == Plan::Kind::kEntry) {
        const std::string principal = journal::PrincipalFor(req.Header("Authorization"));
        bool known = false;
        const store::Status seen =
            co_await http::AwaitCallback<store::Status>([&](std::function<void(store::Status)> cb) {
                env.store.Read(
                    [&](store::Tx& tx) {
                        known = tx.GetOperation(principal, *key).has_value();
                        return store::Status::Ok();
                    },
                    std::move(cb));
            });
        if (!seen.ok()) {
            if (seen.kind == store::ErrorKind::kPermanent)
                throw ApiError(500, "store error: " + seen.message);
            throw ApiError(503, "store unavailable: " + seen.message,
                           {{"Retry-After", std::to_string(env.retry_after_seconds)}});
        }
        if (!known) account_lock = co_await LockFor(env, plan);
        // The wait cannot be interrupted; a request cancelled meanwhile commits nothing.
        if (ctx.Cancelled()) {
            Response r = Response::Problem(503,
                                           "cancelled by the server's shutdown before it "
                                           "started; nothing was stored");
            r.With("Retry-After", std::to_string(env.retry_after_seconds));
            co_return r;
        }
        // An entry with no work is claimed and written in one commit: under the account lock.
        wants_lock = !known && plan.work_ms == 0 && env.account_lock;
        if (wants_lock) {
            if (auto error = co_await TakeFreshLock(env, plan.account, ctx, fence_guard))
                co_return *error;
        }
    }

    // Taken after any wait, so that the lease starts when the work can.
    std::int64_t now = util::UnixMillis(env.clock);
    store::Operation fresh;
    fresh.principal = journal::PrincipalFor(req.Header("Authorization"));
    fresh.key = *key;
    fresh.fingerprint = journal::Fingerprint(req.method, req.path, req.body);
    fresh.state = "in_progress";
    fresh.owner = ctx.ReplicaName() + "/" + util::NewUuid(env.random).substr(0, 13);
    fresh.lease_until_ms = now + env.lease.count();
    fresh.method = req.method;
    fresh.path = req.path;
    // Only an operation that can be left half-done needs its request kept for recovery; one
    // that completes in its claiming commit is identified by its fingerprint alone.
    if (plan.work_ms > 0) fresh.request_body = req.body;
    fresh.created_at_ms = now;
    fresh.updated_at_ms = now;

    journal::ClaimResult claim;
    Response fast;
    bool fast_done = false;
    std::int64_t highest = 0;
    auto claim_job = [&](store::Tx& tx) {
        // A job may run more than once (a PostgreSQL batch re-run): start from nothing.
        claim = {};
        fast = {};
        fast_done = false;
        highest = 0;
        // One point lookup first: a retry (the replay) is decided by it alone, without
        // building or attempting anything.
        if (auto existing = tx.GetOperation(fresh.principal, fresh.key)) {
            claim = journal::Decide(tx, *existing, fresh, now);
            return store::Status::Ok();
        }
        if (plan.work_ms == 0 && plan.kind == Plan::Kind::kResource) {
            // The common case writes two rows and nothing else: the journal row, born
            // completed with its response, and the resource.
            store::Operation done = fresh;
            store::Resource r{util::NewUuidV7(env.random, static_cast<std::uint64_t>(now)),
                              plan.data_json,
                              util::FormatRfc3339(env.clock.WallNow()),
                              fresh.key,
                              ReplicaOf(fresh),
                              fresh.principal};
            Response res = Response::Json(201, RenderResource(r));
            res.With("Location", "/resources/" + r.id);
            done.state = "completed";
            done.lease_until_ms = 0;
            done.response_status = res.status;
            done.response_headers = HeadersToJson(res.headers);
            done.response_body = res.body;
            if (tx.InsertOperation(done)) {
                tx.InsertResource(r);
                claim.decision = journal::Decision::kExecute;
                fast = std::move(res);
                fast_done = true;
                return store::Status::Ok();
            }
        }
        claim = journal::Claim(tx, fresh, now);
        // An operation with nothing to wait for claims, executes and completes in one commit
        // (an entry under --lock redis only with the lock; else RunOperation takes it).
        if (claim.decision == journal::Decision::kExecute && plan.work_ms == 0 &&
            (plan.kind != Plan::Kind::kEntry || !env.account_lock || fence_guard)) {
            try {
                fast = Finalize(tx, env, plan, claim.op, {}, fence_guard.fence());
            } catch (const store::FencedError& f) {
                highest = f.highest;
                throw;
            }
            fast_done = true;
        }
        return store::Status::Ok();
    };
    store::Status st;
    for (int attempt = 1;; ++attempt) {
        if (wants_lock) {
            if (auto error = co_await TakeFreshLock(env, plan.account, ctx, fence_guard))
                co_return *error;
        }
        if (attempt > 1) {
            // A retry may come seconds later (lock waits): its lease and decisions start now.
            now = util::UnixMillis(env.clock);
            fresh.lease_until_ms = now + env.lease.count();
            fresh.created_at_ms = fresh.updated_at_ms = now;
        }
        if (fence_guard && env.after_commit) env.after_commit("writing");
        st = co_await Commit(env.store, claim_job);
        if (st.kind != store::ErrorKind::kFenced) break;
        // The claim and the entry were rolled back together: take a new lock, then retry.
        co_await OnFenced(env, plan.account, fresh.key, fence_guard, highest);
        if (attempt >= kFencedAttempts) break;
    }
    if (!st.ok()) {
        if (st.kind == store::ErrorKind::kTransient || st.kind == store::ErrorKind::kInDoubt ||
            st.kind == store::ErrorKind::kFenced)
            throw ApiError(503, "store unavailable: " + st.message,
                           {{"Retry-After", std::to_string(env.retry_after_seconds)}});
        throw ApiError(500, "store error: " + st.message);
    }
    switch (claim.decision) {
        case journal::Decision::kReplay: {
            Response r = Stored(claim.op);
            r.With("Idempotent-Replayed", "true");
            co_return r;
        }
        case journal::Decision::kMismatch:
            co_return Response::Problem(422,
                                        "this Idempotency-Key was already used for a "
                                        "different request (method, path or body differ)");
        case journal::Decision::kInProgress:
            co_return Conflict(claim.retry_after_s,
                               "a request with this Idempotency-Key is still in progress");
        case journal::Decision::kExecute:
            if (fast_done) {
                if (env.after_commit) env.after_commit("completed");
                co_return fast;
            }
            [[fallthrough]];
        case journal::Decision::kResume:
            // RunOperation takes the account lock itself for its last phase.
            fence_guard.Reset();
            co_return co_await RunOperation(env, claim.op, ctx);
    }
    co_return Response::Problem(500, "unreachable");
}

}  // namespace rollsafe::serve
