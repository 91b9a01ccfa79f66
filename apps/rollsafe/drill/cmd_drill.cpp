#include "drill/cmd_drill.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "cli_duration.hpp"
#include "drill/drill.hpp"
#include "drill/report.hpp"
#include "rollsafe/client/client.hpp"
#include "rollsafe/util/duration.hpp"

namespace rollsafe::drill {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kPrefix = "rollsafe drill: ";

struct Flags {
    int replicas = 3;
    std::string scenario = "all";
    std::string store;
    std::string gateway = "nginx-lua";
    std::string gateway_retry = "on";
    std::string endpoint_lag = "0.5s..3s";
    std::string prestop = "http";
    bool no_prestop = false;
    std::string grace = "30s";
    std::string drain_delay = "5s";
    bool no_drain_delay = false;
    std::string shutdown_timeout = "20s";
    std::string lease = "3s";
    int min_available = 1;
    int concurrency = 32;
    std::int64_t requests = 3000;
    std::string max_duration = "180s";
    std::string work_ms = "0..3000";
    double ledger_share = 0.5;
    bool no_retry = false;
    std::uint64_t seed = 0;
    std::string report;
    std::string html;
    std::string work_dir;
    bool keep = false;
    std::string target;
    std::string rollout_cmd;
    std::string duration;
};

/// "A..B" → (A, B) with A <= B, each parsed by `parse`.
template <typename T, typename Parse>
std::optional<std::pair<T, T>> ParseRange(const std::string& s, Parse parse) {
    const auto dots = s.find("..");
    if (dots == std::string::npos) {
        auto one = parse(s);
        if (!one) return std::nullopt;
        return std::pair<T, T>{*one, *one};
    }
    auto a = parse(s.substr(0, dots));
    auto b = parse(s.substr(dots + 2));
    if (!a || !b || *b < *a) return std::nullopt;
    return std::pair<T, T>{*a, *b};
}

std::optional<std::int64_t> ParseInt(const std::string& s) {
    if (s.empty()) return std::nullopt;
    std::size_t used = 0;
    try {
        const long long v = std::stoll(s, &used);
        if (used != s.size() || v < 0) return std::nullopt;
        return v;
    } catch (...) {
        return std::nullopt;
    }
}

std::string FormatProgress(const Progress& p) {
    char head[160];
    std::snprintf(head, sizeof head,
                  "%5.1fs/%.0fs  %-12s req %lld  ack %lld  retried %lld  failed %lld  "
                  "in-flight %lld",
                  p.elapsed_s, p.max_s, p.phase.c_str(), static_cast<long long>(p.requests),
                  static_cast<long long>(p.acknowledged), static_cast<long long>(p.retried),
                  static_cast<long long>(p.failed), static_cast<long long>(p.in_flight));
    std::string line = head;
    if (!p.replicas.empty()) line += "  | " + p.replicas;
    return line;
}

bool WriteFile(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    return static_cast<bool>(f);
}

int Run(const Flags& f, bool target_mode) {
    DrillOptions o;
    o.replicas = f.replicas;
    o.scenario = f.scenario;
    o.store = f.store;
    o.gateway = f.gateway == "nginx" ? GatewayMode::kNginx : GatewayMode::kNginxLua;
    o.gateway_retry = f.gateway_retry == "on";
    auto lag = ParseRange<milliseconds>(
        f.endpoint_lag, [](const std::string& s) { return util::ParseDuration(s); });
    auto work = ParseRange<std::int64_t>(f.work_ms, ParseInt);
    // Checked here rather than by CLI11 so that the message names the flag and the form.
    if (!lag) {
        std::cerr << kPrefix << "--endpoint-lag '" << f.endpoint_lag
                  << "' is not a duration range MIN..MAX (e.g. 0.5s..3s)\n";
        return 2;
    }
    if (!work || work->second > 600000) {
        std::cerr << kPrefix << "--work-ms '" << f.work_ms
                  << "' is not a range MIN..MAX of milliseconds within 0..600000 (e.g. 0..3000)\n";
        return 2;
    }
    if (f.prestop != "http" && f.prestop != "none" &&
        !(f.prestop.starts_with("sleep:") && util::ParseDuration(f.prestop.substr(6)))) {
        std::cerr << kPrefix << "--prestop '" << f.prestop
                  << "' must be http, sleep:<duration> (e.g. sleep:5s) or none\n";
        return 2;
    }
    if (!target_mode && f.min_available >= f.replicas && f.scenario != "rolling" &&
        f.scenario != "crash") {
        std::cerr << kPrefix << "--min-available " << f.min_available << " with --replicas "
                  << f.replicas << " leaves the drain nothing to evict\n";
        return 2;
    }
    if (target_mode) {
        std::string why;
        if (!client::ParseUrl(f.target, &why)) {
            std::cerr << kPrefix << "--target: " << why << "\n";
            return 2;
        }
        if (f.rollout_cmd.empty() && f.duration.empty()) {
            std::cerr << kPrefix
                      << "--target needs --rollout-cmd CMD (load runs while it does) or "
                         "--duration D\n";
            return 2;
        }
        o.target = f.target;
        while (o.target.ends_with('/')) o.target.pop_back();
        o.rollout_cmd = f.rollout_cmd.empty() ? "true" : f.rollout_cmd;
        if (!f.duration.empty()) o.duration = *util::ParseDuration(f.duration);
    } else {
        std::string why;
        if (!GatewayAvailable(o.gateway, &why)) {
            std::cerr << kPrefix << why
                      << (o.gateway == GatewayMode::kNginxLua
                              ? " (install it with scripts/install-deps.sh, or use --gateway "
                                "nginx)\n"
                              : "\n");
            return 1;
        }
    }
    o.endpoint_lag_min = lag->first;
    o.endpoint_lag_max = lag->second;
    o.prestop = f.no_prestop ? "none" : f.prestop;
    o.grace = *util::ParseDuration(f.grace);
    o.drain_delay = f.no_drain_delay ? milliseconds(0) : *util::ParseDuration(f.drain_delay);
    o.shutdown_timeout = *util::ParseDuration(f.shutdown_timeout);
    o.lease = *util::ParseDuration(f.lease);
    o.min_available = f.min_available;
    o.concurrency = f.concurrency;
    o.requests = f.requests;
    o.max_duration = *util::ParseDuration(f.max_duration);
    o.work_ms_min = work->first;
    o.work_ms_max = work->second;
    o.ledger_share = f.ledger_share;
    o.client_retry = !f.no_retry;
    o.seed = f.seed;

    bool own_work_dir = false;
    if (f.work_dir.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        std::string templ =
            std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/rollsafe-drill.XXXXXX";
        if (::mkdtemp(templ.data()) == nullptr) {
            std::cerr << kPrefix << "cannot create a work directory under " << templ << ": "
                      << std::strerror(errno) << "\n";
            return 1;
        }
        o.work_dir = templ;
        own_work_dir = true;
    } else {
        std::error_code ec;
        std::filesystem::create_directories(f.work_dir, ec);
        if (ec) {
            std::cerr << kPrefix << "cannot create --work-dir " << f.work_dir << ": "
                      << ec.message() << "\n";
            return 1;
        }
        o.work_dir = std::filesystem::absolute(f.work_dir).string();
    }

    // Ctrl-C and SIGTERM are taken by one thread, so that every other thread (clients,
    // children's readers) runs undisturbed and the drill can end what it started.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::atomic<bool> interrupted{false};
    std::atomic<bool> finished{false};
    std::thread signals([&] {
        const timespec tick{0, 100'000'000};
        while (!finished.load()) {
            if (sigtimedwait(&set, nullptr, &tick) > 0) interrupted = true;
        }
    });

    const bool tty = ::isatty(2) != 0;
    auto last_plain = std::chrono::steady_clock::now();
    std::size_t last_len = 0;
    auto progress = [&](const Progress& p) {
        const std::string line = FormatProgress(p);
        if (tty) {
            std::cerr << '\r' << line;
            if (line.size() < last_len) std::cerr << std::string(last_len - line.size(), ' ');
            std::cerr << std::flush;
            last_len = line.size();
        } else if (std::chrono::steady_clock::now() - last_plain >= std::chrono::seconds(5)) {
            last_plain = std::chrono::steady_clock::now();
            std::cerr << "drill: " << line << "\n" << std::flush;
        }
    };

    // A sentence the user should see now, not only in the verdict: on its own line, above
    // the progress line.
    auto notice = [&](const std::string& what) {
        if (tty) {
            std::cerr << '\r' << std::string(last_len, ' ') << '\r';
            last_len = 0;
        }
        std::cerr << kPrefix << what << "\n" << std::flush;
    };

    int code = 1;
    std::optional<Report> report;
    try {
        report = RunDrill(o, interrupted, progress, notice);
    } catch (const std::exception& e) {
        if (tty) std::cerr << "\n";
        std::cerr << kPrefix << e.what() << "\n"
                  << kPrefix << "logs kept in " << o.work_dir << "\n";
        finished = true;
        signals.join();
        return interrupted.load() ? 130 : 1;
    }
    if (tty) std::cerr << "\n";
    finished = true;
    signals.join();

    std::cout << RenderTable(*report);
    bool wrote_all = true;
    if (!f.report.empty()) {
        if (WriteFile(f.report, ToJson(*report))) {
            std::cout << "report: " << std::filesystem::absolute(f.report).string() << "\n";
        } else {
            std::cerr << kPrefix << "cannot write --report " << f.report << "\n";
            wrote_all = false;
        }
    }
    if (!f.html.empty()) {
        if (WriteFile(f.html, RenderHtml(*report))) {
            std::cout << "html: " << std::filesystem::absolute(f.html).string() << "\n";
        } else {
            std::cerr << kPrefix << "cannot write --html " << f.html << "\n";
            wrote_all = false;
        }
    }
    const bool ok = report->verdict.ok() && wrote_all && !interrupted.load();
    code = interrupted.load() ? 130 : ok ? 0 : 1;
    if (own_work_dir && ok && !f.keep) {
        std::error_code ec;
        std::filesystem::remove_all(o.work_dir, ec);
    } else {
        std::cout << "logs: " << o.work_dir << "\n";
    }
    std::cout << std::flush;
    return code;
}

}  // namespace

void AddDrillCommand(CLI::App& app, std::function<int()>* run) {
    auto f = std::make_shared<Flags>();
    auto* cmd = app.add_subcommand(
        "drill",
        "Roll, drain and kill replicas behind a real nginx under POST load, then audit every "
        "write (or, with --target, drive load at a deployment while --rollout-cmd runs)");
    auto* replicas =
        cmd->add_option("--replicas", f->replicas, "Replicas of `rollsafe serve` (local mode)")
            ->check(CLI::Range(1, 16))
            ->capture_default_str();
    auto* scenario = cmd->add_option("--scenario", f->scenario, "rolling | drain | crash | all")
                         ->check(CLI::IsMember({"rolling", "drain", "crash", "all"}))
                         ->capture_default_str();
    auto* store = cmd->add_option("--store", f->store,
                                  "Store URL for the replicas (default: a fresh SQLite file)");
    auto* gateway = cmd->add_option("--gateway", f->gateway,
                                    "nginx (endpoint change = reload) | nginx-lua (Lua balancer, "
                                    "no reload, keep-alive pool survives)")
                        ->check(CLI::IsMember({"nginx", "nginx-lua"}))
                        ->capture_default_str();
    cmd->add_option("--gateway-retry", f->gateway_retry,
                    "on: proxy_next_upstream error timeout http_502 http_503 non_idempotent")
        ->check(CLI::IsMember({"on", "off"}))
        ->capture_default_str();
    cmd->add_option("--endpoint-lag", f->endpoint_lag,
                    "Delay before a terminating replica leaves the upstream, MIN..MAX")
        ->capture_default_str();
    cmd->add_option("--prestop", f->prestop, "http (GET /lifecycle/prestop) | sleep:D | none")
        ->capture_default_str();
    cmd->add_flag("--no-prestop", f->no_prestop, "Same as --prestop none");
    cmd->add_option("--grace", f->grace, "terminationGracePeriodSeconds: then SIGKILL")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--drain-delay", f->drain_delay, "The replicas' --drain-delay")
        ->check(cli::Duration())
        ->capture_default_str();
    cmd->add_flag("--no-drain-delay", f->no_drain_delay, "Same as --drain-delay 0s");
    cmd->add_option("--shutdown-timeout", f->shutdown_timeout, "The replicas' --shutdown-timeout")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--lease", f->lease, "The replicas' journal --lease (crash recovery time)")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--min-available", f->min_available,
                    "PodDisruptionBudget minAvailable for the drain")
        ->check(CLI::Range(0, 16))
        ->capture_default_str();
    cmd->add_option("--concurrency", f->concurrency, "Clients sending at once")
        ->check(CLI::Range(1, 512))
        ->capture_default_str();
    cmd->add_option("--requests", f->requests,
                    "Logical requests to make at least (the load also lasts the whole rollout)")
        ->check(CLI::Range(std::int64_t{1}, std::int64_t{10'000'000}))
        ->capture_default_str();
    cmd->add_option("--max-duration", f->max_duration, "Hard limit on the load")
        ->check(cli::Duration(true))
        ->capture_default_str();
    cmd->add_option("--work-ms", f->work_ms, "work_ms of POST /resources, MIN..MAX")
        ->capture_default_str();
    cmd->add_option("--ledger-share", f->ledger_share,
                    "Share of requests that are ledger entries (the rest: resources)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    cmd->add_flag("--no-retry", f->no_retry, "One attempt per request (see what retries buy)");
    cmd->add_option("--seed", f->seed, "Random seed for the load and the rollout (0: random)");
    cmd->add_option("--report", f->report, "Write the JSON report here");
    cmd->add_option("--html", f->html, "Write the HTML report here");
    cmd->add_option("--work-dir", f->work_dir,
                    "Logs, nginx prefix and database (default: a fresh temporary directory, "
                    "removed after a PASS)");
    cmd->add_flag("--keep", f->keep, "Keep the work directory after a PASS");
    auto* target =
        cmd->add_option("--target", f->target, "Black-box mode: drive load at this URL instead");
    auto* rollout = cmd->add_option("--rollout-cmd", f->rollout_cmd,
                                    "Black-box mode: shell command that performs the rollout");
    auto* duration = cmd->add_option("--duration", f->duration,
                                     "Black-box mode: load time (default: until the command "
                                     "ends and --requests were made)")
                         ->check(cli::Duration(true));
    rollout->needs(target);
    duration->needs(target);
    target->excludes(replicas)->excludes(scenario)->excludes(store)->excludes(gateway);
    cmd->callback([f, target, run] {
        const bool target_mode = target->count() > 0;
        *run = [f, target_mode] { return Run(*f, target_mode); };
    });
}

}  // namespace rollsafe::drill
