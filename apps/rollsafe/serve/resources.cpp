#include "serve/resources.hpp"

#include <boost/json.hpp>

namespace rollsafe::serve {

using http::ApiError;
using http::Request;
using http::Response;

namespace {

bool IsJsonMediaType(std::string_view ct) {
    const auto semi = ct.find(';');
    std::string_view type = ct.substr(0, semi);
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower == "application/json" ||
           (lower.starts_with("application/") && lower.ends_with("+json"));
}

std::string Quote(std::string_view s) { return boost::json::serialize(boost::json::string(s)); }

}  // namespace

CreateResource ParseCreateResource(const Request& req, std::int64_t max_work_ms) {
    const auto ct = req.Header("Content-Type");
    if (!ct || !IsJsonMediaType(*ct))
        throw ApiError(415, "Content-Type must be application/json, not '" +
                                std::string(ct.value_or("")) + "'");
    boost::json::parse_options popt;
    popt.max_depth = kMaxJsonDepth;
    boost::json::stream_parser p({}, popt);
    boost::system::error_code ec;
    const std::size_t used = p.write(req.body.data(), req.body.size(), ec);
    if (!ec) p.finish(ec);
    if (ec == boost::json::error::too_deep)
        throw ApiError(
            400, "request body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    if (ec)
        throw ApiError(400, "request body is not valid JSON: " + ec.message() + " (near byte " +
                                std::to_string(used) + ")");
    const boost::json::value v = p.release();
    if (!v.is_object()) throw ApiError(400, "request body must be a JSON object");
    const auto& o = v.get_object();
    for (const auto& kv : o)
        if (kv.key() != "data" && kv.key() != "work_ms")
            throw ApiError(400, "unknown field '" + std::string(kv.key()) +
                                    "'; expected \"data\" and optionally \"work_ms\"");
    const auto* data = o.if_contains("data");
    if (!data) throw ApiError(400, "field \"data\" is required");
    CreateResource out;
    out.data_json = boost::json::serialize(*data);
    if (const auto* w = o.if_contains("work_ms")) {
        std::int64_t ms = -1;
        if (w->is_int64())
            ms = w->as_int64();
        else if (w->is_uint64() && w->as_uint64() <= static_cast<std::uint64_t>(max_work_ms))
            ms = static_cast<std::int64_t>(w->as_uint64());
        else if (!w->is_uint64())
            throw ApiError(400, "\"work_ms\" must be an integer number of milliseconds");
        if (ms < 0 || ms > max_work_ms)
            throw ApiError(400, "\"work_ms\" must be between 0 and " + std::to_string(max_work_ms));
        out.work_ms = ms;
    }
    return out;
}

std::string RenderResource(const store::Resource& r) {
    // data_json was serialized by us from a parsed value, so it is valid JSON as it stands.
    return "{\"id\":" + Quote(r.id) + ",\"data\":" + r.data_json +
           ",\"created_at\":" + Quote(r.created_at) + "}";
}

void AddResourceRoutes(http::Router& router, store::Store& store, const util::Clock& clock,
                       util::RandomSource random, ResourceOptions options) {
    router.Add(
        "POST", "/resources",
        [&store, &clock, random, options](
            Request& req, http::RequestContext& ctx) -> boost::asio::awaitable<Response> {
            const CreateResource in = ParseCreateResource(req, options.max_work_ms);
            if (in.work_ms > 0 && !co_await ctx.Sleep(std::chrono::milliseconds(in.work_ms)))
                co_return Response::Problem(503, "cancelled before anything was stored");
            store::Resource r;
            const auto now = clock.WallNow();
            r.id = util::NewUuidV7(
                random,
                static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch())
                        .count()));
            r.data_json = in.data_json;
            r.created_at = util::FormatRfc3339(now);
            r.idempotency_key = std::string(req.Header("Idempotency-Key").value_or(""));
            r.owner = ctx.ReplicaName();
            const store::Status st = co_await http::AwaitCallback<store::Status>(
                [&](std::function<void(store::Status)> cb) {
                    store.InsertResource(r, std::move(cb));
                });
            if (!st.ok()) {
                if (st.kind == store::ErrorKind::kTransient)
                    throw ApiError(503, "store unavailable: " + st.message,
                                   {{"Retry-After", std::to_string(options.retry_after_seconds)}});
                throw ApiError(500, "store error: " + st.message);
            }
            Response res = Response::Json(201, RenderResource(r));
            res.With("Location", "/resources/" + r.id);
            co_return res;
        });
    router.Add(
        "GET", "/resources/{id}",
        [&store, options](Request& req, http::RequestContext&) -> boost::asio::awaitable<Response> {
            using Found = std::pair<store::Status, std::optional<store::Resource>>;
            const std::string id(req.Param("id"));
            Found f = co_await http::AwaitCallback<Found>([&](std::function<void(Found)> cb) {
                store.GetResource(
                    id, [cb = std::move(cb)](store::Status s, std::optional<store::Resource> r) {
                        cb(Found{std::move(s), std::move(r)});
                    });
            });
            if (!f.first.ok()) {
                if (f.first.kind == store::ErrorKind::kTransient)
                    throw ApiError(503, "store unavailable: " + f.first.message,
                                   {{"Retry-After", std::to_string(options.retry_after_seconds)}});
                throw ApiError(500, "store error: " + f.first.message);
            }
            if (!f.second) throw ApiError(404, "no resource with id '" + id + "'");
            co_return Response::Json(200, RenderResource(*f.second));
        });
}

}  // namespace rollsafe::serve
