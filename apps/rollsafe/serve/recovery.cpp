#include "serve/recovery.hpp"

#include <limits>

#include "rollsafe/util/log.hpp"

namespace rollsafe::serve {

http::BackgroundTask RecoveryLoop(OperationEnv& env, http::Server& server,
                                  RecoveryOptions options) {
    return [&env, &server, options](http::RequestContext& ctx) -> boost::asio::awaitable<void> {
        while (co_await ctx.Sleep(options.interval)) {
            if (options.should_scan && !options.should_scan()) continue;
            std::vector<store::Operation> taken;
            int deleted = 0;
            const std::string owner_prefix = ctx.ReplicaName() + "/";
            const store::Status st = co_await http::AwaitCallback<store::Status>(
                [&](std::function<void(store::Status)> cb) {
                    env.store.Write(
                        [&](store::Tx& tx) {
                            taken.clear();
                            const std::int64_t now = util::UnixMillis(env.clock);
                            for (auto& op : tx.ExpiredOperations(now, options.scan_batch)) {
                                const std::string owner =
                                    owner_prefix + util::NewUuid(env.random).substr(0, 13);
                                if (tx.TakeOver(op.principal, op.key, owner,
                                                now + env.lease.count(), now)) {
                                    op.owner = owner;
                                    op.lease_until_ms = now + env.lease.count();
                                    taken.push_back(std::move(op));
                                }
                            }
                            deleted = tx.DeleteCompletedBefore(now - options.retention.count(),
                                                               options.retention_batch);
                            return store::Status::Ok();
                        },
                        std::move(cb));
                });
            if (!st.ok()) {
                util::LogEvent("recovery_scan_failed", {{"error", st.message}});
                continue;
            }
            if (deleted > 0) util::LogEvent("retention", {{"deleted", deleted}});
            for (auto& op : taken) {
                util::LogEvent("recovery_takeover", {{"key", op.key},
                                                     {"principal", op.principal},
                                                     {"recovery_point", op.recovery_point}});
                server.Spawn(
                    [&env, op](http::RequestContext& task_ctx) -> boost::asio::awaitable<void> {
                        const Plan plan = ParsePlan(op.path, op.request_body,
                                                    std::numeric_limits<std::int64_t>::max());
                        const KeyGuard lock = co_await LockFor(env, plan);
                        const http::Response r = co_await RunOperation(env, op, task_ctx);
                        util::LogEvent("recovery_done", {{"key", op.key}, {"status", r.status}});
                    },
                    /*counted=*/true);
            }
        }
    };
}

}  // namespace rollsafe::serve
