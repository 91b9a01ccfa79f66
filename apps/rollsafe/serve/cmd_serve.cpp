#include "serve/cmd_serve.hpp"

#include <unistd.h>
#include <cctype>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <thread>

#include "cli_duration.hpp"
#include "rollsafe/http/server.hpp"
#include "rollsafe/lifecycle/lifecycle.hpp"
#include "rollsafe/lock/lock.hpp"
#include "rollsafe/metrics/registry.hpp"
#include "rollsafe/store/store.hpp"
#include "rollsafe/util/duration.hpp"
#include "rollsafe/util/log.hpp"
#include "serve/recovery.hpp"
#include "serve/resources.hpp"

namespace rollsafe::serve {
namespace {

struct Flags {
    std::string listen = "0.0.0.0:8080";
    std::string admin_listen = "0.0.0.0:9090";
    std::string store = "sqlite:rollsafe.db";
    int threads = 0;
    std::string drain_delay = "5s";
    std::string shutdown_timeout = "25s";
    std::size_t header_limit = 16 * 1024;
    std::size_t body_limit = 1024 * 1024;
    std::string header_timeout = "10s";
    std::string body_timeout = "30s";
    std::string idle_timeout = "75s";
    std::size_t max_connections = 10'000;
    std::int64_t max_work_ms = 600'000;
    std::string sync = "full";
    int pg_pool = 8;
    int pg_batch = 32;
    std::string lock;  // "": postgres with a PostgreSQL store, local with SQLite
    std::string lock_ttl = "5s";
    std::string lease = "10s";
    std::string recovery_interval = "2s";
    std::string retention = "24h";
    std::string name;
    bool no_access_log = false;
};

std::chrono::milliseconds Dur(const std::string& v) { return *util::ParseDuration(v); }

std::string HostName() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "rollsafe";
    return buf;
}

int Run(const Flags& f) {
    http::ServerOptions so;
    so.listen = f.listen;
    so.admin_listen = f.admin_listen;
    so.threads = f.threads;
    so.header_limit = f.header_limit;
    so.body_limit = f.body_limit;
    so.header_timeout = Dur(f.header_timeout);
    so.body_timeout = Dur(f.body_timeout);
    so.idle_timeout = Dur(f.idle_timeout);
    so.max_connections = f.max_connections;
    so.access_log = !f.no_access_log;
    so.replica_name = f.name.empty() ? HostName() : f.name;

    // --lock: which mechanism orders the ledger entries of one account across replicas.
    const bool pg_store = store::IsPostgresUrl(f.store);
    const std::string lock_mode =
        f.lock.empty() ? (pg_store ? "postgres" : "local") : f.lock.substr(0, f.lock.find(':'));
    if (lock_mode == "postgres" && !pg_store) {
        std::cerr << "rollsafe serve: --lock postgres needs a PostgreSQL store (--store "
                     "postgres://...); with SQLite use --lock local or --lock redis://...\n";
        return 2;
    }
    if (lock_mode == "local" && pg_store) {
        std::cerr << "rollsafe serve: --lock local orders entries within one process only; "
                     "replicas sharing PostgreSQL need --lock postgres (the default) or --lock "
                     "redis://HOST:PORT\n";
        return 2;
    }
    std::unique_ptr<lock::LockService> account_lock;
    if (lock_mode == "redis") {
        try {
            account_lock = lock::OpenRedisLock(f.lock);
        } catch (const std::invalid_argument& e) {
            std::cerr << "rollsafe serve: --lock: " << e.what() << "\n";
            return 2;
        } catch (const std::exception& e) {
            std::cerr << "rollsafe serve: cannot reach the lock service: " << e.what() << "\n";
            return 1;
        }
    }

    std::unique_ptr<store::Store> st;
    try {
        store::Durability d;
        d.synchronous = f.sync;
        d.pg_pool = f.pg_pool;
        d.pg_batch = f.pg_batch;
        st = store::OpenStore(f.store, d);
    } catch (const std::exception& e) {
        std::cerr << "rollsafe serve: cannot open store: " << e.what() << "\n";
        return 1;
    }

    lifecycle::Lifecycle lc(util::SystemClock::Instance(),
                            {Dur(f.drain_delay), Dur(f.shutdown_timeout)});
    metrics::Registry registry;
    OperationEnv env{*st, util::SystemClock::Instance(), util::SystemRandom(), {}, 1, 0, {}};
    env.lease = Dur(f.lease);
    env.max_work_ms = f.max_work_ms;
    env.account_lock = account_lock.get();
    env.lock_ttl = Dur(f.lock_ttl);
    env.metrics = &registry;
    // Fault injection for the crash tests: die right after a recovery point is committed.
    // Pause injection for the fencing test: stop (SIGSTOP) the first time a point is reached,
    // as a long GC pause or a frozen VM would, and carry on when continued.
    const char* crash = std::getenv("ROLLSAFE_TEST_CRASH_AFTER");
    const char* pause = std::getenv("ROLLSAFE_TEST_STOP_AFTER");
    if ((crash && *crash) || (pause && *pause)) {
        env.after_commit =
            [crash_at = std::string(crash ? crash : ""), stop_at = std::string(pause ? pause : ""),
             stopped = std::make_shared<std::atomic<bool>>(false)](const std::string& p) {
                if (p == crash_at) {
                    util::LogEvent("test_crash", {{"after", p}});
                    std::raise(SIGKILL);
                }
                if (p == stop_at && !stopped->exchange(true)) {
                    util::LogEvent("test_stop", {{"after", p}});
                    std::raise(SIGSTOP);
                    util::LogEvent("test_continued", {{"after", p}});
                }
            };
    }
    http::Router api;
    AddResourceRoutes(api, env);
    AddAccountRoutes(api, env);
    http::Probes probes;
    probes.dependencies_ready = [s = st.get()] { return s->Healthy(); };

    std::unique_ptr<http::Server> server;
    try {
        server = std::make_unique<http::Server>(so, std::move(api), http::Router{}, lc, registry,
                                                probes);
    } catch (const std::exception& e) {
        std::cerr << "rollsafe serve: " << e.what() << "\n";
        return 1;
    }
    RecoveryOptions recovery;
    recovery.interval = Dur(f.recovery_interval);
    recovery.retention = Dur(f.retention);
    recovery.should_scan = [&lc] { return lc.GetState() == lifecycle::State::kReady; };
    server->Spawn(RecoveryLoop(env, *server, recovery), /*counted=*/false);
    const auto host = [](const std::string& a) { return a.substr(0, a.rfind(':')); };
    util::LogEvent(
        "listening",
        {{"api", host(f.listen) + ":" + std::to_string(server->ApiPort())},
         {"admin", host(f.admin_listen) + ":" + std::to_string(server->AdminPort())},
         {"api_port", server->ApiPort()},
         {"admin_port", server->AdminPort()},
         {"pid", ::getpid()},
         {"replica", so.replica_name},
         {"store", f.store},
         {"lock", lock_mode},
         {"threads",
          so.threads > 0 ? so.threads : static_cast<int>(std::thread::hardware_concurrency())},
         {"drain_delay_ms", Dur(f.drain_delay).count()},
         {"shutdown_timeout_ms", Dur(f.shutdown_timeout).count()}});
    server->Run();
    // Nothing is in flight. The store goes first: its threads finish queued jobs (a recovery
    // scan may be one) while the frames they complete into still exist; then the loops and
    // their frames are destroyed.
    st->Shutdown();
    server.reset();
    if (account_lock) account_lock->Shutdown();
    util::LogEvent("exit", {{"code", 0}});
    return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<int()>* run) {
    auto flags = std::make_shared<Flags>();
    auto* cmd =
        app.add_subcommand("serve", "Run the reference API service with a graceful lifecycle");
    auto dur = cli::Duration();
    cmd->add_option("--listen", flags->listen, "API listener HOST:PORT (port 0: pick a free port)")
        ->capture_default_str();
    cmd->add_option("--admin-listen", flags->admin_listen,
                    "Admin listener HOST:PORT: /livez /readyz /health /metrics /lifecycle/prestop")
        ->capture_default_str();
    cmd->add_option("--store", flags->store,
                    "Store URL: sqlite:PATH or postgres://USER@HOST:PORT/DB (libpq URI)")
        ->capture_default_str();
    cmd->add_option("--pg-pool", flags->pg_pool,
                    "PostgreSQL store: connections (one worker thread each)")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    cmd->add_option("--pg-batch", flags->pg_batch,
                    "PostgreSQL store: most queued writes one worker commits together (each in "
                    "its own savepoint; 1: a transaction per write)")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--lock", flags->lock,
                    "How entries of one account are ordered across replicas: postgres "
                    "(advisory lock; default with PostgreSQL), redis://HOST:PORT (lock with "
                    "fencing tokens the store checks), local (one process; default with SQLite)")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                if (v == "local" || v == "postgres" || v.starts_with("redis://"))
                    return std::string();
                return "--lock must be local, postgres or redis://HOST:PORT, not '" + v + "'";
            },
            "local|postgres|redis://HOST:PORT"));
    cmd->add_option("--lock-ttl", flags->lock_ttl,
                    "--lock redis: expiry of an account lock (a crashed holder's lock frees "
                    "after it)")
        ->check(dur)
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                return util::ParseDuration(v)->count() >= 100 ? std::string()
                                                              : "--lock-ttl must be at least 100ms";
            },
            "DURATION>=100ms"))
        ->capture_default_str();
    cmd->add_option("--threads", flags->threads, "I/O threads (0: one per core)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    cmd->add_option(
           "--drain-delay", flags->drain_delay,
           "After SIGTERM: keep serving (readiness 503) this long before closing listeners")
        ->check(dur)
        ->capture_default_str();
    cmd->add_option(
           "--shutdown-timeout", flags->shutdown_timeout,
           "After listeners close: cancel what still runs after this long (503 + Retry-After)")
        ->check(dur)
        ->capture_default_str();
    cmd->add_option("--header-limit", flags->header_limit,
                    "Max bytes of request line + headers (431)")
        ->check(CLI::Range(std::size_t{256}, std::size_t{1} << 20))
        ->capture_default_str();
    cmd->add_option("--body-limit", flags->body_limit, "Max request body bytes (413)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30))
        ->capture_default_str();
    cmd->add_option("--header-timeout", flags->header_timeout, "First byte to end of headers (408)")
        ->check(dur)
        ->capture_default_str();
    cmd->add_option("--body-timeout", flags->body_timeout, "End of headers to end of body (408)")
        ->check(dur)
        ->capture_default_str();
    cmd->add_option("--idle-timeout", flags->idle_timeout,
                    "Idle keep-alive timeout; keep it above the gateway's (nginx/Kong: 60s)")
        ->check(dur)
        ->capture_default_str();
    cmd->add_option("--max-connections", flags->max_connections,
                    "Open API connections; beyond: 503 + Retry-After")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
        ->capture_default_str();
    cmd->add_option("--max-work-ms", flags->max_work_ms, "Largest accepted work_ms")
        ->check(CLI::Range(std::int64_t{0}, std::int64_t{86'400'000}))
        ->capture_default_str();
    cmd->add_option("--sync", flags->sync,
                    "SQLite durability: full (survives power loss), normal (survives a crash), off")
        ->check(CLI::IsMember({"full", "normal", "off"}))
        ->capture_default_str();
    cmd->add_option("--lease", flags->lease,
                    "Journal lease of a running operation, renewed while it works; a crashed "
                    "replica's operations are recovered after it")
        ->check(dur)
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                return util::ParseDuration(v)->count() >= 300
                           ? std::string()
                           : "--lease must be at least 300ms (it is renewed every third of it)";
            },
            "DURATION>=300ms"))
        ->capture_default_str();
    cmd->add_option("--recovery-interval", flags->recovery_interval,
                    "How often to look for operations whose owner died")
        ->check(dur)
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                return util::ParseDuration(v)->count() >= 50
                           ? std::string()
                           : "--recovery-interval must be at least 50ms";
            },
            "DURATION>=50ms"))
        ->capture_default_str();
    cmd->add_option("--retention", flags->retention,
                    "Completed journal rows are kept this long (replays work within it)")
        ->check(dur)
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                return util::ParseDuration(v)->count() >= 1000
                           ? std::string()
                           : "--retention must be at least 1s; keep it longer than any client "
                             "retries";
            },
            "DURATION>=1000ms"))
        ->capture_default_str();
    cmd->add_option("--name", flags->name,
                    "Replica name in logs and stored rows (default: host name)");
    cmd->add_flag("--no-access-log", flags->no_access_log, "Do not log one line per request");
    // Every flag can also come from the environment (a Kubernetes ConfigMap): --drain-delay is
    // ROLLSAFE_DRAIN_DELAY. The command line wins; a bad value is the same usage error.
    for (CLI::Option* opt : cmd->get_options()) {
        const auto& names = opt->get_lnames();
        if (names.empty() || names.front() == "help") continue;
        std::string env = "ROLLSAFE_";
        for (char c : names.front()) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
        opt->envname(env);
    }
    cmd->callback([flags, run] { *run = [flags] { return Run(*flags); }; });
}

}  // namespace rollsafe::serve
