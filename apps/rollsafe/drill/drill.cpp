#include "drill/drill.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "audit/auditor.hpp"
#include "drill/child.hpp"
#include "drill/load.hpp"
#include "drill/verdict.hpp"
#include "rollsafe/store/store.hpp"
#include "rollsafe/util/duration.hpp"
#include "rollsafe/util/random.hpp"

namespace rollsafe::drill {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

/// Every event of the run, stamped in seconds since the start. Thread-safe.
class Recorder {
  public:
    Recorder() : t0_(Clock::now()) {}
    double Now() const { return Seconds(Clock::now() - t0_); }
    double At(Clock::time_point t) const { return Seconds(t - t0_); }
    void Lifecycle(const std::string& replica, const std::string& state, std::string detail = {}) {
        std::lock_guard lock(mu_);
        lifecycle_.push_back({Now(), replica, state, std::move(detail)});
    }
    void Gateway(const std::string& what, std::string detail) {
        std::lock_guard lock(mu_);
        gateway_.push_back({Now(), what, std::move(detail)});
    }
    void AddPhase(Phase p) {
        std::lock_guard lock(mu_);
        phases_.push_back(std::move(p));
    }
    void SetPhaseNow(std::string what) {
        std::lock_guard lock(mu_);
        now_ = std::move(what);
    }
    std::string PhaseNow() const {
        std::lock_guard lock(mu_);
        return now_;
    }
    void Fill(Report* r) const {
        std::lock_guard lock(mu_);
        r->lifecycle = lifecycle_;
        std::stable_sort(r->lifecycle.begin(), r->lifecycle.end(),
                         [](const auto& a, const auto& b) { return a.t_s < b.t_s; });
        r->gateway = gateway_;
        r->phases = phases_;
    }

  private:
    const Clock::time_point t0_;
    mutable std::mutex mu_;
    std::vector<LifecycleEvent> lifecycle_;
    std::vector<GatewayEvent> gateway_;
    std::vector<Phase> phases_;
    std::string now_ = "starting";
};

/// Thrown out of any wait once the run is interrupted (Ctrl-C) or out of time.
struct Aborted {};

/// One blocking HTTP/1.1 GET on 127.0.0.1 with `Connection: close`; the status, or 0 when
/// there was no complete status line before `timeout`. For probes and the preStop call, which
/// must not depend on the client under test.
int LocalGet(std::uint16_t port, const std::string& path, milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto left_ms = [&] {
        return static_cast<int>(std::max<long long>(
            0, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count()));
    };
    int status = 0;
    do {
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
            errno != EINPROGRESS)
            break;
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, left_ms()) != 1) break;
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) break;
        const std::string req =
            "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
            break;
        std::string got;
        while (got.find("\r\n") == std::string::npos) {
            pollfd r{fd, POLLIN, 0};
            if (::poll(&r, 1, left_ms()) != 1) break;
            char buf[512];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            got.append(buf, static_cast<std::size_t>(n));
        }
        if (got.size() >= 12 && got.starts_with("HTTP/1.")) status = std::atoi(got.c_str() + 9);
    } while (false);
    ::close(fd);
    return status;
}

/// The drill's own read-only view of the replicas' store, with one connection (a PostgreSQL
/// pool of one): the baseline before the load, the recovery wait's polls and the audit.
class StoreReader {
  public:
    /// Throws std::runtime_error "cannot open store: ..." (for PostgreSQL also when the
    /// schema is missing or of another version).
    explicit StoreReader(const std::string& url) {
        store::Durability d;
        d.read_only = true;  // the drill must not migrate or write what it audits
        d.pg_pool = 1;
        try {
            store_ = store::OpenStore(url, d);
        } catch (const std::exception& e) {
            throw std::runtime_error(std::string("cannot open store: ") + e.what());
        }
    }
    ~StoreReader() {
        if (store_) store_->Shutdown();
    }
    StoreReader(const StoreReader&) = delete;
    StoreReader& operator=(const StoreReader&) = delete;

    /// Reads the journal (and, unless `operations_only`, the resources, entries and accounts)
    /// in one read transaction into `*out`. False with a sentence in `*error` when the read
    /// fails or does not finish within `timeout`; after a timeout the store is abandoned (a
    /// read stuck in the database would make Shutdown wait) and every later Read fails.
    bool Read(bool operations_only, milliseconds timeout, audit::Snapshot* out,
              std::string* error) {
        if (!store_) {
            *error = "the store was abandoned after a read that did not finish";
            return false;
        }
        // Shared with the job, so that a read finishing after the timeout writes into memory
        // that is still alive.
        auto snap = std::make_shared<audit::Snapshot>();
        auto done = std::make_shared<std::promise<store::Status>>();
        auto status = done->get_future();
        store_->Read(
            [snap, operations_only](store::Tx& tx) {
                snap->operations = tx.AllOperations();
                if (!operations_only) {
                    snap->resources = tx.AllResources();
                    snap->entries = tx.AllEntries();
                    snap->accounts = tx.AllAccounts();
                }
                return store::Status::Ok();
            },
            [done](store::Status st) { done->set_value(std::move(st)); });
        if (status.wait_for(timeout) != std::future_status::ready) {
            *error = "the store did not answer a read within " +
                     util::FormatDuration(std::chrono::duration_cast<milliseconds>(timeout));
            (void)store_.release();
            return false;
        }
        const store::Status st = status.get();
        if (!st.ok()) {
            *error = "cannot read store: " + st.message;
            return false;
        }
        *out = std::move(*snap);
        return true;
    }

  private:
    std::unique_ptr<store::Store> store_;
};

/// How long the drill waits for one whole-store read (the baseline, the audit).
constexpr auto kStoreReadTimeout = std::chrono::minutes(2);

std::int64_t UnixMs() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// 12 hex digits from the system's randomness.
std::string NewRunId() {
    static const util::RandomSource random = util::SystemRandom();
    char buf[16];
    std::snprintf(buf, sizeof buf, "%012llx",
                  static_cast<unsigned long long>(random() & 0xffffffffffffULL));
    return buf;
}

/// One `rollsafe serve` process and what its log lines said.
struct Replica {
    std::string name;
    std::unique_ptr<Child> child;
    std::atomic<std::uint16_t> api_port{0}, admin_port{0};
    std::atomic<std::int64_t> served{0}, served_draining{0};
    double started_s = 0;
    std::atomic<double> termination_start_s{-1};
    std::atomic<bool> sigkilled{false}, by_scenario{false}, terminated{false};
    mutable std::mutex mu;
    std::condition_variable cv;
    std::string state = "starting";

    /// The child first: its reader thread calls SetState until it is joined.
    ~Replica() { child.reset(); }

    std::string State() const {
        std::lock_guard lock(mu);
        return state;
    }
    void SetState(std::string s) {
        {
            std::lock_guard lock(mu);
            state = std::move(s);
        }
        cv.notify_all();
    }
};

class Drill {
  public:
    Drill(const DrillOptions& o, const std::atomic<bool>& interrupted,
          const std::function<void(const Progress&)>& progress,
          const std::function<void(const std::string&)>& notice)
        : o_(o),
          interrupted_(interrupted),
          progress_(progress),
          notice_(notice),
          rng_(Seed(o.seed)) {}

    ~Drill() { Cleanup(); }

    Report Run();

  private:
    static std::uint64_t Seed(std::uint64_t s) {
        if (s != 0) return s;
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    bool Stopping() const { return interrupted_.load() || abort_.load(); }
    /// Sleeps `d`, or throws Aborted as soon as the run is stopping.
    void Sleep(milliseconds d) const {
        const auto until = Clock::now() + d;
        while (Clock::now() < until) {
            if (Stopping()) throw Aborted{};
            std::this_thread::sleep_for(
                std::min<Clock::duration>(milliseconds(20), until - Clock::now()));
        }
    }
    milliseconds Lag() {
        std::lock_guard lock(rng_mu_);
        const auto lo = o_.endpoint_lag_min.count(), hi = o_.endpoint_lag_max.count();
        return milliseconds(lo + (hi > lo ? static_cast<long long>(rng_() % (hi - lo + 1)) : 0));
    }

    std::shared_ptr<Replica> StartReplica();
    void WaitReady(Replica& r);
    void AddEndpoint(const Replica& r);
    void RemoveEndpoint(const Replica& r, const std::string& detail);
    void PushEndpoints();
    /// Ends `r` as kubelet does (or SIGKILLs it at once with `crash`) on its own thread.
    void BeginTermination(std::shared_ptr<Replica> r, bool crash);
    void Terminate(const std::shared_ptr<Replica>& r, bool crash);
    void JoinTerminations();
    std::vector<std::shared_ptr<Replica>> Live() {
        std::lock_guard lock(mu_);
        return live_;
    }
    void RemoveFromLive(const std::shared_ptr<Replica>& r) {
        std::lock_guard lock(mu_);
        live_.erase(std::remove(live_.begin(), live_.end(), r), live_.end());
    }
    void AddToLive(const std::shared_ptr<Replica>& r) {
        std::lock_guard lock(mu_);
        live_.push_back(r);
    }

    void Rolling();
    void NodeDrain();
    void Crash();
    void RunScenario();
    void RunRolloutCommand();
    void Settle();

    void ProgressTick();
    void Notice(const std::string& what) const {
        if (notice_) notice_(what);
    }
    /// Fills `r->store_before` and before_ids_, and makes sure no account of this run's id is
    /// in the store yet.
    void ReadStoreBefore(Report* r);
    void WaitForRecovery(const std::vector<LoadRecord>& records);
    void StopReplicas();
    void Cleanup();
    void BuildReport(Report* r, const std::vector<LoadRecord>& records);

    const DrillOptions& o_;
    const std::atomic<bool>& interrupted_;
    const std::function<void(const Progress&)>& progress_;
    const std::function<void(const std::string&)>& notice_;
    std::atomic<bool> abort_{false};
    Recorder rec_;
    std::mutex rng_mu_;
    std::mt19937_64 rng_;
    std::string run_id_;
    std::string store_;
    /// StoreProblemIds of the store before the load; unset when it could not be read.
    std::optional<std::set<std::string>> before_ids_;
    std::string binary_;

    std::mutex mu_;  // live_, all_, endpoints_
    std::vector<std::shared_ptr<Replica>> all_;
    std::vector<std::shared_ptr<Replica>> live_;  ///< started by us and not being terminated
    std::vector<std::uint16_t> endpoints_;
    std::mutex gateway_mu_;
    std::unique_ptr<Gateway> gateway_;
    std::mutex term_mu_;
    std::vector<std::thread> terminations_;
    std::unique_ptr<Load> load_;
    std::unique_ptr<Child> rollout_cmd_;
    std::atomic<int> next_replica_{1};
    std::atomic<bool> scenario_done_{false};
    std::string scenario_error_;  ///< written before scenario_done_ is set, read after
    std::optional<int> rollout_cmd_status_;
    Clock::time_point last_progress_{};
};

std::shared_ptr<Replica> Drill::StartReplica() {
    auto r = std::make_shared<Replica>();
    r->name = "replica-" + std::to_string(next_replica_.fetch_add(1));
    std::vector<std::string> argv = {binary_,
                                     "serve",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--admin-listen",
                                     "127.0.0.1:0",
                                     "--store",
                                     store_,
                                     "--threads",
                                     std::to_string(o_.replica_threads),
                                     "--drain-delay",
                                     util::FormatDuration(o_.drain_delay),
                                     "--shutdown-timeout",
                                     util::FormatDuration(o_.shutdown_timeout),
                                     "--lease",
                                     util::FormatDuration(o_.lease),
                                     "--recovery-interval",
                                     "500ms",
                                     "--name",
                                     r->name};
    ChildOptions co;
    co.argv = std::move(argv);
    co.log_path = o_.work_dir + "/" + r->name + ".log";
    Replica* raw = r.get();
    Recorder* rec = &rec_;
    co.on_line = [raw, rec](const std::string& line) {
        boost::system::error_code ec;
        const auto v = boost::json::parse(line, ec);
        if (ec || !v.is_object()) return;
        const auto& o = v.as_object();
        const auto* ev = o.if_contains("event");
        if (ev == nullptr || !ev->is_string()) return;
        const std::string_view event = ev->as_string();
        if (event == "request") {
            raw->served.fetch_add(1);
            if (const auto* d = o.if_contains("draining");
                d != nullptr && d->is_bool() && d->as_bool())
                raw->served_draining.fetch_add(1);
        } else if (event == "listening") {
            auto port = [&](const char* k) -> std::uint16_t {
                const auto* p = o.if_contains(k);
                return p != nullptr && p->is_int64() ? static_cast<std::uint16_t>(p->as_int64())
                                                     : 0;
            };
            raw->api_port = port("api_port");
            raw->admin_port = port("admin_port");
            raw->SetState("listening");
        } else if (event == "lifecycle") {
            const auto* to = o.if_contains("to");
            if (to != nullptr && to->is_string()) {
                const std::string state(to->as_string());
                raw->SetState(state);
                if (state == "draining" || state == "closing") rec->Lifecycle(raw->name, state);
            }
        }
    };
    r->started_s = rec_.Now();
    r->child = std::make_unique<Child>(std::move(co));
    rec_.Lifecycle(r->name, "started", "pid " + std::to_string(r->child->Pid()));
    {
        std::lock_guard lock(mu_);
        all_.push_back(r);
    }
    return r;
}

void Drill::WaitReady(Replica& r) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    for (;;) {
        if (Stopping()) throw Aborted{};
        if (r.child->Exited())
            throw std::runtime_error(r.name + " exited before it was ready (" +
                                     DescribeStatus(r.child->ExitStatus().value_or(-1)) +
                                     "); its log: " + o_.work_dir + "/" + r.name + ".log");
        if (Clock::now() >= deadline)
            throw std::runtime_error(r.name + " was not ready within 20 s; its log: " +
                                     o_.work_dir + "/" + r.name + ".log");
        // The readiness probe, as kubelet runs it: GET /readyz on the admin port.
        if (const auto admin = r.admin_port.load();
            admin != 0 && LocalGet(admin, "/readyz", milliseconds(1000)) == 200)
            break;
        std::this_thread::sleep_for(milliseconds(50));
    }
    rec_.Lifecycle(r.name, "ready");
}

void Drill::PushEndpoints() {
    // The gateway lock is taken before the list is read, so that concurrent changes (a remover
    // thread and the scenario) reach nginx in the order they were made.
    std::lock_guard gateway_lock(gateway_mu_);
    if (!gateway_) return;
    std::vector<std::uint16_t> eps;
    {
        std::lock_guard lock(mu_);
        eps = endpoints_;
    }
    gateway_->SetEndpoints(eps);
    std::string detail;
    for (auto p : eps) detail += (detail.empty() ? "" : ",") + std::to_string(p);
    rec_.Gateway(o_.gateway == GatewayMode::kNginx ? "reload" : "endpoints", detail);
}

void Drill::AddEndpoint(const Replica& r) {
    {
        std::lock_guard lock(mu_);
        endpoints_.push_back(r.api_port.load());
    }
    PushEndpoints();
    rec_.Lifecycle(r.name, "added");
}

void Drill::RemoveEndpoint(const Replica& r, const std::string& detail) {
    {
        std::lock_guard lock(mu_);
        endpoints_.erase(std::remove(endpoints_.begin(), endpoints_.end(), r.api_port.load()),
                         endpoints_.end());
    }
    PushEndpoints();
    rec_.Lifecycle(r.name, "removed", detail);
}

void Drill::BeginTermination(std::shared_ptr<Replica> r, bool crash) {
    RemoveFromLive(r);
    r->by_scenario = true;
    std::lock_guard lock(term_mu_);
    terminations_.emplace_back([this, r = std::move(r), crash] {
        try {
            Terminate(r, crash);
        } catch (const std::exception& e) {
            rec_.Lifecycle(r->name, "error", e.what());
        }
    });
}

void Drill::Terminate(const std::shared_ptr<Replica>& r, bool crash) {
    const auto start = Clock::now();
    r->terminated = true;
    r->termination_start_s = rec_.Now();
    // The endpoint controller notices on its own schedule: the gateway keeps sending to the
    // replica until then, whatever the replica is doing.
    const milliseconds lag = Lag();
    std::thread remover([this, r, lag] {
        const auto until = Clock::now() + lag;
        while (Clock::now() < until && !Stopping()) std::this_thread::sleep_for(milliseconds(20));
        char buf[64];
        std::snprintf(buf, sizeof buf, "endpoint lag %.1f s", Seconds(lag));
        try {
            RemoveEndpoint(*r, buf);
        } catch (const std::exception& e) {
            rec_.Lifecycle(r->name, "error", e.what());
        }
    });
    if (crash) {
        rec_.Lifecycle(r->name, "killed", "SIGKILL without warning");
        r->sigkilled = true;
        r->child->SignalGroup(SIGKILL);
        r->child->WaitExit(std::chrono::seconds(10));
    } else {
        // kubelet cuts a preStop hook at the grace period, then gives SIGTERM a one-off 2 s.
        bool prestop_overran = false;
        if (o_.prestop == "http") {
            rec_.Lifecycle(r->name, "prestop", "GET /lifecycle/prestop");
            const auto wait =
                std::min<milliseconds>(o_.drain_delay + std::chrono::seconds(5), o_.grace);
            prestop_overran = LocalGet(r->admin_port.load(), "/lifecycle/prestop", wait) == 0 &&
                              Clock::now() - start >= o_.grace;
        } else if (o_.prestop.starts_with("sleep:")) {
            const auto d = util::ParseDuration(o_.prestop.substr(6)).value_or(milliseconds(0));
            rec_.Lifecycle(r->name, "prestop", "sleep " + util::FormatDuration(d));
            prestop_overran = d > o_.grace;
            const auto until = Clock::now() + std::min<milliseconds>(d, o_.grace);
            while (Clock::now() < until && !Stopping())
                std::this_thread::sleep_for(milliseconds(20));
        }
        rec_.Lifecycle(r->name, "sigterm");
        r->child->Signal(SIGTERM);
        // The grace period counts from the start of the termination, preStop included.
        const auto left = o_.grace - std::chrono::duration_cast<milliseconds>(Clock::now() - start);
        const milliseconds floor = prestop_overran ? milliseconds(2000) : milliseconds(0);
        if (!r->child->WaitExit(std::max(left, floor))) {
            rec_.Lifecycle(r->name, "killed", "grace period over");
            r->sigkilled = true;
            r->child->SignalGroup(SIGKILL);
            r->child->WaitExit(std::chrono::seconds(10));
        }
    }
    if (auto st = r->child->ExitStatus(); st && !crash)
        rec_.Lifecycle(r->name, "exited", DescribeStatus(*st));
    remover.join();
}

void Drill::JoinTerminations() {
    std::vector<std::thread> ts;
    {
        std::lock_guard lock(term_mu_);
        ts.swap(terminations_);
    }
    for (auto& t : ts) t.join();
}

void Drill::Rolling() {
    for (const auto& old : Live()) {
        auto fresh = StartReplica();
        WaitReady(*fresh);
        AddEndpoint(*fresh);
        AddToLive(fresh);
        // maxUnavailable 0: the old pod goes only once its replacement is available; the next
        // surge pod starts while the old one is still terminating.
        BeginTermination(old, false);
    }
}

void Drill::NodeDrain() {
    // The first ⌈N/2⌉ replicas live on the node that is upgraded.
    auto live = Live();
    std::vector<std::shared_ptr<Replica>> node(live.begin(), live.begin() + (live.size() + 1) / 2);
    while (!node.empty()) {
        // The eviction API refuses what would take the service below min_available.
        const int allowed = static_cast<int>(Live().size()) - o_.min_available;
        if (allowed <= 0)
            throw std::runtime_error("drain: --min-available " + std::to_string(o_.min_available) +
                                     " leaves no replica to evict");
        const std::size_t batch = std::min<std::size_t>(node.size(), allowed);
        std::vector<std::shared_ptr<Replica>> fresh;
        for (std::size_t i = 0; i < batch; ++i) {
            BeginTermination(node[i], false);
            fresh.push_back(StartReplica());  // the ReplicaSet replaces it on another node
        }
        node.erase(node.begin(), node.begin() + static_cast<std::ptrdiff_t>(batch));
        for (auto& f : fresh) {
            WaitReady(*f);
            AddEndpoint(*f);
            AddToLive(f);
        }
    }
}

void Drill::Crash() {
    auto live = Live();
    std::shared_ptr<Replica> victim;
    {
        std::lock_guard lock(rng_mu_);
        victim = live[rng_() % live.size()];
    }
    BeginTermination(victim, true);
    auto fresh = StartReplica();
    WaitReady(*fresh);
    AddEndpoint(*fresh);
    AddToLive(fresh);
}

void Drill::Settle() {
    JoinTerminations();
    Sleep(milliseconds(1500));
}

void Drill::RunScenario() {
    std::vector<std::string> steps;
    if (o_.scenario == "all")
        steps = {"rolling", "drain", "crash"};
    else
        steps = {o_.scenario};
    // The scenario repeats while fewer than `requests` were made: every request of the run is
    // then sent while replicas come and go, not in a quiet tail after one rollout.
    for (int cycle = 1;; ++cycle) {
        const double cycle_start = rec_.Now();
        for (std::size_t i = 0; i < steps.size(); ++i) {
            const auto& s = steps[i];
            rec_.SetPhaseNow(cycle > 1 ? s + " #" + std::to_string(cycle) : s);
            Phase p{s, rec_.Now(), 0};
            if (s == "rolling")
                Rolling();
            else if (s == "drain")
                NodeDrain();
            else
                Crash();
            JoinTerminations();
            p.end_s = rec_.Now();
            rec_.AddPhase(p);
            rec_.SetPhaseNow("settling");
            Settle();
        }
        const double cycle_s = rec_.Now() - cycle_start;
        if (load_->Counters().started.load() >= o_.requests ||
            rec_.Now() + cycle_s > Seconds(o_.max_duration))
            break;
    }
    rec_.SetPhaseNow("load tail");
}

void Drill::RunRolloutCommand() {
    rec_.SetPhaseNow("rollout-cmd");
    Phase p{"rollout-cmd", rec_.Now(), 0};
    ChildOptions co;
    co.argv = {"/bin/sh", "-c", o_.rollout_cmd};
    co.log_path = o_.work_dir + "/rollout-cmd.log";
    Recorder* rec = &rec_;
    co.on_line = [rec](const std::string& line) { rec->Gateway("rollout-cmd", line); };
    rollout_cmd_ = std::make_unique<Child>(std::move(co));
    while (!rollout_cmd_->Exited()) {
        if (Stopping()) throw Aborted{};
        std::this_thread::sleep_for(milliseconds(20));
    }
    rollout_cmd_status_ = rollout_cmd_->ExitStatus();
    p.end_s = rec_.Now();
    rec_.AddPhase(p);
    rec_.SetPhaseNow("load tail");
}

void Drill::ProgressTick() {
    if (!progress_) return;
    const auto now = Clock::now();
    if (now - last_progress_ < milliseconds(250)) return;
    last_progress_ = now;
    Progress p;
    p.elapsed_s = rec_.Now();
    p.max_s = Seconds(o_.max_duration);
    if (load_) {
        const auto& c = load_->Counters();
        p.requests = c.started.load();
        p.acknowledged = c.acknowledged.load();
        p.retried = c.retried.load();
        p.failed = c.failed.load();
        p.in_flight = c.in_flight.load();
    }
    p.phase = rec_.PhaseNow();
    std::lock_guard lock(mu_);
    for (const auto& r : all_) {
        if (r->child->Exited()) continue;
        std::string s = r->State();
        if (s == "listening") s = "starting";
        if (!p.replicas.empty()) p.replicas += " ";
        p.replicas += "r" + r->name.substr(8) + ":" + s;
    }
    progress_(p);
}

void Drill::ReadStoreBefore(Report* r) {
    rec_.SetPhaseNow("reading store");
    StoreBefore& b = r->store_before;
    audit::Snapshot snap;
    try {
        StoreReader reader(store_);
        if (!reader.Read(false, kStoreReadTimeout, &snap, &b.error))
            snap = {};
        else
            b.read = true;
    } catch (const std::exception& e) {
        b.error = e.what();
    }
    if (!b.read) {
        Notice("cannot read the store before the load (" + b.error +
               "): every problem the audit finds in it will count against this run");
        return;
    }
    b.operations = static_cast<std::int64_t>(snap.operations.size());
    b.resources = static_cast<std::int64_t>(snap.resources.size());
    b.entries = static_cast<std::int64_t>(snap.entries.size());
    b.accounts = static_cast<std::int64_t>(snap.accounts.size());
    before_ids_ = StoreProblemIds(snap, UnixMs());
    b.problems = static_cast<std::int64_t>(before_ids_->size());
    // The run's accounts must start empty, or their balances would not be the run's sums.
    // Run ids are random (48 bits), so this is a formality.
    auto taken = [&](const std::string& id) {
        const std::string prefix = "drill-" + id + "-";
        return std::any_of(snap.accounts.begin(), snap.accounts.end(),
                           [&](const auto& a) { return a.first.starts_with(prefix); }) ||
               std::any_of(snap.entries.begin(), snap.entries.end(),
                           [&](const auto& e) { return e.account.starts_with(prefix); });
    };
    for (int i = 0; i < 16 && taken(run_id_); ++i) run_id_ = NewRunId();
    if (taken(run_id_))
        throw std::runtime_error("the store already has accounts of every run id tried (drill-" +
                                 run_id_ + "-*)");
    if (b.Empty()) return;
    std::string what = "the store already holds " + std::to_string(b.operations) +
                       " journal rows, " + std::to_string(b.resources) + " resources and " +
                       std::to_string(b.entries) + " ledger entries in " +
                       std::to_string(b.accounts) +
                       " accounts (an earlier run or another app). This run is judged on its own "
                       "keys and accounts (drill-" +
                       run_id_ + "-*)";
    if (b.problems > 0)
        what += "; the " + std::to_string(b.problems) +
                " problems rollsafe audit finds in the store now are reported apart, not counted";
    Notice(what);
}

void Drill::WaitForRecovery(const std::vector<LoadRecord>& records) {
    // What a killed replica left half-done is finished by a live replica's recovery worker
    // once the lease runs out; the audit must see the store after that, as a user would. Only
    // the journal is polled (the other tables can be large), on one read-only connection kept
    // for the whole wait; a read that fails is retried until the deadline.
    std::set<std::string> keys;
    for (const auto& r : records) keys.insert(r.key);
    const auto deadline = Clock::now() + o_.lease + std::chrono::seconds(10);
    rec_.SetPhaseNow("recovery");
    std::unique_ptr<StoreReader> reader;
    std::string error;
    std::size_t pending = 0;
    bool read_once = false;
    while (!interrupted_.load()) {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        if (left <= milliseconds(0)) break;
        try {
            if (!reader) reader = std::make_unique<StoreReader>(store_);
            audit::Snapshot snap;
            if (reader->Read(true, std::max<milliseconds>(left, std::chrono::seconds(2)), &snap,
                             &error)) {
                read_once = true;
                error.clear();
                pending = static_cast<std::size_t>(
                    std::count_if(snap.operations.begin(), snap.operations.end(),
                                  [&](const store::Operation& op) {
                                      return op.state == "in_progress" && keys.count(op.key) != 0;
                                  }));
                if (pending == 0) return;
            } else {
                reader.reset();  // reopened for the next poll
            }
        } catch (const std::exception& e) {
            error = e.what();
            reader.reset();
        }
        for (int i = 0; i < 25 && !interrupted_.load() && Clock::now() < deadline; ++i) {
            ProgressTick();
            std::this_thread::sleep_for(milliseconds(20));
        }
    }
    if (interrupted_.load()) return;
    const std::string waited = util::FormatDuration(o_.lease + std::chrono::seconds(10));
    if (!error.empty())
        Notice("recovery wait: " + error + (read_once ? " (the last of its reads)" : "") +
               "; waited " + waited);
    else if (pending > 0)
        Notice("recovery wait: " + std::to_string(pending) +
               " journal rows of this run were still in_progress after " + waited +
               " (lease + 10 s); the audit counts those that still are");
}

void Drill::StopReplicas() {
    std::vector<std::shared_ptr<Replica>> all;
    {
        std::lock_guard lock(mu_);
        all = all_;
    }
    std::erase_if(all, [](const auto& r) { return r->child->Exited(); });
    // The load is over: a second SIGTERM skips the drain so the end takes no seconds. Sent
    // apart, or the kernel merges two pending signals into one.
    for (auto& r : all) r->child->Signal(SIGTERM);
    std::this_thread::sleep_for(milliseconds(200));
    for (auto& r : all) r->child->Signal(SIGTERM);
    for (auto& r : all) {
        if (!r->child->WaitExit(std::chrono::seconds(5))) {
            rec_.Lifecycle(r->name, "killed", "did not stop within 5 s at the end of the run");
            r->child->SignalGroup(SIGKILL);
            r->child->WaitExit(std::chrono::seconds(5));
        }
        if (auto st = r->child->ExitStatus())
            rec_.Lifecycle(r->name, "exited", DescribeStatus(*st) + " (end of run)");
    }
}

void Drill::Cleanup() {
    abort_ = true;
    if (load_) load_->Cancel();
    if (rollout_cmd_ && !rollout_cmd_->Exited()) rollout_cmd_->Terminate(milliseconds(2000));
    JoinTerminations();
    StopReplicas();
    {
        std::lock_guard lock(gateway_mu_);
        if (gateway_) gateway_->Stop();
    }
    if (load_) load_->Join(std::chrono::seconds(30));
}

Report Drill::Run() {
    Report report;
    {
        const std::time_t now = std::time(nullptr);
        char buf[32];
        std::tm tm{};
        ::gmtime_r(&now, &tm);
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
        report.started_at = buf;
    }
    const bool local = o_.target.empty();
    // Never from the seed: two runs with one --seed on one store would share their accounts.
    run_id_ = NewRunId();
    binary_ = o_.binary.empty() ? SelfExecutable() : o_.binary;
    store_ = o_.store.empty() ? "sqlite:" + o_.work_dir + "/drill.db" : o_.store;

    RunConfig& c = report.config;
    c.mode = local ? "local" : "black-box";
    c.scenario = local ? o_.scenario : "rollout-cmd";
    c.gateway = local ? ToString(o_.gateway) : "external";
    c.store = local ? RedactStoreUrl(store_) : "";
    c.rollout_cmd = o_.rollout_cmd;
    c.replicas = local ? o_.replicas : 0;
    c.concurrency = o_.concurrency;
    c.requests_target = o_.requests;
    c.max_duration_s = Seconds(o_.max_duration);
    c.work_ms_min = o_.work_ms_min;
    c.work_ms_max = o_.work_ms_max;
    c.ledger_share = o_.ledger_share;
    c.endpoint_lag_min_s = Seconds(o_.endpoint_lag_min);
    c.endpoint_lag_max_s = Seconds(o_.endpoint_lag_max);
    c.prestop = o_.prestop;
    c.grace_s = Seconds(o_.grace);
    c.drain_delay_s = Seconds(o_.drain_delay);
    c.min_available = o_.min_available;
    c.client_retry = o_.client_retry;
    c.gateway_retry = o_.gateway_retry;
    c.service_drain_delay = o_.drain_delay.count() > 0;
    {
        std::lock_guard lock(rng_mu_);
        c.seed = o_.seed;
    }

    std::string base_url = o_.target;
    if (local) {
        rec_.SetPhaseNow("starting replicas");
        std::vector<std::shared_ptr<Replica>> first;
        for (int i = 0; i < o_.replicas; ++i) first.push_back(StartReplica());
        for (auto& r : first) {
            WaitReady(*r);
            AddToLive(r);
            std::lock_guard lock(mu_);
            endpoints_.push_back(r->api_port.load());
        }
        // The replicas have created (or migrated) the schema; nothing of this run is stored.
        ReadStoreBefore(&report);
        if (interrupted_.load()) throw Aborted{};
        GatewayOptions go;
        go.mode = o_.gateway;
        go.retry = o_.gateway_retry;
        go.prefix = o_.work_dir + "/nginx";
        std::filesystem::create_directories(go.prefix);
        {
            std::lock_guard lock(gateway_mu_);
            gateway_ = std::make_unique<Gateway>(go, endpoints_);
            c.gateway = gateway_->Describe();
            base_url = gateway_->Url();
        }
        rec_.Gateway("start", "");
        for (auto& r : first) rec_.Lifecycle(r->name, "added");
    }
    c.target = base_url;
    report.run_id = run_id_;

    LoadOptions lo;
    lo.base_url = base_url;
    lo.concurrency = o_.concurrency;
    lo.max_requests = std::max<std::int64_t>(o_.requests * 4, o_.requests + 100000);
    lo.work_ms_min = o_.work_ms_min;
    lo.work_ms_max = o_.work_ms_max;
    lo.ledger_share = o_.ledger_share;
    lo.run_id = run_id_;
    lo.retry.max_retries = o_.client_retry ? 20 : 0;
    lo.retry.deadline = std::chrono::seconds(60);
    lo.retry.retry_after_cap = std::chrono::seconds(2);
    lo.retry.backoff_cap = std::chrono::seconds(2);
    {
        std::lock_guard lock(rng_mu_);
        lo.seed = rng_();
    }
    lo.now_s = [this] { return rec_.Now(); };
    load_ = std::make_unique<Load>(lo);
    rec_.SetPhaseNow("warm-up");
    load_->Start();

    const auto run_start = Clock::now();
    std::thread scenario([this, local] {
        try {
            Sleep(milliseconds(2000));
            if (local)
                RunScenario();
            else
                RunRolloutCommand();
        } catch (const Aborted&) {
        } catch (const std::exception& e) {
            scenario_error_ = e.what();
        }
        scenario_done_ = true;
    });
    auto stop_scenario = [&] {
        abort_ = true;
        if (scenario.joinable()) scenario.join();
    };
    try {
        // The load runs until the rollout is over and enough requests were made, or time is up.
        for (;;) {
            ProgressTick();
            const double elapsed = Seconds(Clock::now() - run_start);
            if (interrupted_.load() || elapsed >= Seconds(o_.max_duration)) break;
            if (scenario_done_.load() && !scenario_error_.empty()) break;
            const bool enough = !local && o_.duration.count() > 0
                                    ? elapsed >= Seconds(o_.duration)
                                    : load_->Counters().started.load() >= o_.requests;
            if (scenario_done_.load() && enough) break;
            std::this_thread::sleep_for(milliseconds(20));
        }
        load_->StopIssuing();
        if (interrupted_.load()) load_->Cancel();
        stop_scenario();
        const auto join_deadline = Clock::now() + std::chrono::seconds(90);
        while (!load_->Join(milliseconds(100))) {
            ProgressTick();
            if (interrupted_.load()) load_->Cancel();
            if (Clock::now() >= join_deadline) {
                load_->Cancel();
                load_->Join(std::chrono::seconds(30));
                break;
            }
        }
    } catch (...) {
        stop_scenario();
        throw;
    }
    if (!scenario_error_.empty() && !interrupted_.load()) throw std::runtime_error(scenario_error_);
    JoinTerminations();
    const std::vector<LoadRecord> records = load_->Records();
    report.duration_s = rec_.Now();

    Verdict& v = report.verdict;
    CountRequests(records, &v);
    if (local) {
        WaitForRecovery(records);
        rec_.SetPhaseNow("stopping");
        StopReplicas();
        {
            std::lock_guard lock(gateway_mu_);
            gateway_->Stop();
        }
        rec_.SetPhaseNow("audit");
        audit::Snapshot snap;
        std::string error;
        bool read = false;
        try {
            read = StoreReader(store_).Read(false, kStoreReadTimeout, &snap, &error);
        } catch (const std::exception& e) {
            error = e.what();
        }
        if (!read) throw std::runtime_error("cannot audit the store: " + error);
        CheckStore(records, snap, UnixMs(), &v, before_ids_ ? &*before_ids_ : nullptr);
    } else {
        rec_.SetPhaseNow("audit");
        CheckThroughApi(records, base_url, &v);
        if (!rollout_cmd_status_ && !interrupted_.load()) {
            v.run_error = "the rollout command did not finish within --max-duration";
            v.problems.insert(v.problems.begin(), v.run_error);
        } else if (rollout_cmd_status_ && *rollout_cmd_status_ != 0) {
            v.run_error =
                "the rollout command failed (" + DescribeStatus(*rollout_cmd_status_) + ")";
            v.problems.insert(v.problems.begin(),
                              v.run_error + "; its output: " + o_.work_dir + "/rollout-cmd.log");
        }
    }
    if (interrupted_.load()) {
        v.run_error = "interrupted";
        v.problems.insert(v.problems.begin(), "interrupted before the end: the counts are partial");
    }
    BuildReport(&report, records);
    return report;
}

/// The p-th percentile (0..100) of sorted `xs` by the nearest-rank method.
double Percentile(const std::vector<double>& xs, double p) {
    if (xs.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * xs.size()));
    return xs[std::min(xs.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Latency LatencyOf(std::vector<double> ms) {
    std::sort(ms.begin(), ms.end());
    Latency l;
    l.count = static_cast<std::int64_t>(ms.size());
    l.p50_ms = Percentile(ms, 50);
    l.p99_ms = Percentile(ms, 99);
    l.max_ms = ms.empty() ? 0 : ms.back();
    return l;
}

void Drill::BuildReport(Report* r, const std::vector<LoadRecord>& records) {
    rec_.Fill(r);
    if (!r->phases.empty()) {
        r->rollout_start_s = r->phases.front().start_s;
        r->rollout_end_s = r->phases.back().end_s;
    }
    std::vector<double> all, during;
    const auto seconds = static_cast<std::size_t>(std::ceil(std::max(r->duration_s, 0.0))) + 1;
    r->timeline.resize(seconds);
    for (std::size_t i = 0; i < seconds; ++i) r->timeline[i].t_s = static_cast<double>(i);
    for (const auto& x : records) {
        auto& b = r->timeline[std::min(
            seconds - 1, static_cast<std::size_t>(std::max(0.0, std::floor(x.end_s))))];
        if (!x.acknowledged)
            ++b.failed;
        else if (x.attempts > 1)
            ++b.retried_ok;
        else
            ++b.acknowledged;
        b.retry_attempts += std::max(0, x.attempts - 1);
        if (!x.acknowledged) continue;
        const double ms = (x.end_s - x.start_s) * 1000.0;
        all.push_back(ms);
        if (r->rollout_start_s >= 0 && x.end_s >= r->rollout_start_s &&
            x.start_s <= r->rollout_end_s)
            during.push_back(ms);
    }
    r->latency_overall = LatencyOf(all);
    r->latency_during_rollout = LatencyOf(during);
    static constexpr double kBounds[] = {1,   2,    5,    10,   20,    50,    100,  200,
                                         500, 1000, 2000, 5000, 10000, 20000, 60000};
    for (double b : kBounds) r->latency_histogram.emplace_back(b, 0);
    r->latency_histogram.emplace_back(std::max(r->latency_overall.max_ms, 60000.0), 0);
    for (double ms : all)
        for (auto& [bound, count] : r->latency_histogram)
            if (ms <= bound) {
                ++count;
                break;
            }
    while (!r->latency_histogram.empty() && r->latency_histogram.back().second == 0 &&
           r->latency_histogram.size() > 1 &&
           r->latency_histogram[r->latency_histogram.size() - 2].first >= r->latency_overall.max_ms)
        r->latency_histogram.pop_back();

    std::lock_guard lock(mu_);
    for (const auto& x : all_) {
        ReplicaSummary s;
        s.name = x->name;
        s.pid = x->child->Pid();
        s.started_s = x->started_s;
        s.terminated = true;
        s.by_scenario = x->by_scenario.load();
        s.termination_start_s = x->termination_start_s.load();
        if (auto at = x->child->ExitedAt(); at && s.termination_start_s >= 0)
            s.termination_to_exit_s = rec_.At(*at) - s.termination_start_s;
        s.served = x->served.load();
        s.served_while_draining = x->served_draining.load();
        s.sigkilled = x->sigkilled.load();
        if (auto st = x->child->ExitStatus()) s.exit = DescribeStatus(*st);
        r->replicas.push_back(std::move(s));
    }
}

}  // namespace

std::string RedactStoreUrl(std::string url) {
    const auto scheme = url.find("://");
    if (scheme != std::string::npos) {
        const auto host_start = scheme + 3;
        const auto path = url.find_first_of("/?", host_start);
        const auto at = url.rfind('@', path == std::string::npos ? url.size() : path);
        if (at != std::string::npos && at > host_start) {
            const auto colon = url.find(':', host_start);
            if (colon != std::string::npos && colon < at)
                url.replace(colon + 1, at - colon - 1, "***");
        }
    }
    for (std::size_t p = 0; (p = url.find("password=", p)) != std::string::npos;) {
        if (p != 0 && url[p - 1] != '?' && url[p - 1] != '&' && url[p - 1] != ' ') {
            p += 9;
            continue;
        }
        const auto value = p + 9;
        const auto end = url.find_first_of("& ", value);
        url.replace(value, (end == std::string::npos ? url.size() : end) - value, "***");
        p = value + 3;
    }
    return url;
}

Report RunDrill(const DrillOptions& options, const std::atomic<bool>& interrupted,
                const std::function<void(const Progress&)>& progress,
                const std::function<void(const std::string&)>& notice) {
    try {
        Drill d(options, interrupted, progress, notice);
        return d.Run();
    } catch (const Aborted&) {
        // Interrupted before the load began (replicas still starting): nothing to report, and
        // ~Drill has already ended every process.
        throw std::runtime_error("interrupted while starting");
    }
}

}  // namespace rollsafe::drill
