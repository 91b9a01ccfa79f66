#include "serve/resources.hpp"

#include "serve/operations.hpp"

#include <boost/json.hpp>

namespace rollsafe::serve {

using http::ApiError;
using http::Request;
using http::Response;

namespace {

std::string Quote(std::string_view s) { return boost::json::serialize(boost::json::string(s)); }

/// Runs a read job and waits for it; a store failure becomes 503 + Retry-After. `job` is a
/// reference on purpose: see AwaitCallback on by-value coroutine parameters.
boost::asio::awaitable<void> ReadOrThrow(OperationEnv& env, const store::Job& job) {
    const store::Status st = co_await http::AwaitCallback<store::Status>(
        [&](std::function<void(store::Status)> cb) { env.store.Read(job, std::move(cb)); });
    if (!st.ok())
        throw ApiError(503, "store unavailable: " + st.message,
                       {{"Retry-After", std::to_string(env.retry_after_seconds)}});
}

}  // namespace

CreateResource ParseCreateResource(const Request& req, std::int64_t max_work_ms) {
    const auto ct = req.Header("Content-Type");
    if (!ct || !IsJsonMediaType(*ct))
        throw ApiError(415, "Content-Type must be application/json, not '" +
                                std::string(ct.value_or("")) + "'");
    const Plan p = ParsePlan("/resources", req.body, max_work_ms);
    return {p.data_json, p.work_ms};
}

std::string RenderResource(const store::Resource& r) {
    // data_json was serialized by us from a parsed value, so it is valid JSON as it stands.
    return "{\"id\":" + Quote(r.id) + ",\"data\":" + r.data_json +
           ",\"created_at\":" + Quote(r.created_at) + "}";
}

void AddResourceRoutes(http::Router& router, OperationEnv& env) {
    router.Add("POST", "/resources",
               [&env](Request& req, http::RequestContext& ctx) -> boost::asio::awaitable<Response> {
                   co_return co_await HandleIdempotentPost(env, req, ctx);
               });
    router.Add("GET", "/resources/{id}",
               [&env](Request& req, http::RequestContext&) -> boost::asio::awaitable<Response> {
                   const std::string id(req.Param("id"));
                   std::optional<store::Resource> found;
                   co_await ReadOrThrow(env, [&](store::Tx& tx) {
                       found = tx.GetResource(id);
                       return store::Status::Ok();
                   });
                   if (!found) throw ApiError(404, "no resource with id '" + id + "'");
                   co_return Response::Json(200, RenderResource(*found));
               });
}

void AddAccountRoutes(http::Router& router, OperationEnv& env) {
    router.Add("POST", "/accounts/{account}/entries",
               [&env](Request& req, http::RequestContext& ctx) -> boost::asio::awaitable<Response> {
                   co_return co_await HandleIdempotentPost(env, req, ctx);
               });
    router.Add("GET", "/accounts/{account}",
               [&env](Request& req, http::RequestContext&) -> boost::asio::awaitable<Response> {
                   const std::string account(req.Param("account"));
                   std::optional<std::pair<std::int64_t, std::vector<store::LedgerEntry>>> found;
                   co_await ReadOrThrow(env, [&](store::Tx& tx) {
                       found = tx.GetAccount(account);
                       return store::Status::Ok();
                   });
                   if (!found) throw ApiError(404, "no entries for account '" + account + "'");
                   boost::json::object o;
                   o["account"] = account;
                   o["balance"] = found->first;
                   boost::json::array entries;
                   for (const auto& e : found->second) {
                       boost::json::object j;
                       j["entry_id"] = e.entry_id;
                       j["seq"] = e.seq;
                       j["amount"] = e.amount;
                       j["balance"] = e.balance;
                       j["memo"] = e.memo;
                       j["created_at"] = e.created_at;
                       entries.push_back(std::move(j));
                   }
                   o["entries"] = std::move(entries);
                   co_return Response::Json(200, boost::json::serialize(o));
               });
}

}  // namespace rollsafe::serve
