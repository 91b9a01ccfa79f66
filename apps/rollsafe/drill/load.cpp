#include "drill/load.hpp"

#include <boost/json.hpp>
#include <random>

#include "rollsafe/client/client.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::drill {
namespace {

/// Thrown out of the client's sleep to abandon a request on Cancel().
struct Cancelled {};

std::string IdFromBody(const std::string& body, LoadRecord::Kind kind) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(body, ec);
    if (ec || !v.is_object()) return {};
    const auto* id =
        v.as_object().if_contains(kind == LoadRecord::Kind::kResource ? "id" : "entry_id");
    return id != nullptr && id->is_string() ? std::string(id->as_string()) : std::string{};
}

std::string FailureCause(const client::PostResult& r) {
    switch (r.reason) {
        case client::StopReason::kSucceeded:
            return {};
        case client::StopReason::kFinalResponse:
            return "status " + std::to_string(r.response ? r.response->status : 0);
        case client::StopReason::kNotRetryable:
            return "protocol error";
        case client::StopReason::kRetriesExhausted:
        case client::StopReason::kDeadline: {
            // Name what the last attempt saw: that is what the user needs to know.
            std::string last = "no attempt";
            if (!r.attempts.empty()) {
                const auto& a = r.attempts.back();
                last = a.error ? std::string(client::ToString(*a.error))
                               : "status " + std::to_string(a.status);
            }
            return last + (r.reason == client::StopReason::kDeadline ? " (deadline)"
                           : r.attempts.size() > 1                   ? " (retries exhausted)"
                                                                     : "");
        }
    }
    return "unknown";
}

}  // namespace

Load::Load(LoadOptions options) : options_(std::move(options)) {}

Load::~Load() {
    Cancel();
    for (auto& w : workers_)
        if (w.joinable()) w.join();
}

void Load::Start() {
    running_ = options_.concurrency;
    for (int i = 0; i < options_.concurrency; ++i) workers_.emplace_back([this, i] { Worker(i); });
}

void Load::StopIssuing() { stop_issuing_ = true; }

void Load::Cancel() {
    stop_issuing_ = true;
    {
        std::lock_guard lock(mu_);
        cancelled_ = true;
    }
    cv_.notify_all();
}

bool Load::Join(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running_.load() > 0) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (auto& w : workers_)
        if (w.joinable()) w.join();
    return true;
}

std::vector<LoadRecord> Load::Records() {
    std::lock_guard lock(mu_);
    return records_;
}

void Load::Worker(int index) {
    std::mt19937_64 rng(options_.seed * 1'000'003 + static_cast<std::uint64_t>(index));
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const util::RandomSource random = util::SystemRandom();
    client::Environment env;
    env.sleep = [this](std::chrono::milliseconds d) {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, d, [this] { return cancelled_.load(); })) throw Cancelled{};
    };
    while (!stop_issuing_.load()) {
        const std::int64_t n = next_.fetch_add(1);
        if (n >= options_.max_requests) break;
        LoadRecord rec;
        rec.key = util::NewUuid(random);
        boost::json::object body;
        std::string path;
        if (unit(rng) < options_.ledger_share) {
            rec.kind = LoadRecord::Kind::kEntry;
            rec.account = "drill-" + options_.run_id + "-" +
                          std::to_string(rng() % static_cast<std::uint64_t>(options_.accounts));
            // Non-zero, both signs, so a lost or doubled entry always moves the balance.
            std::int64_t amount = static_cast<std::int64_t>(rng() % 1000) + 1;
            if (rng() % 4 == 0) amount = -amount;
            rec.amount = amount;
            body["amount"] = amount;
            body["memo"] = rec.key;
            path = "/accounts/" + rec.account + "/entries";
        } else {
            rec.kind = LoadRecord::Kind::kResource;
            const std::int64_t span = options_.work_ms_max - options_.work_ms_min;
            rec.work_ms = options_.work_ms_min +
                          (span > 0 ? static_cast<std::int64_t>(rng() % (span + 1)) : 0);
            body["data"] = {{"drill", options_.run_id}, {"n", n}};
            body["work_ms"] = rec.work_ms;
            path = "/resources";
        }
        rec.body = boost::json::serialize(body);

        client::PostRequest req;
        req.url = options_.base_url + path;
        req.body = rec.body;
        req.idempotency_key = rec.key;
        req.retry = options_.retry;
        req.attempt_timeout = options_.attempt_timeout;
        bool retried_counted = false;
        int attempts_seen = 0;
        env.on_attempt = [this, &retried_counted, &attempts_seen](const client::AttemptRecord& a) {
            ++attempts_seen;
            if (a.decision.retry && !retried_counted) {
                retried_counted = true;
                counters_.retried.fetch_add(1);
            }
        };
        counters_.started.fetch_add(1);
        counters_.in_flight.fetch_add(1);
        rec.start_s = options_.now_s();
        try {
            const client::PostResult r = client::Post(req, env);
            rec.attempts = static_cast<int>(r.attempts.size());
            rec.status = r.response ? r.response->status : 0;
            rec.acknowledged = r.Succeeded();
            if (rec.acknowledged)
                rec.id = IdFromBody(r.response->body, rec.kind);
            else
                rec.failure_cause = FailureCause(r);
        } catch (const Cancelled&) {
            rec.failure_cause = "cancelled";
            rec.attempts = attempts_seen;
        } catch (const std::exception& e) {
            rec.failure_cause = std::string("client error: ") + e.what();
        }
        rec.end_s = options_.now_s();
        counters_.in_flight.fetch_sub(1);
        (rec.acknowledged ? counters_.acknowledged : counters_.failed).fetch_add(1);
        {
            std::lock_guard lock(mu_);
            records_.push_back(std::move(rec));
        }
    }
    running_.fetch_sub(1);
}

}  // namespace rollsafe::drill
