// The PostgreSQL store: a pool of worker threads, each owning one libpq connection. A read job
// runs alone (REPEATABLE READ READ ONLY, one snapshot for the whole job); the write jobs queued
// together run in one READ COMMITTED transaction, each in its own savepoint, one COMMIT for all
// (Durability::pg_batch). Statements mirror the SQLite store's, every value bound, each
// prepared once per connection.
#include "store/postgres/postgres_store.hpp"
#include "store/select_columns.hpp"

#include <libpq-events.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

namespace rollsafe::store {
namespace {

// 1: journal, resources, ledger. 2: accounts.fence (the highest fencing token seen).
constexpr int kSchemaVersion = 2;
/// Serialization failures and deadlocks re-run the job this many times before kTransient.
constexpr int kMaxAttempts = 4;
/// Most jobs in one transaction: each has a subtransaction, and a backend caches 64
/// subtransaction ids (PGPROC_MAX_CACHED_SUBXIDS); beyond, every snapshot taken while the
/// transaction runs, in any session, must look subtransactions up in pg_subtrans.
constexpr int kMaxBatch = 64;
/// While unhealthy, the store pings PostgreSQL this often (readiness is back within one period
/// of the server accepting connections again).
constexpr std::chrono::milliseconds kHealthRecheck{250};
/// Advisory lock class ids (two-key form): one for migrations, one per ledger account.
constexpr const char* kMigrateLock = "SELECT pg_advisory_xact_lock(72001, 1)";

using Params = std::vector<std::optional<std::string>>;

struct ResultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

/// A libpq connection; reconnects on demand. Used by exactly one thread at a time. With
/// `connect_failed` (shared by a pool), a failed connect sets it, and while it is set Ensure
/// fails at once instead of connecting; whoever reaches the server again clears it.
class PgConn {
  public:
    explicit PgConn(std::string url, std::atomic<bool>* connect_failed = nullptr)
        : url_(std::move(url)), connect_failed_(connect_failed) {}
    ~PgConn() { Close(); }
    PgConn(const PgConn&) = delete;
    PgConn& operator=(const PgConn&) = delete;

    /// Connected and usable, connecting first if needed; false (with `why`) when unreachable.
    bool Ensure(std::string* why) {
        if (c_ && PQstatus(c_) == CONNECTION_OK) return true;
        Close();
        // After a failed connect only the store's health check connects. A host that drops
        // packets makes each connect wait connect_timeout, and every job queued behind one would
        // wait that long again: the jobs fail at once instead (503 + Retry-After).
        if (connect_failed_ && connect_failed_->load(std::memory_order_relaxed)) {
            if (why) *why = "not reconnecting until the health check reaches the server";
            return false;
        }
        // expand_dbname: "dbname" carries the whole URL; connect_timeout bounds an unreachable
        // host (a URL's own connect_timeout wins: later keywords do not override the URL's).
        const char* keys[] = {"connect_timeout", "dbname", "application_name", nullptr};
        const char* vals[] = {"5", url_.c_str(), "rollsafe", nullptr};
        c_ = PQconnectdbParams(keys, vals, /*expand_dbname=*/1);
        if (!c_ || PQstatus(c_) != CONNECTION_OK) {
            if (connect_failed_) connect_failed_->store(true, std::memory_order_relaxed);
            if (why) *why = c_ ? PQerrorMessage(c_) : "out of memory";
            while (why && !why->empty() && (why->back() == '\n' || why->back() == ' '))
                why->pop_back();
            Close();
            return false;
        }
        // NOTICEs ("relation already exists, skipping") are not errors: keep stderr quiet.
        PQsetNoticeProcessor(
            c_, [](void*, const char*) {}, nullptr);
        return true;
    }
    void Close() {
        if (c_) PQfinish(c_);
        c_ = nullptr;
    }
    PGconn* get() { return c_; }
    bool Broken() const { return !c_ || PQstatus(c_) != CONNECTION_OK; }

  private:
    std::string url_;
    std::atomic<bool>* connect_failed_;
    PGconn* c_ = nullptr;
};

bool RetryableState(const std::string& s) { return s == "40001" || s == "40P01"; }

/// Maps a failed statement to the retry decision. `retryable` is set for serialization
/// failures and deadlocks, which re-running the whole job resolves.
Error ToError(PGconn* c, const PGresult* r, const char* sql, bool* retryable) {
    std::string state;
    if (r) {
        const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        state = s ? s : "";
    }
    std::string msg = r ? PQresultErrorMessage(r) : "";
    if (msg.empty() && c) msg = PQerrorMessage(c);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    msg = "PostgreSQL: " + msg + (state.empty() ? "" : " [" + state + "]") + " (in: " + sql + ")";
    if (!c || PQstatus(c) != CONNECTION_OK) return {ErrorKind::kTransient, msg};
    if (RetryableState(state)) {
        if (retryable) *retryable = true;
        return {ErrorKind::kTransient, msg};
    }
    if (state.starts_with("23")) return {ErrorKind::kConflict, msg};  // integrity violations
    // connection, resources, operator intervention (shutdown), system errors
    if (state.starts_with("08") || state.starts_with("53") || state.starts_with("57") ||
        state.starts_with("58"))
        return {ErrorKind::kTransient, msg};
    return {ErrorKind::kPermanent, msg};
}

/// The statements prepared on one connection (sql → name), kept as the PGconn's libpq instance
/// data: it goes with the connection, so a reconnected one starts empty.
struct Prepared {
    std::unordered_map<std::string, std::string> names;
};

int PreparedEvents(PGEventId id, void* info, void*) {
    if (id == PGEVT_CONNDESTROY) {
        PGconn* c = static_cast<PGEventConnDestroy*>(info)->conn;
        delete static_cast<Prepared*>(PQinstanceData(c, PreparedEvents));
    } else if (id == PGEVT_CONNRESET) {
        PGconn* c = static_cast<PGEventConnReset*>(info)->conn;
        if (auto* p = static_cast<Prepared*>(PQinstanceData(c, PreparedEvents))) p->names.clear();
    }
    return 1;
}

/// PQexecParams through a statement prepared once per connection: the server parses, analyses
/// and (once its plan cache settles) plans each statement once, instead of on every execution
/// (a third of its CPU per request, measured). Preparing is not transactional: a statement
/// prepared inside a transaction that rolls back stays prepared.
PGresult* ExecPrepared(PGconn* c, const char* sql, int n, const char* const* values) {
    auto* p = static_cast<Prepared*>(PQinstanceData(c, PreparedEvents));
    if (!p) {
        if (!PQregisterEventProc(c, PreparedEvents, "rollsafe-prepared", nullptr))
            return PQexecParams(c, sql, n, nullptr, values, nullptr, nullptr, 0);
        p = new Prepared;
        if (!PQsetInstanceData(c, PreparedEvents, p)) {
            delete p;
            return PQexecParams(c, sql, n, nullptr, values, nullptr, nullptr, 0);
        }
    }
    auto it = p->names.find(sql);
    if (it == p->names.end()) {
        std::string name = "rollsafe_" + std::to_string(p->names.size() + 1);
        PGresult* r = PQprepare(c, name.c_str(), sql, n, nullptr);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) return r;  // the error, to the caller
        PQclear(r);
        it = p->names.emplace(sql, std::move(name)).first;
    }
    return PQexecPrepared(c, it->second.c_str(), n, values, nullptr, nullptr, 0);
}

/// Runs one statement with its values bound; `prepare` runs it as a prepared statement (the
/// jobs' statements, run again and again on each pooled connection).
Result Run(PGconn* c, const char* sql, const Params& p, bool* retryable, bool prepare = false) {
    std::vector<const char*> values;
    values.reserve(p.size());
    for (const auto& v : p) values.push_back(v ? v->c_str() : nullptr);
    const int n = static_cast<int>(p.size());
    Result r(prepare ? ExecPrepared(c, sql, n, values.data())
                     : PQexecParams(c, sql, n, nullptr, values.data(), nullptr, nullptr, 0));
    const auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw ToError(c, r.get(), sql, retryable);
    return r;
}

std::string N(std::int64_t v) { return std::to_string(v); }
std::string Text(const PGresult* r, int row, int col) {
    return std::string(PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col)));
}
std::int64_t Int(const PGresult* r, int row, int col) {
    return std::strtoll(PQgetvalue(r, row, col), nullptr, 10);
}
int Changed(const PGresult* r) { return std::atoi(PQcmdTuples(const_cast<PGresult*>(r))); }

Operation ReadOp(const PGresult* r, int i) {
    Operation o;
    o.principal = Text(r, i, 0);
    o.key = Text(r, i, 1);
    o.fingerprint = Text(r, i, 2);
    o.state = Text(r, i, 3);
    o.owner = Text(r, i, 4);
    o.lease_until_ms = Int(r, i, 5);
    o.recovery_point = Text(r, i, 6);
    o.recovery_state = Text(r, i, 7);
    o.method = Text(r, i, 8);
    o.path = Text(r, i, 9);
    o.request_body = Text(r, i, 10);
    o.response_status = static_cast<int>(Int(r, i, 11));
    o.response_headers = Text(r, i, 12);
    o.response_body = Text(r, i, 13);
    o.created_at_ms = Int(r, i, 14);
    o.updated_at_ms = Int(r, i, 15);
    return o;
}
Resource ReadResource(const PGresult* r, int i) {
    return Resource{Text(r, i, 0), Text(r, i, 1), Text(r, i, 2),
                    Text(r, i, 3), Text(r, i, 4), Text(r, i, 5)};
}
LedgerEntry ReadEntry(const PGresult* r, int i) {
    LedgerEntry e;
    e.entry_id = Text(r, i, 0);
    e.account = Text(r, i, 1);
    e.amount = Int(r, i, 2);
    e.seq = Int(r, i, 3);
    e.balance = Int(r, i, 4);
    e.memo = Text(r, i, 5);
    e.idempotency_key = Text(r, i, 6);
    e.principal = Text(r, i, 7);
    e.created_at = Text(r, i, 8);
    return e;
}

/// Tx over one connection, inside the transaction the worker opened.
class PgTx final : public Tx {
  public:
    explicit PgTx(PGconn* c) : c_(c) {}
    bool retryable = false;  ///< a statement failed with a serialization failure or deadlock

    std::optional<Operation> GetOperation(const std::string& principal,
                                          const std::string& key) override {
        auto r = Q(kSelectOp " WHERE principal = $1 AND key = $2", {principal, key});
        if (PQntuples(r.get()) == 0) return std::nullopt;
        return ReadOp(r.get(), 0);
    }

    bool InsertOperation(const Operation& op) override {
        auto r =
            Q("INSERT INTO journal(principal, key, fingerprint, state, owner, lease_until_ms,"
              " recovery_point, recovery_state, method, path, request_body, response_status,"
              " response_headers, response_body, created_at_ms, updated_at_ms)"
              " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
              " ON CONFLICT (principal, key) DO NOTHING",
              {op.principal, op.key, op.fingerprint, op.state, op.owner, N(op.lease_until_ms),
               op.recovery_point, op.recovery_state, op.method, op.path, op.request_body,
               N(op.response_status), op.response_headers, op.response_body, N(op.created_at_ms),
               N(op.updated_at_ms)});
        return Changed(r.get()) == 1;
    }

    bool TakeOver(const std::string& principal, const std::string& key,
                  const std::string& new_owner, std::int64_t lease_until_ms,
                  std::int64_t now_ms) override {
        auto r =
            Q("UPDATE journal SET owner = $3, lease_until_ms = $4, updated_at_ms = $5"
              " WHERE principal = $1 AND key = $2 AND state = 'in_progress'"
              " AND lease_until_ms <= $5",
              {principal, key, new_owner, N(lease_until_ms), N(now_ms)});
        return Changed(r.get()) == 1;
    }

    bool SaveProgress(const std::string& principal, const std::string& key,
                      const std::string& owner, const std::string& recovery_point,
                      const std::string& recovery_state, std::int64_t lease_until_ms,
                      std::int64_t now_ms) override {
        auto r = Q(
            "UPDATE journal SET recovery_point = $4, recovery_state = $5, lease_until_ms = $6,"
            " updated_at_ms = $7"
            " WHERE principal = $1 AND key = $2 AND owner = $3 AND state = 'in_progress'",
            {principal, key, owner, recovery_point, recovery_state, N(lease_until_ms), N(now_ms)});
        return Changed(r.get()) == 1;
    }

    bool Renew(const std::string& principal, const std::string& key, const std::string& owner,
               std::int64_t lease_until_ms) override {
        auto r =
            Q("UPDATE journal SET lease_until_ms = $4"
              " WHERE principal = $1 AND key = $2 AND owner = $3 AND state = 'in_progress'",
              {principal, key, owner, N(lease_until_ms)});
        return Changed(r.get()) == 1;
    }

    bool Complete(const std::string& principal, const std::string& key, const std::string& owner,
                  int status, const std::string& headers_json, const std::string& body,
                  std::int64_t now_ms) override {
        auto r =
            Q("UPDATE journal SET state = 'completed', response_status = $4,"
              " response_headers = $5, response_body = $6, updated_at_ms = $7, lease_until_ms = 0,"
              " request_body = ''"
              " WHERE principal = $1 AND key = $2 AND owner = $3 AND state = 'in_progress'",
              {principal, key, owner, N(status), headers_json, body, N(now_ms)});
        return Changed(r.get()) == 1;
    }

    bool Release(const std::string& principal, const std::string& key, const std::string& owner,
                 std::int64_t now_ms) override {
        auto r =
            Q("UPDATE journal SET owner = '', lease_until_ms = $4, updated_at_ms = $4"
              " WHERE principal = $1 AND key = $2 AND owner = $3 AND state = 'in_progress'",
              {principal, key, owner, N(now_ms)});
        return Changed(r.get()) == 1;
    }

    std::vector<Operation> ExpiredOperations(std::int64_t now_ms, int limit) override {
        auto r = Q(kSelectOp
                   " WHERE state = 'in_progress' AND lease_until_ms <= $1"
                   " ORDER BY lease_until_ms LIMIT $2",
                   {N(now_ms), N(limit)});
        return Ops(r.get());
    }

    int DeleteCompletedBefore(std::int64_t before_ms, int limit) override {
        auto r =
            Q("DELETE FROM journal WHERE (principal, key) IN (SELECT principal, key FROM journal"
              " WHERE state = 'completed' AND updated_at_ms < $1 LIMIT $2)",
              {N(before_ms), N(limit)});
        return Changed(r.get());
    }

    std::vector<Operation> AllOperations() override {
        // COLLATE "C": the same byte order as SQLite's, whatever the database's locale
        auto r =
            Q(kSelectOp " ORDER BY created_at_ms, principal COLLATE \"C\", key COLLATE \"C\"", {});
        return Ops(r.get());
    }

    void InsertResource(const Resource& res) override {
        Q("INSERT INTO resources(id, data, created_at, idempotency_key, owner, principal)"
          " VALUES ($1, $2, $3, $4, $5, $6)",
          {res.id, res.data_json, res.created_at,
           res.idempotency_key.empty() ? std::nullopt
                                       : std::optional<std::string>(res.idempotency_key),
           res.owner, res.principal});
    }

    std::optional<Resource> GetResource(const std::string& id) override {
        auto r = Q(kSelectResource " WHERE id = $1", {id});
        if (PQntuples(r.get()) == 0) return std::nullopt;
        return ReadResource(r.get(), 0);
    }

    std::vector<Resource> AllResources() override {
        auto r = Q(kSelectResource " ORDER BY id COLLATE \"C\"", {});
        std::vector<Resource> out;
        for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(ReadResource(r.get(), i));
        return out;
    }

    bool AppendEntry(LedgerEntry& e, std::int64_t fence) override {
        std::int64_t balance = 0, last_seq = 0, highest = 0;
        if (fence == 0) {
            // Entries of one account apply one at a time across every replica: the lock is
            // held to the end of this transaction, and under READ COMMITTED the next statement
            // sees the last committed seq, so seq stays gap-free and unique.
            Q("SELECT pg_advisory_xact_lock(72002, hashtext($1))", {e.account});
            auto r =
                Q("SELECT balance, last_seq, fence FROM accounts WHERE account = $1", {e.account});
            if (PQntuples(r.get()) > 0) {
                balance = Int(r.get(), 0, 0);
                last_seq = Int(r.get(), 0, 1);
                highest = Int(r.get(), 0, 2);
            }
        } else {
            // The fenced write is the account's serialisation point: the UPDATE row-locks the
            // account until commit, and READ COMMITTED re-checks `fence < $2` against the
            // latest committed version, so a writer that waited behind a newer (or the same)
            // token's commit is refused instead of writing after it. The row must exist to be
            // locked.
            Q("INSERT INTO accounts(account, balance, last_seq, fence) VALUES ($1, 0, 0, 0)"
              " ON CONFLICT (account) DO NOTHING",
              {e.account});
            auto r =
                Q("UPDATE accounts SET fence = $2 WHERE account = $1 AND fence < $2"
                  " RETURNING balance, last_seq",
                  {e.account, N(fence)});
            if (PQntuples(r.get()) == 0) {
                auto f = Q("SELECT fence FROM accounts WHERE account = $1", {e.account});
                throw FencedError(e.account, fence, PQntuples(f.get()) ? Int(f.get(), 0, 0) : 0);
            }
            balance = Int(r.get(), 0, 0);
            last_seq = Int(r.get(), 0, 1);
            highest = fence;
        }
        std::int64_t next = 0;
        if (__builtin_add_overflow(balance, e.amount, &next)) return false;
        e.balance = next;
        e.seq = last_seq + 1;
        Q("INSERT INTO accounts(account, balance, last_seq, fence) VALUES ($1, $2, $3, $4)"
          " ON CONFLICT (account) DO UPDATE SET balance = excluded.balance,"
          " last_seq = excluded.last_seq, fence = excluded.fence",
          {e.account, N(e.balance), N(e.seq), N(std::max(fence, highest))});
        Q("INSERT INTO entries(account, seq, entry_id, amount, balance, memo, idempotency_key,"
          " principal, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
          {e.account, N(e.seq), e.entry_id, N(e.amount), N(e.balance), e.memo, e.idempotency_key,
           e.principal, e.created_at});
        return true;
    }

    std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> GetAccount(
        const std::string& account) override {
        auto r = Q("SELECT balance FROM accounts WHERE account = $1", {account});
        if (PQntuples(r.get()) == 0) return std::nullopt;
        std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> out;
        out.emplace(Int(r.get(), 0, 0), std::vector<LedgerEntry>{});
        auto q = Q(kSelectEntry " WHERE account = $1 ORDER BY seq", {account});
        for (int i = 0; i < PQntuples(q.get()); ++i) out->second.push_back(ReadEntry(q.get(), i));
        return out;
    }

    std::vector<std::pair<std::string, std::int64_t>> AllAccounts() override {
        auto r = Q("SELECT account, balance FROM accounts ORDER BY account COLLATE \"C\"", {});
        std::vector<std::pair<std::string, std::int64_t>> out;
        for (int i = 0; i < PQntuples(r.get()); ++i)
            out.emplace_back(Text(r.get(), i, 0), Int(r.get(), i, 1));
        return out;
    }

    std::vector<LedgerEntry> AllEntries() override {
        auto r = Q(kSelectEntry " ORDER BY account COLLATE \"C\", seq", {});
        std::vector<LedgerEntry> out;
        for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(ReadEntry(r.get(), i));
        return out;
    }

  private:
    Result Q(const char* sql, const Params& p) {
        return Run(c_, sql, p, &retryable, /*prepare=*/true);
    }
    static std::vector<Operation> Ops(const PGresult* r) {
        std::vector<Operation> out;
        for (int i = 0; i < PQntuples(r); ++i) out.push_back(ReadOp(r, i));
        return out;
    }
    PGconn* c_;
};

#undef kSelectOp
#undef kSelectResource
#undef kSelectEntry

void Exec(PGconn* c, const char* sql) { Run(c, sql, {}, nullptr); }

/// Runs `;`-separated statements without parameters in one round trip (the simple query
/// protocol: "RELEASE SAVEPOINT job; SAVEPOINT job"). Stops at the first that fails and throws
/// for it, like Run.
void Script(PGconn* c, const char* sql) {
    Result r(PQexec(c, sql));
    const auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw ToError(c, r.get(), sql, nullptr);
}

/// Version of the schema in this database; 0 when it holds none.
int SchemaVersion(PGconn* c) {
    auto r = Run(c, "SELECT to_regclass('rollsafe_schema') IS NOT NULL", {}, nullptr);
    if (Text(r.get(), 0, 0) != "t") return 0;
    auto v = Run(c, "SELECT max(version) FROM rollsafe_schema", {}, nullptr);
    return PQgetisnull(v.get(), 0, 0) ? 0 : static_cast<int>(Int(v.get(), 0, 0));
}

/// Creates or migrates the schema. The transaction-scoped advisory lock serialises replicas
/// that start at the same moment: the first migrates, the others find the version current.
void Migrate(PGconn* c) {
    Exec(c, "BEGIN");
    try {
        Exec(c, kMigrateLock);
        const int version = SchemaVersion(c);
        if (version > kSchemaVersion)
            throw std::runtime_error("database schema version " + std::to_string(version) +
                                     " is newer than this binary's " +
                                     std::to_string(kSchemaVersion));
        if (version < 1) {
            Exec(c, "CREATE TABLE IF NOT EXISTS rollsafe_schema (version INTEGER NOT NULL)");
            Exec(c,
                 "CREATE TABLE IF NOT EXISTS resources ("
                 " id TEXT PRIMARY KEY,"
                 " data TEXT NOT NULL,"
                 " created_at TEXT NOT NULL,"
                 " idempotency_key TEXT,"
                 " owner TEXT NOT NULL DEFAULT '',"
                 " principal TEXT NOT NULL DEFAULT '')");
            Exec(
                c,
                "CREATE TABLE IF NOT EXISTS journal ("
                " principal TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
                " state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),"
                " owner TEXT NOT NULL, lease_until_ms BIGINT NOT NULL,"
                " recovery_point TEXT NOT NULL DEFAULT '', recovery_state TEXT NOT NULL DEFAULT '',"
                " method TEXT NOT NULL, path TEXT NOT NULL, request_body TEXT NOT NULL,"
                " response_status INTEGER NOT NULL DEFAULT 0,"
                " response_headers TEXT NOT NULL DEFAULT '',"
                " response_body TEXT NOT NULL DEFAULT '',"
                " created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,"
                " PRIMARY KEY (principal, key))");
            Exec(c,
                 "CREATE INDEX IF NOT EXISTS journal_expired ON journal(lease_until_ms)"
                 " WHERE state = 'in_progress'");
            Exec(c,
                 "CREATE INDEX IF NOT EXISTS journal_retention ON journal(updated_at_ms)"
                 " WHERE state = 'completed'");
            Exec(c,
                 "CREATE TABLE IF NOT EXISTS accounts ("
                 " account TEXT PRIMARY KEY, balance BIGINT NOT NULL, last_seq BIGINT NOT NULL)");
            Exec(c,
                 "CREATE TABLE IF NOT EXISTS entries ("
                 " account TEXT NOT NULL, seq BIGINT NOT NULL, entry_id TEXT NOT NULL UNIQUE,"
                 " amount BIGINT NOT NULL, balance BIGINT NOT NULL, memo TEXT NOT NULL,"
                 " idempotency_key TEXT NOT NULL, principal TEXT NOT NULL,"
                 " created_at TEXT NOT NULL, PRIMARY KEY (account, seq))");
        }
        if (version < 2) Exec(c, "ALTER TABLE accounts ADD COLUMN fence BIGINT NOT NULL DEFAULT 0");
        if (version < kSchemaVersion) {
            Exec(c, "DELETE FROM rollsafe_schema");
            Run(c, "INSERT INTO rollsafe_schema(version) VALUES ($1)", {N(kSchemaVersion)},
                nullptr);
        }
        Exec(c, "COMMIT");
    } catch (...) {
        PQclear(PQexec(c, "ROLLBACK"));
        throw;
    }
}

class PostgresStore final : public Store {
  public:
    PostgresStore(const std::string& url, const Durability& d)
        : read_only_(d.read_only), max_batch_(static_cast<std::size_t>(d.pg_batch)) {
        if (d.pg_pool < 1 || d.pg_pool > 1000)
            throw std::invalid_argument("pg_pool must be 1..1000, not " +
                                        std::to_string(d.pg_pool));
        if (d.pg_batch < 1 || d.pg_batch > kMaxBatch)
            throw std::invalid_argument("pg_batch must be 1.." + std::to_string(kMaxBatch) +
                                        ", not " + std::to_string(d.pg_batch));
        auto first = std::make_unique<PgConn>(url, &connect_failed_);
        std::string why;
        if (!first->Ensure(&why)) throw std::runtime_error("cannot connect to PostgreSQL: " + why);
        try {
            if (read_only_) {
                const int v = SchemaVersion(first->get());
                if (v != kSchemaVersion)
                    throw std::runtime_error(
                        "the database is not a rollsafe store of schema version " +
                        std::to_string(kSchemaVersion) + " (found " + std::to_string(v) + ")");
            } else {
                Migrate(first->get());
            }
        } catch (const Error& e) {
            throw std::runtime_error(e.what());
        }
        conns_.push_back(std::move(first));
        for (int i = 1; i < d.pg_pool; ++i)
            conns_.push_back(std::make_unique<PgConn>(url, &connect_failed_));
        for (int i = 0; i < d.pg_pool; ++i)
            threads_.emplace_back([this, i] { Loop(*conns_[static_cast<std::size_t>(i)]); });
        health_thread_ = std::thread([this, url] { HealthLoop(url); });
    }
    ~PostgresStore() override { Shutdown(); }

    void Write(Job job, std::function<void(Status)> done) override {
        if (read_only_) {
            done({ErrorKind::kPermanent, "this store was opened read-only"});
            return;
        }
        Submit({std::move(job), std::move(done), false});
    }
    void Read(Job job, std::function<void(Status)> done) override {
        Submit({std::move(job), std::move(done), true});
    }
    bool Healthy() const override { return healthy_.load(std::memory_order_relaxed); }

    void Shutdown() override {
        std::call_once(stopped_, [this] {
            {
                std::lock_guard lock(health_mu_);
                health_stop_ = true;
            }
            health_cv_.notify_all();
            if (health_thread_.joinable()) health_thread_.join();
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
    /// While unhealthy or after a failed connect, every kHealthRecheck: connect, `SELECT 1`,
    /// disconnect; success turns healthy_ back on and lets the workers reconnect. Its own
    /// connection, because the pool's do not reconnect after a failed connect, and because
    /// with readiness false a gateway sends no traffic whose jobs could find the server back.
    /// Runs on its own thread (a connect may block up to connect_timeout), never an I/O
    /// thread; Shutdown() stops it first.
    void HealthLoop(const std::string& url) {
        PgConn conn(url);
        std::unique_lock lock(health_mu_);
        while (!health_cv_.wait_for(lock, kHealthRecheck, [this] { return health_stop_; })) {
            if (Healthy() && !connect_failed_.load(std::memory_order_relaxed)) continue;
            lock.unlock();
            if (conn.Ensure(nullptr)) {
                Result r(PQexec(conn.get(), "SELECT 1"));
                if (r && PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
                    connect_failed_.store(false, std::memory_order_relaxed);
                    healthy_.store(true, std::memory_order_relaxed);
                }
            }
            conn.Close();
            lock.lock();
        }
    }

    struct Item {
        Job job;
        std::function<void(Status)> done;
        bool read = false;
    };

    void Submit(Item item) {
        {
            std::lock_guard lock(mu_);
            if (!stopping_) {
                queue_.push_back(std::move(item));
                cv_.notify_one();
                return;
            }
        }
        item.done({ErrorKind::kTransient, "store is shut down"});
    }

    void Loop(PgConn& conn) {
        std::vector<Item> batch;
        for (;;) {
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping and drained
                TakeBatch(batch);
            }
            RunJobs(conn, batch);
            batch.clear();
        }
    }

    /// With mu_ held: moves the next job out of the queue and, when it is a write, up to
    /// max_batch_ - 1 more writes queued behind it, which will share its transaction. Reads
    /// stay queued, in order, for the next free worker.
    void TakeBatch(std::vector<Item>& batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
        if (batch.front().read) return;
        for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
            if (it->read) {
                ++it;
                continue;
            }
            batch.push_back(std::move(*it));
            it = queue_.erase(it);
        }
    }

    /// What one attempt made of one job.
    struct Outcome {
        Status st;
        /// Nothing of it was committed and running it again may succeed: it was rolled back
        /// on a serialization failure or deadlock, or the connection was found dead at BEGIN.
        bool retry = false;
    };

    /// Runs `batch` (one read, or up to max_batch_ writes) to the end: every callback runs
    /// after the commit (or rollback) that decided its job. A job rolled back on a
    /// serialization failure or deadlock runs again in a later transaction, after a short
    /// pause, with the others that did (kMaxAttempts in all, then kTransient); the jobs that
    /// committed beside it have had their callbacks by then.
    void RunJobs(PgConn& conn, std::vector<Item>& batch) {
        std::vector<Item*> todo;
        for (auto& item : batch) todo.push_back(&item);
        std::vector<Outcome> out;
        for (int attempt = 0;; ++attempt) {
            out.assign(todo.size(), Outcome{});
            Attempt(conn, todo, out);
            std::vector<Item*> again;
            for (std::size_t i = 0; i < todo.size(); ++i) {
                if (out[i].retry && attempt + 1 < kMaxAttempts)
                    again.push_back(todo[i]);
                else
                    todo[i]->done(std::move(out[i].st));
            }
            if (again.empty()) return;
            todo = std::move(again);
            std::this_thread::sleep_for(std::chrono::milliseconds(1 << attempt));
        }
    }

    static Status Invoke(Item& item, Tx& tx) {
        try {
            return item.job(tx);
        } catch (const Error& e) {
            return {e.kind, e.what()};
        } catch (const std::exception& e) {
            return {ErrorKind::kPermanent, e.what()};
        }
    }

    /// The connection died before COMMIT was sent: nothing was committed. Every job that had
    /// not failed on its own (or had not run yet) fails kTransient.
    void LostBeforeCommit(PgConn& conn, std::vector<Outcome>& out, const Status& seen) {
        healthy_.store(false, std::memory_order_relaxed);
        conn.Close();
        const std::string msg = "PostgreSQL connection lost before commit" +
                                (seen.message.empty() ? std::string() : ": " + seen.message);
        for (auto& o : out)
            if (o.st.ok()) o = {{ErrorKind::kTransient, msg}, false};
    }

    /// One transaction over `jobs`, filling `out` (same order). A read runs alone in REPEATABLE
    /// READ READ ONLY and is rolled back. Writes: one job runs as `BEGIN … COMMIT`; several
    /// each run inside `SAVEPOINT job`, released when the job succeeded ("RELEASE SAVEPOINT
    /// job; SAVEPOINT job": one round trip) and rolled back to when it failed, so a failing
    /// job takes back exactly its own statements; then one COMMIT for all of them.
    void Attempt(PgConn& conn, const std::vector<Item*>& jobs, std::vector<Outcome>& out) {
        std::string why;
        if (!conn.Ensure(&why)) {
            healthy_.store(false, std::memory_order_relaxed);
            for (auto& o : out) o = {{ErrorKind::kTransient, "PostgreSQL unreachable: " + why}};
            return;
        }
        PGconn* c = conn.get();
        const bool read = jobs.front()->read;
        const bool savepoints = !read && jobs.size() > 1;
        try {
            Script(c, read         ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                      : savepoints ? "BEGIN; SAVEPOINT job"
                                   : "BEGIN");
        } catch (const Error& e) {
            // An idle pooled connection whose server went away (a restart) fails here, before
            // any job ran: reconnect and try again rather than fail the requests.
            conn.Close();
            const auto kind = e.kind == ErrorKind::kPermanent ? ErrorKind::kTransient : e.kind;
            for (auto& o : out) o = {{kind, e.what()}, true};
            return;
        }
        bool any_ok = false;
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            PgTx tx(c);
            Status st = Invoke(*jobs[i], tx);
            if (conn.Broken()) return LostBeforeCommit(conn, out, st);
            // A job that caught a failed statement's error and returned ok would otherwise
            // commit an aborted (sub)transaction: PostgreSQL turns that COMMIT into a rollback.
            if (st.ok() && PQtransactionStatus(c) == PQTRANS_INERROR)
                st = {ErrorKind::kPermanent,
                      "PostgreSQL: a statement of the job failed and the job did not fail"};
            out[i] = {st, !st.ok() && tx.retryable};
            any_ok = any_ok || st.ok();
            if (!savepoints) break;
            const char* next = !st.ok()              ? "ROLLBACK TO SAVEPOINT job"
                               : i + 1 < jobs.size() ? "RELEASE SAVEPOINT job; SAVEPOINT job"
                                                     : nullptr;  // COMMIT releases it
            if (!next) continue;
            try {
                Script(c, next);
            } catch (const Error& e) {
                if (conn.Broken()) return LostBeforeCommit(conn, out, {e.kind, e.what()});
                // Not seen short of a server bug. Nothing is committed: give the transaction
                // up, and let every job that had not failed on its own run again.
                PQclear(PQexec(c, "ROLLBACK"));
                for (std::size_t j = 0; j < out.size(); ++j)
                    if (j > i || out[j].st.ok()) out[j] = {{e.kind, e.what()}, true};
                return;
            }
        }
        if (read || !any_ok) {
            PQclear(PQexec(c, "ROLLBACK"));
            if (conn.Broken()) {  // nothing to lose: reconnect for the next job
                healthy_.store(false, std::memory_order_relaxed);
                conn.Close();
                return;
            }
            healthy_.store(true, std::memory_order_relaxed);
            return;
        }
        Result r(PQexec(c, "COMMIT"));
        const auto rs = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
        // An aborted transaction "commits" as ROLLBACK: only the tag COMMIT means committed.
        if (rs != PGRES_COMMAND_OK || conn.Broken() ||
            std::string_view(PQcmdStatus(r.get())) != "COMMIT") {
            bool retryable = false;
            Error e = rs == PGRES_COMMAND_OK && !conn.Broken()
                          ? Error{ErrorKind::kPermanent, "PostgreSQL: COMMIT rolled back"}
                          : ToError(c, r.get(), "COMMIT", &retryable);
            if (conn.Broken()) {
                // The COMMIT may have reached the server: the outcome is unknown.
                healthy_.store(false, std::memory_order_relaxed);
                conn.Close();
                for (auto& o : out)
                    if (o.st.ok()) o = {{ErrorKind::kInDoubt, e.what()}, false};
                return;
            }
            PQclear(PQexec(c, "ROLLBACK"));
            for (auto& o : out)
                if (o.st.ok()) o = {{e.kind, e.what()}, retryable};
            return;
        }
        healthy_.store(true, std::memory_order_relaxed);
    }

    bool read_only_;
    std::size_t max_batch_;  ///< most writes in one transaction (Durability::pg_batch)
    std::vector<std::unique_ptr<PgConn>> conns_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::once_flag stopped_;
    std::atomic<bool> healthy_{true};
    std::mutex health_mu_;
    std::condition_variable health_cv_;
    bool health_stop_ = false;  ///< guarded by health_mu_
    /// A pool connect failed: the workers do not reconnect until the health check did.
    std::atomic<bool> connect_failed_{false};
    std::thread health_thread_;
};

}  // namespace

bool IsPostgresUrl(std::string_view url) {
    return url.starts_with("postgres://") || url.starts_with("postgresql://");
}

std::unique_ptr<Store> OpenPostgresStore(const std::string& url, const Durability& durability) {
    return std::make_unique<PostgresStore>(url, durability);
}

}  // namespace rollsafe::store
