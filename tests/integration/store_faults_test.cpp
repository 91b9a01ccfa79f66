// Store faults survived (issue 5), on the PostgreSQL store:
//
// - PostgreSQL is stopped (`pg_ctl stop -m fast`) for 5 s and started again while two replicas
//   take a bounded load through the retrying client: every answer is a success or 503 +
//   Retry-After, every request lands exactly once, /readyz is 503 during the outage and back
//   within 2 s. A cluster of the test's own: the shared ROLLSAFE_TEST_PG is never stopped, other
//   tests use it in parallel. One ledger write is held mid-transaction (blocked on a row lock)
//   when the server goes down, so the "connection killed mid-transaction" case happens every
//   run, not only when the timing allows; and a third replica without traffic shows that
//   readiness comes back by the store's health check alone.
// - A TCP proxy between `rollsafe serve` and PostgreSQL cuts the connection at the COMMIT of
//   one request's transaction, either before the COMMIT reaches PostgreSQL or after PostgreSQL
//   committed (its answer is dropped). Either way the server cannot know the outcome; the retry
//   with the same key must find it by re-reading the journal row, never by executing again.
// - The same proxy stops answering (a host that drops packets): requests wait for at most one
//   connect timeout, then fail at once until the server answers again.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rollsafe/client/client.hpp"
#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/raw_http.hpp"
#include "testing/serve_helpers.hpp"
#include "testing/sqlite_cli.hpp"
#include "testing/temp_dir.hpp"
#include "testing/test_store.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// A loopback port nothing listens on right now, for the services services.sh starts on a given
/// port. Another process could take it before PostgreSQL binds it; services.sh then fails and
/// the test says so.
std::uint16_t FreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    std::uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
        port = ntohs(a.sin_port);
    ::close(fd);
    return port;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL stopped and started again under load
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL cluster (and the Redis that services.sh starts beside it) of this test's own, in
/// a temporary directory on free ports, stopped on destruction.
class OwnServices {
  public:
    OwnServices() : pg_port_(FreePort()), redis_port_(FreePort()) {}
    ~OwnServices() {
        if (started_) Script("stop", 60s);
    }
    OwnServices(const OwnServices&) = delete;
    OwnServices& operator=(const OwnServices&) = delete;

    /// `services.sh start`: the PostgreSQL URL, or nullopt after a test failure.
    std::optional<std::string> Start() {
        started_ = true;
        if (!Script("start", 90s)) return std::nullopt;
        for (std::string_view rest = last_.out; !rest.empty();) {
            const auto nl = rest.find('\n');
            const std::string_view line = rest.substr(0, nl);
            if (line.starts_with("ROLLSAFE_TEST_PG=")) return std::string(line.substr(17));
            rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        }
        ADD_FAILURE() << "services.sh start printed no ROLLSAFE_TEST_PG line:\n" << last_.out;
        return std::nullopt;
    }
    /// `services.sh pg-down`: fast shutdown (every session terminated), data kept.
    bool Down() { return Script("pg-down", 60s); }
    /// `services.sh pg-up`: returns once pg_ctl start -w has seen PostgreSQL accept connections.
    bool Up() { return Script("pg-up", 90s); }
    std::uint16_t PgPort() const { return pg_port_; }

  private:
    bool Script(const std::string& command, SteadyClock::duration timeout) {
        last_ = RunProcess({"env", "SVC_DIR=" + dir_.Path(), "PG_PORT=" + std::to_string(pg_port_),
                            "REDIS_PORT=" + std::to_string(redis_port_),
                            std::string(ROLLSAFE_SOURCE_DIR) + "/scripts/services.sh", command},
                           timeout);
        const bool ok = last_.exit_code && *last_.exit_code == 0;
        EXPECT_TRUE(ok) << "scripts/services.sh " << command << " failed (it needs root and "
                        << "PostgreSQL 15: scripts/install-deps.sh); exit "
                        << (last_.exit_code ? std::to_string(*last_.exit_code) : "none")
                        << "\nstdout:\n"
                        << last_.out << "stderr:\n"
                        << last_.err;
        return ok;
    }

    TempDir dir_;  // first member: removed after the destructor stopped the services
    std::uint16_t pg_port_;
    std::uint16_t redis_port_;
    bool started_ = false;
    ProcessResult last_;
};

constexpr std::size_t kLoadClients = 3;
/// The load's count bound; the time bound is the stop flag (set 2 s after readiness is back).
constexpr int kMaxRequestsPerClient = 1500;
/// One logical request, retries included: longer than the outage.
constexpr auto kRequestBudget = 20s;
/// One attempt. Below the store's 5 s libpq connect_timeout, so a request that waited for a
/// connect to time out would show here as a client timeout.
constexpr auto kAttemptTimeout = 4s;
constexpr auto kOutage = 5s;
/// The acceptance: readiness is back this soon after PostgreSQL accepts connections again.
constexpr auto kReadinessBound = 2s;
const std::vector<std::string> kLoadAccounts = {"acct-a", "acct-b", "acct-c"};
/// The account of the write held mid-transaction; nothing else writes to it meanwhile.
const std::string kHeldAccount = "acct-held";

/// The client's retry options for the load. The backoff jitter (at most 50 ms) stays below the
/// Retry-After cap (100 ms), so the wait after a response with a `Retry-After` is always the
/// Retry-After one: AttemptRecord::decision.from_retry_after tells whether the answer had it.
client::PostRequest LoadRequest(std::uint16_t port, const std::string& path,
                                const std::string& body, const std::string& key) {
    client::PostRequest req;
    req.url = "http://127.0.0.1:" + std::to_string(port) + path;
    req.body = body;
    req.idempotency_key = key;
    req.retry.max_retries = 10'000;  // bounded by the deadline
    req.retry.deadline = std::chrono::duration_cast<std::chrono::milliseconds>(kRequestBudget);
    req.retry.backoff_base = 10ms;
    req.retry.backoff_cap = 50ms;
    req.retry.retry_after_cap = 100ms;
    req.attempt_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kAttemptTimeout);
    return req;
}

/// One attempt of one logical request, as the client's on_attempt hook saw it.
struct AttemptSeen {
    std::string key;
    std::size_t replica = 0;
    SteadyClock::time_point start;
    SteadyClock::time_point end;
    int status = 0;
    std::optional<client::TransportError> error;
    std::string error_detail;
    bool retried = false;      ///< the policy retried after it
    bool retry_after = false;  ///< the retry waited for the response's Retry-After
    bool replayed = false;     ///< Idempotent-Replayed: true

    std::string Describe() const {
        std::string s = key + " on replica " + std::to_string(replica) + ": ";
        if (error) return s + client::ToString(*error) + " (" + error_detail + ")";
        return s + std::to_string(status) + (retry_after ? " with Retry-After" : "") +
               (replayed ? " (replayed)" : "");
    }
};

/// An acknowledged logical request.
struct Ack {
    bool entry = false;
    std::string key;
    std::string id;  ///< resource id or entry_id
    std::string account;
    long long amount = 0;
};

struct ClientLog {
    std::vector<AttemptSeen> attempts;
    std::vector<Ack> acks;
    std::vector<std::string> failures;
};

/// Sends one logical request through the retrying client, recording every attempt; an Ack when
/// it was finally answered 201 with a body that is this request's effect.
std::optional<Ack> PostLogged(std::uint16_t port, std::size_t replica, bool entry,
                              const std::string& key, const std::string& account, long long amount,
                              ClientLog& log, bool held = false) {
    const std::string path = entry ? "/accounts/" + account + "/entries" : "/resources";
    const std::string body =
        entry ? "{\"amount\":" + std::to_string(amount) + ",\"memo\":\"" + key + "\"}"
              : ResourceBody("{\"key\":\"" + key + "\"}");
    client::Environment env;
    env.on_attempt = [&](const client::AttemptRecord& rec) {
        AttemptSeen a;
        a.key = key;
        a.replica = replica;
        a.end = SteadyClock::now();
        a.start = a.end - rec.latency;
        a.status = rec.status;
        a.error = rec.error;
        a.error_detail = rec.error_detail;
        a.retried = rec.decision.retry;
        a.retry_after = rec.decision.from_retry_after;
        a.replayed = rec.replayed;
        log.attempts.push_back(std::move(a));
    };
    client::PostRequest req = LoadRequest(port, path, body, key);
    if (held) {  // its first attempt waits on the row lock until PostgreSQL goes down
        req.attempt_timeout = 30s;
        req.retry.deadline = 40s;
    }
    const client::PostResult r = client::Post(req, env);
    if (!r.Succeeded() || !r.response || r.response->status != 201) {
        log.failures.push_back(key + " never acknowledged: " + client::ToString(r.reason) + ": " +
                               r.why);
        return std::nullopt;
    }
    const auto v = ParseJson(r.response->body);
    Ack a{entry, key, "", account, amount};
    if (v) a.id = v->GetString(entry ? "entry_id" : "id").value_or("");
    if (a.id.empty() || (entry && (v->GetString("account") != account ||
                                   v->GetNumber("amount") != static_cast<double>(amount)))) {
        log.failures.push_back(key + ": the 201 is not this request's effect: " + r.response->body);
        return std::nullopt;
    }
    log.acks.push_back(a);
    return a;
}

/// Resources and ledger entries, alternating, to the replicas in turn, until `stop`, the count
/// bound or the run deadline.
void RunLoadClient(int index, const std::vector<std::uint16_t>& ports, const std::stop_token& stop,
                   Deadline run_deadline, std::atomic<int>& acked, ClientLog& log) {
    for (int i = 0;
         i < kMaxRequestsPerClient && !stop.stop_requested() && SteadyClock::now() < run_deadline;
         ++i) {
        const bool entry = (i + index) % 2 == 1;
        const std::size_t replica = static_cast<std::size_t>(index + i) % ports.size();
        const std::string key = "faults-c" + std::to_string(index) + "-" + std::to_string(i);
        const std::string& account =
            kLoadAccounts[static_cast<std::size_t>(i / 2 + index) % kLoadAccounts.size()];
        if (PostLogged(ports[replica], replica, entry, key, account, 1 + (i % 7), log))
            acked.fetch_add(1);
    }
}

/// /readyz of one replica, as the poller saw it.
struct ReadySample {
    std::size_t replica = 0;
    SteadyClock::time_point at;
    int status = 0;  ///< 0: no answer
};

TEST(StoreFaults, PostgresStoppedFiveSecondsUnderLoadEveryRequestLandsOnceAndReadinessRecovers) {
    const auto test_start = SteadyClock::now();
    OwnServices services;
    const auto url = services.Start();
    ASSERT_TRUE(url);

    std::vector<std::unique_ptr<ServeProcess>> replicas;
    std::vector<std::uint16_t> ports;
    // r0 and r1 take the load. r2 takes one request during the outage and nothing else, and
    // its recovery worker (a store job per interval) never runs: only the store's own health
    // re-check can make it ready again.
    for (int i = 0; i < 3; ++i) {
        ServeOptions o;
        o.store_url = *url;
        o.threads = 1;  // three replicas, the load and PostgreSQL share two cores
        o.extra_args = {"--name",
                        "r" + std::to_string(i),
                        "--pg-pool",
                        "4",
                        "--lease",
                        "1s",
                        "--recovery-interval",
                        i == 2 ? "1h" : "200ms",
                        "--drain-delay",
                        "100ms",
                        "--no-access-log"};
        replicas.push_back(std::make_unique<ServeProcess>(std::move(o)));
        if (i < 2) ports.push_back(replicas.back()->ApiPort());
    }

    // A write held mid-transaction when PostgreSQL goes down: the account's row exists (first
    // entry), a psql session row-locks it and sleeps, and the next entry blocks on that lock
    // after its journal row was inserted in the same transaction.
    ClientLog held_log;
    ASSERT_TRUE(PostLogged(ports[0], 0, true, "faults-held-0", kHeldAccount, 5, held_log))
        << held_log.failures.front();
    ProcessResult holder;
    std::jthread holder_thread([&] {
        holder = RunProcess({"psql", "-X", "-q", "-d", *url, "-c",
                             "SELECT 1 FROM accounts WHERE account = " + SqlQuote(kHeldAccount) +
                                 " FOR UPDATE; SELECT pg_sleep(60)"},
                            45s);
    });
    std::string last;
    ASSERT_TRUE(SqlitePoll(*url,
                           "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'",
                           "1", DeadlineIn(10s), &last))
        << "the psql session never held the row lock: " << last;
    std::jthread held_thread([&] {
        PostLogged(ports[0], 0, true, "faults-held-1", kHeldAccount, 7, held_log,
                   /*held=*/true);
    });
    ASSERT_TRUE(SqlitePoll(*url,
                           "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                           " AND query LIKE '%accounts%'",
                           "1", DeadlineIn(10s), &last))
        << "the held entry never waited on the row lock: " << last;

    // Readiness of every replica, every 20 ms, from now to the end of the load.
    std::vector<ReadySample> ready;  // written by the poller only, read after it stopped
    std::jthread poller([&](std::stop_token stop) {
        while (!stop.stop_requested()) {
            for (std::size_t r = 0; r < replicas.size(); ++r) {
                const HttpResponse h =
                    Fetch(replicas[r]->AdminPort(), "GET", "/readyz", {}, {}, DeadlineIn(1s));
                ready.push_back({r, SteadyClock::now(), h.complete ? h.status : 0});
            }
            std::this_thread::sleep_for(20ms);
        }
    });

    const Deadline run_deadline = DeadlineIn(60s);
    std::vector<ClientLog> logs(kLoadClients);
    std::vector<std::atomic<int>> acked(kLoadClients);
    std::vector<std::jthread> clients;  // stopped and joined on every way out
    for (std::size_t i = 0; i < kLoadClients; ++i)
        clients.emplace_back([&, i](std::stop_token stop) {
            RunLoadClient(static_cast<int>(i), ports, stop, run_deadline, acked[i], logs[i]);
        });
    // Some load on both replicas before the fault.
    const Deadline warmup = DeadlineIn(10s);
    while (SteadyClock::now() < warmup &&
           !std::all_of(acked.begin(), acked.end(), [](const auto& n) { return n.load() > 5; }))
        std::this_thread::sleep_for(10ms);

    // Inject: PostgreSQL goes away for kOutage.
    const auto down_begin = SteadyClock::now();
    const bool down_ok = services.Down();
    const auto down = SteadyClock::now();
    const HttpResponse idle = Fetch(replicas[2]->ApiPort(), "POST", "/resources",
                                    JsonHeaders("faults-idle"), ResourceBody("{}"));
    std::this_thread::sleep_until(down + kOutage);
    const auto up_begin = SteadyClock::now();
    // When PostgreSQL accepts connections again, as pg_isready sees it: pg_ctl -w polls, and
    // returns up to a few hundred ms later.
    std::optional<SteadyClock::time_point> accepting;
    std::jthread isready([&](std::stop_token stop) {
        while (!stop.stop_requested() && SteadyClock::now() < up_begin + 60s) {
            const ProcessResult p = RunProcess(
                {"pg_isready", "-q", "-h", "127.0.0.1", "-p", std::to_string(services.PgPort())},
                5s);
            if (p.exit_code == 0) {
                accepting = SteadyClock::now();
                return;
            }
            std::this_thread::sleep_for(5ms);
        }
    });
    const bool up_ok = services.Up();
    const auto up = SteadyClock::now();
    isready.join();

    // Restore: keep the load going until both replicas are ready again, and 2 s more.
    int ready_again = 0;
    const Deadline recovered_deadline = up + 10s;
    for (const auto& r : replicas) {
        while (SteadyClock::now() < recovered_deadline) {
            const HttpResponse h = Fetch(r->AdminPort(), "GET", "/readyz", {}, {}, DeadlineIn(1s));
            if (h.complete && h.status == 200) {
                ++ready_again;
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
    }
    std::this_thread::sleep_for(2s);
    for (auto& c : clients) c.request_stop();
    for (auto& c : clients) c.join();
    held_thread.join();
    holder_thread.join();
    poller.request_stop();
    poller.join();
    ASSERT_TRUE(down_ok && up_ok);
    ASSERT_TRUE(accepting) << "pg_isready never succeeded after pg-up";
    EXPECT_EQ(ready_again, 3) << "a replica was not ready 10 s after pg-up";
    EXPECT_TRUE(IsProblem(idle, 503)) << "r2 during the outage: " << idle.Describe();
    EXPECT_TRUE(idle.Header("Retry-After")) << idle.Describe();
    auto ready_at = [&](std::size_t r) -> std::optional<SteadyClock::time_point> {
        for (const auto& s : ready)
            if (s.replica == r && s.at > up_begin && s.status == 200) return s.at;
        return std::nullopt;
    };

    // --- The failure mode the clients saw ---
    std::vector<AttemptSeen> attempts;
    std::vector<Ack> acks;
    std::vector<const ClientLog*> all_logs = {&held_log};
    for (const auto& l : logs) all_logs.push_back(&l);
    for (const auto* log : all_logs) {
        for (const auto& f : log->failures) ADD_FAILURE() << f;
        attempts.insert(attempts.end(), log->attempts.begin(), log->attempts.end());
        acks.insert(acks.end(), log->acks.begin(), log->acks.end());
    }
    std::map<int, int> by_status;
    int outage_503 = 0, outage_2xx = 0, bad = 0;
    double outage_max_ms = 0;
    for (const auto& a : attempts) {
        ++by_status[a.error ? -1 : a.status];
        const bool ok = !a.error && ((a.status >= 200 && a.status <= 299) ||
                                     (a.status == 503 && a.retried && a.retry_after));
        if (!ok && ++bad <= 20)
            ADD_FAILURE() << "an answer that is neither a success nor 503 + Retry-After: "
                          << a.Describe();
        if (a.end > down && a.end < up_begin) {
            outage_503 += a.status == 503;
            outage_2xx += a.status >= 200 && a.status <= 299;
            outage_max_ms = std::max(outage_max_ms, MsBetween(a.start, a.end));
        }
    }
    EXPECT_EQ(bad, 0);
    EXPECT_GT(outage_503, 0) << "no 503 during the outage: the load never met it";
    // Never a hang: at most kAttemptTimeout is asserted above (a timeout is a transport error).

    // --- Readiness: 503 during the outage, back within kReadinessBound, and staying back ---
    std::vector<double> recovery_ms(replicas.size(), -1);
    for (std::size_t r = 0; r < replicas.size(); ++r) {
        std::optional<SteadyClock::time_point> first_503, back;
        int flaps = 0, relapses = 0;
        for (const auto& s : ready) {
            if (s.replica != r) continue;
            if (s.at > down && s.at < up_begin) {
                if (s.status == 503 && !first_503) first_503 = s.at;
                if (first_503 && s.status != 503) ++flaps;
            } else if (s.at > up_begin) {
                if (!back && s.status == 200) back = s.at;
                if (back && s.status != 200) ++relapses;
            }
        }
        EXPECT_TRUE(first_503) << "replica " << r << ": /readyz never said 503 during the outage";
        EXPECT_EQ(flaps, 0) << "replica " << r
                            << ": /readyz was not 503 for the rest of the outage";
        ASSERT_TRUE(back) << "replica " << r << ": /readyz never 200 again";
        recovery_ms[r] = MsBetween(*accepting, *back);
        EXPECT_LE(*back, *accepting + kReadinessBound)
            << "replica " << r << ": ready " << recovery_ms[r]
            << " ms after PostgreSQL accepted connections again";
        EXPECT_EQ(relapses, 0) << "replica " << r << ": /readyz went back to 503 after recovery";
    }

    // Afterwards everything succeeds: an attempt that started once its replica was ready again
    // got a 2xx at once.
    int after_ready = 0;
    for (const auto& a : attempts) {
        const auto back = ready_at(a.replica);
        if (!back || a.start <= *back) continue;
        ++after_ready;
        EXPECT_TRUE(!a.error && a.status >= 200 && a.status <= 299)
            << "after readiness was back: " << a.Describe();
    }
    EXPECT_GT(after_ready, 0) << "no request after the recovery";

    // The write killed mid-transaction: 503 + Retry-After, then executed once after the restart
    // (not replayed: nothing of it had committed).
    std::vector<AttemptSeen> held;
    for (const auto& a : held_log.attempts)
        if (a.key == "faults-held-1") held.push_back(a);
    ASSERT_GE(held.size(), 2u) << "the held entry was not answered 503 first";
    EXPECT_EQ(held.front().status, 503) << held.front().Describe();
    EXPECT_TRUE(held.front().retry_after) << held.front().Describe();
    EXPECT_GT(held.front().end, down_begin) << "answered before PostgreSQL went down";
    EXPECT_EQ(held.back().status, 201) << held.back().Describe();
    EXPECT_FALSE(held.back().replayed) << "the killed transaction had committed something";
    ASSERT_TRUE(holder.exit_code) << "the lock-holding psql did not end";
    EXPECT_NE(*holder.exit_code, 0) << "the lock holder was not terminated by the shutdown";

    // --- Nothing lost, nothing duplicated ---
    std::set<std::string> keys, resource_ids, entry_ids;
    std::map<std::string, long long> sums;
    for (const auto& a : acks) {
        EXPECT_TRUE(keys.insert(a.key).second) << "acknowledged twice: " << a.key;
        if (a.entry) {
            entry_ids.insert(a.id);
            sums[a.account] += a.amount;
        } else {
            resource_ids.insert(a.id);
        }
    }
    auto rows = [&](const std::string& sql) {
        const SqliteResult q = SqliteQuery(*url, sql);
        EXPECT_TRUE(q.ok) << sql << ": " << q.error;
        return std::set<std::string>(q.rows.begin(), q.rows.end());
    };
    EXPECT_EQ(rows("SELECT id FROM resources"), resource_ids);
    EXPECT_EQ(SqliteOneRow(*url, "SELECT count(*) FROM resources"),
              std::to_string(resource_ids.size()));
    EXPECT_EQ(rows("SELECT entry_id FROM entries"), entry_ids);
    EXPECT_EQ(SqliteOneRow(*url, "SELECT count(*) FROM entries"), std::to_string(entry_ids.size()));
    std::set<std::string> balances;
    for (const auto& [account, sum] : sums) balances.insert(account + "|" + std::to_string(sum));
    EXPECT_EQ(rows("SELECT account, balance FROM accounts"), balances);
    EXPECT_EQ(SqliteOneRow(*url, "SELECT count(*) FROM journal WHERE state <> 'completed'"), "0");

    for (auto& r : replicas) {
        ASSERT_TRUE(r->Signal(SIGTERM));
        const auto code = r->WaitExit(DeadlineIn(10s));
        ASSERT_TRUE(code) << "a replica did not exit";
        EXPECT_EQ(*code, 0);
    }
    const ProcessResult audit = RunAudit(*url);
    ASSERT_TRUE(audit.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*audit.exit_code, 0) << "rollsafe audit found problems\nstderr:\n" << audit.err;

    std::cerr << "outage: pg-down " << MsBetween(down_begin, down) << " ms, held "
              << MsBetween(down, up_begin) << " ms, pg-up " << MsBetween(up_begin, up)
              << " ms; readiness back " << recovery_ms[0] << " / " << recovery_ms[1] << " / "
              << recovery_ms[2] << " ms after pg_isready succeeded (" << MsBetween(*accepting, up)
              << " ms before pg-up returned); " << attempts.size() << " attempts for "
              << acks.size() << " acknowledged requests (" << resource_ids.size() << " resources, "
              << entry_ids.size() << " entries); during the outage " << outage_503 << " x 503, "
              << outage_2xx << " x 2xx, slowest answer " << outage_max_ms << " ms; status counts:";
    for (const auto& [status, n] : by_status)
        std::cerr << " " << (status < 0 ? std::string("transport") : std::to_string(status)) << "="
                  << n;
    std::cerr << "; " << after_ready << " attempts after readiness all 2xx; run "
              << MsBetween(test_start, SteadyClock::now()) << " ms\n";
}

// ---------------------------------------------------------------------------------------------
// The connection lost during COMMIT
// ---------------------------------------------------------------------------------------------

/// Where the proxy cuts the connection that carries the armed COMMIT.
enum class Cut {
    kBeforeForwarding,  ///< the COMMIT never reaches PostgreSQL: nothing is committed
    kAfterCommitted,    ///< PostgreSQL commits and answers; the answer is dropped
};

std::uint32_t Be32(const std::string& b, std::size_t at) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 24 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3]));
}

bool SendAll(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

/// A TCP proxy on 127.0.0.1 (port 0) in front of PostgreSQL that reads the frontend's protocol
/// messages (v3: the startup packet, then type byte + length). Armed with a marker (a request's
/// idempotency key, which the store sends as a bound text parameter), it follows each
/// connection's transaction: one that carried the marker and ends in the simple-query `COMMIT`
/// (libpq's PQexec) is cut there, once, per Cut. GoSilent() makes it a server that stopped
/// answering. Everything else passes unchanged. Stopped and joined on destruction.
class PgFaultProxy {
  public:
    /// What the cut did.
    struct Report {
        bool forwarded = false;  ///< the COMMIT was sent on to PostgreSQL
        std::string tag;         ///< PostgreSQL's CommandComplete for it ("COMMIT": it committed)
    };

    explicit PgFaultProxy(std::uint16_t upstream_port) : upstream_(upstream_port) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = Loopback(0);
        socklen_t len = sizeof a;
        if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(listen_fd_, 64) != 0 ||
            ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
            throw std::runtime_error("proxy: cannot listen on 127.0.0.1:0");
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { AcceptLoop(); });
    }
    ~PgFaultProxy() {
        stop_.store(true);
        acceptor_.join();
        std::vector<std::thread> pumps;
        {
            std::lock_guard lock(mu_);
            pumps.swap(pumps_);
        }
        for (auto& t : pumps) t.join();
        for (const int fd : silent_fds_) ::close(fd);
        ::close(listen_fd_);
    }
    PgFaultProxy(const PgFaultProxy&) = delete;
    PgFaultProxy& operator=(const PgFaultProxy&) = delete;

    std::uint16_t Port() const { return port_; }

    /// Closes every open connection, and from now on accepts connections but never answers
    /// them nor passes them on: what a client sees of a server whose host stopped answering
    /// (libpq waits its connect_timeout).
    void GoSilent() {
        std::lock_guard lock(mu_);
        silent_ = true;
        generation_.fetch_add(1);
    }
    /// Ends GoSilent: the connections it held are closed, new ones are passed on again.
    void Answer() {
        std::lock_guard lock(mu_);
        silent_ = false;
        for (const int fd : silent_fds_) {
            ::shutdown(fd, SHUT_RDWR);
            ::close(fd);
        }
        silent_fds_.clear();
    }

    /// Cuts the next COMMIT of a transaction that carried `marker`.
    void Arm(Cut cut, std::string marker) {
        std::lock_guard lock(mu_);
        cut_ = cut;
        marker_ = std::move(marker);
        report_.reset();
    }

    /// The armed cut's report once it happened, or nullopt at the deadline.
    std::optional<Report> WaitForCut(Deadline deadline) {
        std::unique_lock lock(mu_);
        cv_.wait_until(lock, deadline, [&] { return report_.has_value(); });
        return report_;
    }

  private:
    static sockaddr_in Loopback(std::uint16_t port) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        return a;
    }

    void AcceptLoop() {
        while (!stop_.load()) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            {
                std::lock_guard lock(mu_);
                if (silent_) {
                    silent_fds_.push_back(c);
                    continue;
                }
            }
            const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a = Loopback(upstream_);
            if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
                if (s >= 0) ::close(s);
                ::close(c);
                continue;
            }
            std::lock_guard lock(mu_);
            pumps_.emplace_back([this, c, s] { Pump(c, s); });
        }
    }

    /// One connection: frontend `c`, PostgreSQL `s`. Frontend bytes are forwarded message by
    /// message; PostgreSQL's as they come.
    void Pump(int c, int s) {
        std::string in;  // frontend bytes of a message not yet complete
        bool startup = true;
        bool marked = false;  // the transaction so far carried the armed marker
        char buf[64 * 1024];
        const int generation = generation_.load();
        for (bool open = true; open && !stop_.load() && generation_.load() == generation;) {
            pollfd fds[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
            if (::poll(fds, 2, 50) <= 0) continue;
            if (fds[1].revents != 0) {
                const ssize_t n = ::recv(s, buf, sizeof buf, 0);
                open = n > 0 && SendAll(c, std::string_view(buf, static_cast<std::size_t>(n)));
            }
            if (!open || fds[0].revents == 0) continue;
            const ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            in.append(buf, static_cast<std::size_t>(n));
            for (;;) {
                if (startup) {  // untyped: SSLRequest/GSSENCRequest, then the StartupMessage
                    if (in.size() < 8 || in.size() < Be32(in, 0)) break;
                    const std::size_t len = std::max<std::size_t>(Be32(in, 0), 8);
                    const std::uint32_t code = Be32(in, 4);
                    startup = code == 80877103 || code == 80877104;
                    open = SendAll(s, std::string_view(in).substr(0, len));
                    in.erase(0, len);
                    continue;
                }
                if (in.size() < 5 || in.size() < 1 + std::size_t{Be32(in, 1)}) break;
                const std::size_t len = 1 + std::max<std::size_t>(Be32(in, 1), 4);
                const std::string msg = in.substr(0, len);
                in.erase(0, len);
                std::optional<Cut> cut;
                {
                    std::lock_guard lock(mu_);
                    const std::string_view query =
                        msg[0] == 'Q' ? std::string_view(msg).substr(5) : std::string_view();
                    // A transaction starts with BEGIN and ends with COMMIT or ROLLBACK (a
                    // ROLLBACK TO SAVEPOINT stays inside it).
                    if (query.starts_with("BEGIN")) marked = false;
                    if (!marker_.empty() && msg.find(marker_) != std::string::npos) marked = true;
                    if (query == std::string_view("COMMIT\0", 7) && marked && cut_) {
                        cut = cut_;
                        cut_.reset();
                        marker_.clear();
                    }
                    if (query == std::string_view("COMMIT\0", 7) ||
                        query == std::string_view("ROLLBACK\0", 9))
                        marked = false;
                }
                if (cut) {
                    Report r;
                    if (*cut == Cut::kAfterCommitted) {
                        r.forwarded = SendAll(s, msg);
                        r.tag = DropReply(s);
                    }
                    Close(c, s);
                    std::lock_guard lock(mu_);
                    report_ = r;
                    cv_.notify_all();
                    return;
                }
                if (!(open = SendAll(s, msg))) break;
            }
        }
        Close(c, s);
    }

    /// Reads PostgreSQL's answer up to ReadyForQuery (at most 5 s) without passing it on;
    /// returns the CommandComplete tag ("COMMIT" or "ROLLBACK"), "ERROR", or "" when none came.
    static std::string DropReply(int s) {
        std::string got, tag;
        char buf[4096];
        const Deadline deadline = DeadlineIn(5s);
        while (SteadyClock::now() < deadline) {
            while (got.size() >= 5 && got.size() >= 1 + std::size_t{Be32(got, 1)}) {
                const std::size_t len = 1 + std::max<std::size_t>(Be32(got, 1), 4);
                if (got[0] == 'C') tag = got.substr(5, got.find('\0', 5) - 5);
                if (got[0] == 'E') tag = "ERROR";
                if (got[0] == 'Z') return tag;
                got.erase(0, len);
            }
            pollfd p{s, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const ssize_t n = ::recv(s, buf, sizeof buf, 0);
            if (n <= 0) break;
            got.append(buf, static_cast<std::size_t>(n));
        }
        return tag;
    }

    static void Close(int c, int s) {
        ::shutdown(c, SHUT_RDWR);
        ::shutdown(s, SHUT_RDWR);
        ::close(c);
        ::close(s);
    }

    std::uint16_t upstream_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::thread> pumps_;
    std::optional<Cut> cut_;
    std::string marker_;
    std::optional<Report> report_;
    bool silent_ = false;
    std::vector<int> silent_fds_;
    std::atomic<int> generation_{0};  ///< GoSilent() ends the connections of earlier ones
};

/// `postgres://USER@HOST:PORT/DB...` split at the port.
struct PgUrl {
    std::string before_host;  ///< "postgres://USER@"
    std::string host;
    std::uint16_t port = 0;
    std::string rest;  ///< "/DB?..."
};
std::optional<PgUrl> SplitPgUrl(const std::string& url) {
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return std::nullopt;
    const auto path = url.find('/', scheme + 3);
    const std::string authority = url.substr(scheme + 3, path - (scheme + 3));
    const auto at = authority.rfind('@');
    const std::string hostport = at == std::string::npos ? authority : authority.substr(at + 1);
    const auto colon = hostport.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    PgUrl u;
    u.before_host =
        url.substr(0, scheme + 3) + (at == std::string::npos ? "" : authority.substr(0, at + 1));
    u.host = hostport.substr(0, colon);
    u.port = static_cast<std::uint16_t>(std::atoi(hostport.substr(colon + 1).c_str()));
    u.rest = path == std::string::npos ? "" : url.substr(path);
    return u;
}

std::string WithParam(const std::string& url, const std::string& param) {
    return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

/// One request whose COMMIT is cut as `cut` says, then retried with the same key.
void CutOneCommit(const ServeProcess& serve, PgFaultProxy& proxy, const std::string& db, bool entry,
                  Cut cut) {
    const bool after = cut == Cut::kAfterCommitted;
    const std::string variant = after ? "after" : "before";
    SCOPED_TRACE(std::string(entry ? "ledger entry" : "resource") + ", cut " + variant +
                 " the COMMIT reached PostgreSQL");
    const std::string key = std::string("cut-") + (entry ? "entry-" : "resource-") + variant;
    const std::string path = entry ? "/accounts/cut-" + variant + "/entries" : "/resources";
    const std::string body =
        entry ? R"({"amount":42,"memo":"cut"})" : ResourceBody(R"({"cut":")" + variant + "\"}");
    const std::string table = entry ? "entries" : "resources";
    const std::string id_column = entry ? "entry_id" : "id";
    const std::string stored =
        "SELECT " + id_column + " FROM " + table + " WHERE idempotency_key = " + SqlQuote(key);

    proxy.Arm(cut, key);
    const HttpResponse first = Fetch(serve.ApiPort(), "POST", path, JsonHeaders(key), body);
    const auto report = proxy.WaitForCut(DeadlineIn(5s));
    ASSERT_TRUE(report) << "the proxy saw no simple-query COMMIT of a transaction carrying " << key
                        << " (does the store still commit with PQexec(\"COMMIT\")?); "
                        << "the answer was " << first.Describe();
    // The variant did what it says: PostgreSQL committed, or never saw the COMMIT.
    EXPECT_EQ(report->forwarded, after);
    EXPECT_EQ(report->tag, after ? "COMMIT" : "");
    const SqliteResult before_retry = SqliteQuery(db, stored);
    ASSERT_TRUE(before_retry.ok) << before_retry.error;
    EXPECT_EQ(before_retry.rows.size(), after ? 1u : 0u);

    // The server cannot know the outcome: 503 + Retry-After, and it says the COMMIT failed.
    ASSERT_TRUE(IsProblem(first, 503)) << first.Describe();
    EXPECT_GE(std::atoll(first.Header("Retry-After").value_or("0").c_str()), 1) << first.Describe();
    const auto problem = ProblemBody(first);
    EXPECT_NE(problem->GetString("detail").value_or("").find("COMMIT"), std::string::npos)
        << "the failure was not the COMMIT's: " << first.Describe();

    // The retry re-reads the journal row: the committed answer is replayed, an uncommitted
    // request executes now. Either way exactly one effect, the one the answer names.
    const HttpResponse retry = Fetch(serve.ApiPort(), "POST", path, JsonHeaders(key), body);
    ASSERT_EQ(retry.status, 201) << retry.Describe();
    EXPECT_EQ(retry.Header("Idempotent-Replayed"),
              after ? std::optional<std::string>("true") : std::nullopt)
        << retry.Describe();
    const auto v = ParseJson(retry.body);
    ASSERT_TRUE(v) << retry.Describe();
    const std::string id = v->GetString(id_column).value_or("");
    EXPECT_FALSE(id.empty()) << retry.Describe();
    if (entry) {
        EXPECT_EQ(v->GetNumber("seq"), 1.0) << retry.Describe();
        EXPECT_EQ(v->GetNumber("balance"), 42.0) << retry.Describe();
    }
    const SqliteResult effects = SqliteQuery(db, stored);
    ASSERT_TRUE(effects.ok) << effects.error;
    EXPECT_EQ(effects.rows, std::vector<std::string>{id}) << "not exactly the one answered";
    if (after) {
        EXPECT_EQ(before_retry.rows, effects.rows) << "the replay names another effect";
    }
    EXPECT_EQ(SqliteOneRow(db, "SELECT state FROM journal WHERE key = " + SqlQuote(key)),
              "completed");

    const HttpResponse again = Fetch(serve.ApiPort(), "POST", path, JsonHeaders(key), body);
    EXPECT_EQ(again.status, 201) << again.Describe();
    EXPECT_EQ(again.Header("Idempotent-Replayed"), "true") << again.Describe();
    EXPECT_EQ(again.body, retry.body);
}

/// A schema of its own in the shared ROLLSAFE_TEST_PG (nothing is stopped there), and a
/// PgFaultProxy in front of that server. Failures to set up are reported; check Ok().
class ProxiedPostgres {
  public:
    explicit ProxiedPostgres(const std::string& schema) : schema_(schema) {
        const char* base = std::getenv("ROLLSAFE_TEST_PG");
        if (!base || !*base) {
            ADD_FAILURE() << "ROLLSAFE_TEST_PG is not set: run eval \"$(scripts/services.sh "
                             "start)\" (scripts/test.sh does)";
            return;
        }
        base_ = base;
        const auto parts = SplitPgUrl(base_);
        if (!parts || parts->port == 0 ||
            (parts->host != "127.0.0.1" && parts->host != "localhost")) {
            ADD_FAILURE() << "ROLLSAFE_TEST_PG must be postgres://USER@127.0.0.1:PORT/DB, not "
                          << base_;
            return;
        }
        if (!Psql(base_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_))
            return;
        const std::string options = "options=-csearch_path%3D" + schema_;
        direct_ = WithParam(base_, options);
        proxy_ = std::make_unique<PgFaultProxy>(parts->port);
        // No TLS or GSS negotiation: the proxy reads the protocol in the clear.
        proxied_ =
            WithParam(WithParam(parts->before_host + "127.0.0.1:" + std::to_string(proxy_->Port()) +
                                    parts->rest,
                                options),
                      "sslmode=disable&gssencmode=disable");
    }
    ~ProxiedPostgres() {
        proxy_.reset();
        if (!direct_.empty()) Psql(base_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
    }
    ProxiedPostgres(const ProxiedPostgres&) = delete;
    ProxiedPostgres& operator=(const ProxiedPostgres&) = delete;

    bool Ok() const { return proxy_ != nullptr; }
    PgFaultProxy& Proxy() { return *proxy_; }
    /// The schema, reached directly (psql, audit).
    const std::string& Direct() const { return direct_; }
    /// The schema, reached through the proxy (`rollsafe serve --store`).
    const std::string& Proxied() const { return proxied_; }

  private:
    std::string schema_;
    std::string base_;
    std::string direct_;
    std::string proxied_;
    std::unique_ptr<PgFaultProxy> proxy_;
};

/// `rollsafe serve` on `pg` through its proxy, with `extra_args`.
ServeOptions ProxiedServe(const ProxiedPostgres& pg, std::vector<std::string> extra_args) {
    ServeOptions o;
    o.store_url = pg.Proxied();
    o.extra_args = {"--lease", "1s", "--drain-delay", "100ms"};
    o.extra_args.insert(o.extra_args.end(), extra_args.begin(), extra_args.end());
    return o;
}

/// SIGTERM, exit 0, then `rollsafe audit` on the schema exits 0.
void StopAndAudit(ServeProcess& serve, const ProxiedPostgres& pg) {
    ASSERT_TRUE(serve.Signal(SIGTERM));
    const auto code = serve.WaitExit(DeadlineIn(10s));
    ASSERT_TRUE(code) << "serve did not exit";
    EXPECT_EQ(*code, 0);
    const ProcessResult audit = RunAudit(pg.Direct());
    ASSERT_TRUE(audit.exit_code) << "rollsafe audit did not finish";
    EXPECT_EQ(*audit.exit_code, 0) << "rollsafe audit found problems\nstderr:\n" << audit.err;
}

/// Both cuts, for resources or for ledger entries.
void RunCommitCuts(bool entry) {
    ProxiedPostgres pg(std::string("faults_cut_") + (entry ? "e" : "r") +
                       std::to_string(::getpid()));
    ASSERT_TRUE(pg.Ok());
    ServeProcess serve(ProxiedServe(pg, {"--pg-pool", "2"}));
    CutOneCommit(serve, pg.Proxy(), pg.Direct(), entry, Cut::kAfterCommitted);
    CutOneCommit(serve, pg.Proxy(), pg.Direct(), entry, Cut::kBeforeForwarding);
    StopAndAudit(serve, pg);
}

TEST(StoreFaults, ResourceCommitCutOnPostgresIsResolvedFromTheJournalNeverReExecuted) {
    RunCommitCuts(/*entry=*/false);
}

TEST(StoreFaults, LedgerEntryCommitCutOnPostgresIsResolvedFromTheJournalNeverReExecuted) {
    RunCommitCuts(/*entry=*/true);
}

// ---------------------------------------------------------------------------------------------
// A server that stops answering
// ---------------------------------------------------------------------------------------------

/// The store's libpq connect_timeout (postgres_store.cpp), the longest one connect may take.
constexpr auto kConnectTimeout = 5s;

struct Timed {
    HttpResponse response;
    double ms = 0;
};

/// `n` POST /resources at once, keys `<prefix>-0…`, each bounded by kMaxTestWait.
std::vector<Timed> PostConcurrently(std::uint16_t port, const std::string& prefix, int n) {
    std::vector<Timed> out(static_cast<std::size_t>(n));
    {
        std::vector<std::jthread> posts;
        for (int i = 0; i < n; ++i)
            posts.emplace_back([&, i] {
                const auto start = SteadyClock::now();
                Timed& t = out[static_cast<std::size_t>(i)];
                t.response =
                    Fetch(port, "POST", "/resources", JsonHeaders(prefix + "-" + std::to_string(i)),
                          ResourceBody("{}"));
                t.ms = MsBetween(start, SteadyClock::now());
            });
    }
    return out;
}

// The server's host stops answering (packets dropped, not refused): every connect waits the full
// connect_timeout. The first requests wait for one connect to time out; after that the store
// knows, and requests fail at once instead of each queueing behind another connect. Readiness
// is 503 meanwhile and back soon after the server answers again; nothing was written.
TEST(StoreFaults, PostgresSilentRequestsWaitForAtMostOneConnectTimeout) {
    ProxiedPostgres pg("faults_silent_" + std::to_string(::getpid()));
    ASSERT_TRUE(pg.Ok());
    ServeProcess serve(ProxiedServe(pg, {"--pg-pool", "2"}));
    const HttpResponse warm = Fetch(serve.ApiPort(), "POST", "/resources",
                                    JsonHeaders("silent-warm"), ResourceBody("{}"));
    ASSERT_EQ(warm.status, 201) << warm.Describe();

    pg.Proxy().GoSilent();
    const auto first = PostConcurrently(serve.ApiPort(), "silent-a", 4);
    const HttpResponse unready = Fetch(serve.AdminPort(), "GET", "/readyz");
    const auto second = PostConcurrently(serve.ApiPort(), "silent-b", 4);
    pg.Proxy().Answer();
    const auto answering = SteadyClock::now();
    const auto back = PollUntilStatus(serve.AdminPort(), "/readyz", 200, answering + 10s);

    double first_max = 0, second_max = 0;
    for (const auto* wave : {&first, &second}) {
        for (const auto& t : *wave) {
            EXPECT_TRUE(IsProblem(t.response, 503)) << t.response.Describe();
            EXPECT_TRUE(t.response.Header("Retry-After")) << t.response.Describe();
            (wave == &first ? first_max : second_max) =
                std::max(wave == &first ? first_max : second_max, t.ms);
        }
    }
    // Not performance bounds: each is the difference between one connect timeout and several
    // in a row (first wave), or one and none (second).
    EXPECT_LT(first_max, Ms(kConnectTimeout + 2s)) << "a request waited for several connects";
    EXPECT_LT(second_max, Ms(kConnectTimeout) / 2) << "a request waited for a connect again";
    EXPECT_EQ(unready.status, 503) << unready.Describe();
    ASSERT_TRUE(back) << "/readyz not 200 within 10 s of the server answering again";
    const double ready_ms = MsBetween(answering, back->received_at);
    EXPECT_LT(ready_ms, Ms(kReadinessBound)) << "readiness came back late";

    // Nothing was written; the retries now execute, each once.
    EXPECT_EQ(SqliteOneRow(pg.Direct(), "SELECT count(*) FROM resources"), "1");
    for (const auto* wave : {"silent-a", "silent-b"})
        for (int i = 0; i < 4; ++i) {
            const std::string key = std::string(wave) + "-" + std::to_string(i);
            const HttpResponse r =
                Fetch(serve.ApiPort(), "POST", "/resources", JsonHeaders(key), ResourceBody("{}"));
            EXPECT_EQ(r.status, 201) << key << ": " << r.Describe();
            EXPECT_FALSE(r.Header("Idempotent-Replayed")) << key << ": " << r.Describe();
        }
    EXPECT_EQ(SqliteOneRow(pg.Direct(), "SELECT count(*) FROM resources"), "9");
    StopAndAudit(serve, pg);
    std::cerr << "silent server: first wave answered within " << first_max << " ms, second within "
              << second_max << " ms; readiness back " << ready_ms
              << " ms after it answered again\n";
}

}  // namespace
}  // namespace rollsafe::testing
