#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rollsafe/store/store.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/select_columns.hpp"

namespace rollsafe::store {
namespace {

// 1: journal, resources, ledger. 2: accounts.fence (the highest fencing token seen).
constexpr int kSchemaVersion = 2;
/// How long a connection waits for another's lock: 20,000 polls of 250 us = 5 s.
constexpr int kBusyTries = 20'000;

/// One connection with a cache of prepared statements. Used by exactly one thread.
class Connection {
  public:
    Connection(const std::string& path, const Durability& d) {
        const int flags = d.read_only
                              ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
                              : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
            std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open SQLite database '" + path + "': " + msg);
        }
        try {
            // Several processes share the file; wait for each other's write locks instead of
            // failing at once. SQLite's own busy timeout sleeps up to 100 ms between tries, and
            // a replica committing back to back leaves gaps of microseconds: the waiter starved
            // for its whole timeout. Polling every 250 us catches those gaps.
            sqlite3_busy_handler(
                db_,
                [](void*, int tries) -> int {
                    if (tries >= kBusyTries) return 0;
                    std::this_thread::sleep_for(std::chrono::microseconds(250));
                    return 1;
                },
                nullptr);
            if (d.read_only) {
                CheckVersion(path);
                return;
            }
            EnableWal(path);
            Exec("PRAGMA synchronous=" + d.synchronous);
            Exec("PRAGMA foreign_keys=ON");
            // Checkpoints run on their own thread (Checkpointer), never inside a commit: an
            // automatic checkpoint in the writer stalled every request queued behind it.
            Exec("PRAGMA wal_autocheckpoint=0");
        } catch (...) {
            sqlite3_close(db_);  // the destructor does not run for a constructor that throws
            throw;
        }
    }
    ~Connection() {
        for (auto& [_, s] : stmts_) sqlite3_finalize(s);
        sqlite3_close(db_);
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    sqlite3* db() { return db_; }

    /// A read-only open must find this binary's schema: anything else is not a rollsafe store
    /// (or one this binary cannot read).
    void CheckVersion(const std::string& path) {
        sqlite3_stmt* s = nullptr;
        int version = -1;
        if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        if (version != kSchemaVersion)
            throw std::runtime_error("'" + path + "' is not a rollsafe store of schema version " +
                                     std::to_string(kSchemaVersion) + " (found " +
                                     std::to_string(version) + ")");
    }

    // Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at
    // once (without the busy handler) when another process is doing the same: retry, bounded.
    void EnableWal(const std::string& path) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
            sqlite3_stmt* s = nullptr;
            int rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &s, nullptr);
            std::string mode;
            if (rc == SQLITE_OK) {
                rc = sqlite3_step(s);
                if (rc == SQLITE_ROW) {
                    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
                    mode = t ? t : "";
                    rc = SQLITE_OK;
                }
            }
            sqlite3_finalize(s);
            if (rc == SQLITE_OK) {
                if (mode != "wal")
                    throw std::runtime_error("cannot switch SQLite database '" + path +
                                             "' to WAL mode (journal mode is '" + mode + "')");
                return;
            }
            if ((rc & 0xFF) != SQLITE_BUSY && (rc & 0xFF) != SQLITE_LOCKED)
                throw std::runtime_error("SQLite: " + std::string(sqlite3_errmsg(db_)) +
                                         " (in: PRAGMA journal_mode=WAL)");
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("SQLite database '" + path +
                                         "' stayed locked for 10 s while enabling WAL");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    void Exec(const std::string& sql) {
        char* err = nullptr;
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
            std::string msg = err ? err : sqlite3_errmsg(db_);
            sqlite3_free(err);
            throw std::runtime_error("SQLite: " + msg + " (in: " + sql + ")");
        }
    }

    /// Returns a reset statement with bindings cleared.
    sqlite3_stmt* Prepare(const char* sql) {
        auto it = stmts_.find(sql);
        if (it == stmts_.end()) {
            sqlite3_stmt* s = nullptr;
            if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
                SQLITE_OK)
                throw std::runtime_error(std::string("SQLite prepare: ") + sqlite3_errmsg(db_));
            it = stmts_.emplace(sql, s).first;
        }
        sqlite3_reset(it->second);
        sqlite3_clear_bindings(it->second);
        return it->second;
    }

  private:
    sqlite3* db_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> stmts_;
};

Status FromSqlite(int rc, sqlite3* db) {
    const int primary = rc & 0xFF;
    std::string msg = sqlite3_errstr(rc);
    if (db) msg += std::string(": ") + sqlite3_errmsg(db);
    switch (primary) {
        case SQLITE_CONSTRAINT:
            return {ErrorKind::kConflict, msg};
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_CANTOPEN:
        case SQLITE_PROTOCOL:
            return {ErrorKind::kTransient, msg};
        default:
            return {ErrorKind::kPermanent, msg};
    }
}

void Bind(sqlite3_stmt* s, int i, const std::string& v) {
    // SQLITE_STATIC: every statement is stepped and reset while `v` is alive, and Prepare()
    // clears the bindings before the next use, so SQLite need not copy each value.
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string Text(sqlite3_stmt* s, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
    return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
}

/// Tx over one connection. Every statement is prepared once and cached; every value is bound.
class SqliteTx final : public Tx {
  public:
    explicit SqliteTx(Connection& c) : c_(c) {}

    std::optional<Operation> GetOperation(const std::string& principal,
                                          const std::string& key) override {
        sqlite3_stmt* s = c_.Prepare(kSelectOp " WHERE principal = ?1 AND key = ?2");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        std::optional<Operation> out;
        if (Step(s)) out = ReadOp(s);
        sqlite3_reset(s);
        return out;
    }

    bool InsertOperation(const Operation& op) override {
        sqlite3_stmt* s = c_.Prepare(
            "INSERT INTO journal(principal, key, fingerprint, state, owner, lease_until_ms,"
            " recovery_point, recovery_state, method, path, request_body, response_status,"
            " response_headers, response_body, created_at_ms, updated_at_ms)"
            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            " ON CONFLICT(principal, key) DO NOTHING");
        Bind(s, 1, op.principal);
        Bind(s, 2, op.key);
        Bind(s, 3, op.fingerprint);
        Bind(s, 4, op.state);
        Bind(s, 5, op.owner);
        sqlite3_bind_int64(s, 6, op.lease_until_ms);
        Bind(s, 7, op.recovery_point);
        Bind(s, 8, op.recovery_state);
        Bind(s, 9, op.method);
        Bind(s, 10, op.path);
        Bind(s, 11, op.request_body);
        sqlite3_bind_int(s, 12, op.response_status);
        Bind(s, 13, op.response_headers);
        Bind(s, 14, op.response_body);
        sqlite3_bind_int64(s, 15, op.created_at_ms);
        sqlite3_bind_int64(s, 16, op.updated_at_ms);
        return Change(s) == 1;
    }

    bool TakeOver(const std::string& principal, const std::string& key,
                  const std::string& new_owner, std::int64_t lease_until_ms,
                  std::int64_t now_ms) override {
        sqlite3_stmt* s = c_.Prepare(
            "UPDATE journal SET owner = ?3, lease_until_ms = ?4, updated_at_ms = ?5"
            " WHERE principal = ?1 AND key = ?2 AND state = 'in_progress'"
            " AND lease_until_ms <= ?5");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        Bind(s, 3, new_owner);
        sqlite3_bind_int64(s, 4, lease_until_ms);
        sqlite3_bind_int64(s, 5, now_ms);
        return Change(s) == 1;
    }

    bool SaveProgress(const std::string& principal, const std::string& key,
                      const std::string& owner, const std::string& recovery_point,
                      const std::string& recovery_state, std::int64_t lease_until_ms,
                      std::int64_t now_ms) override {
        sqlite3_stmt* s = c_.Prepare(
            "UPDATE journal SET recovery_point = ?4, recovery_state = ?5, lease_until_ms = ?6,"
            " updated_at_ms = ?7"
            " WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND state = 'in_progress'");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        Bind(s, 3, owner);
        Bind(s, 4, recovery_point);
        Bind(s, 5, recovery_state);
        sqlite3_bind_int64(s, 6, lease_until_ms);
        sqlite3_bind_int64(s, 7, now_ms);
        return Change(s) == 1;
    }

    bool Renew(const std::string& principal, const std::string& key, const std::string& owner,
               std::int64_t lease_until_ms) override {
        sqlite3_stmt* s = c_.Prepare(
            "UPDATE journal SET lease_until_ms = ?4"
            " WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND state = 'in_progress'");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        Bind(s, 3, owner);
        sqlite3_bind_int64(s, 4, lease_until_ms);
        return Change(s) == 1;
    }

    bool Complete(const std::string& principal, const std::string& key, const std::string& owner,
                  int status, const std::string& headers_json, const std::string& body,
                  std::int64_t now_ms) override {
        sqlite3_stmt* s = c_.Prepare(
            "UPDATE journal SET state = 'completed', response_status = ?4,"
            " response_headers = ?5, response_body = ?6, updated_at_ms = ?7, lease_until_ms = 0,"
            " request_body = ''"
            " WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND state = 'in_progress'");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        Bind(s, 3, owner);
        sqlite3_bind_int(s, 4, status);
        Bind(s, 5, headers_json);
        Bind(s, 6, body);
        sqlite3_bind_int64(s, 7, now_ms);
        return Change(s) == 1;
    }

    bool Release(const std::string& principal, const std::string& key, const std::string& owner,
                 std::int64_t now_ms) override {
        sqlite3_stmt* s = c_.Prepare(
            "UPDATE journal SET owner = '', lease_until_ms = ?4, updated_at_ms = ?4"
            " WHERE principal = ?1 AND key = ?2 AND owner = ?3 AND state = 'in_progress'");
        Bind(s, 1, principal);
        Bind(s, 2, key);
        Bind(s, 3, owner);
        sqlite3_bind_int64(s, 4, now_ms);
        return Change(s) == 1;
    }

    std::vector<Operation> ExpiredOperations(std::int64_t now_ms, int limit) override {
        sqlite3_stmt* s = c_.Prepare(kSelectOp
                                     " WHERE state = 'in_progress' AND lease_until_ms <= ?1"
                                     " ORDER BY lease_until_ms LIMIT ?2");
        sqlite3_bind_int64(s, 1, now_ms);
        sqlite3_bind_int(s, 2, limit);
        std::vector<Operation> out;
        while (Step(s)) out.push_back(ReadOp(s));
        sqlite3_reset(s);
        return out;
    }

    int DeleteCompletedBefore(std::int64_t before_ms, int limit) override {
        sqlite3_stmt* s = c_.Prepare(
            "DELETE FROM journal WHERE (principal, key) IN (SELECT principal, key FROM journal"
            " WHERE state = 'completed' AND updated_at_ms < ?1 LIMIT ?2)");
        sqlite3_bind_int64(s, 1, before_ms);
        sqlite3_bind_int(s, 2, limit);
        return Change(s);
    }

    std::vector<Operation> AllOperations() override {
        sqlite3_stmt* s = c_.Prepare(kSelectOp " ORDER BY created_at_ms, principal, key");
        std::vector<Operation> out;
        while (Step(s)) out.push_back(ReadOp(s));
        sqlite3_reset(s);
        return out;
    }

    void InsertResource(const Resource& r) override {
        sqlite3_stmt* s = c_.Prepare(
            "INSERT INTO resources(id, data, created_at, idempotency_key, owner, principal) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
        Bind(s, 1, r.id);
        Bind(s, 2, r.data_json);
        Bind(s, 3, r.created_at);
        if (r.idempotency_key.empty())
            sqlite3_bind_null(s, 4);
        else
            Bind(s, 4, r.idempotency_key);
        Bind(s, 5, r.owner);
        Bind(s, 6, r.principal);
        Change(s);
    }

    std::optional<Resource> GetResource(const std::string& id) override {
        sqlite3_stmt* s = c_.Prepare(kSelectResource " WHERE id = ?1");
        Bind(s, 1, id);
        std::optional<Resource> out;
        if (Step(s)) out = ReadResource(s);
        sqlite3_reset(s);
        return out;
    }

    std::vector<Resource> AllResources() override {
        sqlite3_stmt* s = c_.Prepare(kSelectResource " ORDER BY id");
        std::vector<Resource> out;
        while (Step(s)) out.push_back(ReadResource(s));
        sqlite3_reset(s);
        return out;
    }

    bool AppendEntry(LedgerEntry& e, std::int64_t fence) override {
        std::int64_t balance = 0, last_seq = 0, highest = 0;
        {
            sqlite3_stmt* s =
                c_.Prepare("SELECT balance, last_seq, fence FROM accounts WHERE account = ?1");
            Bind(s, 1, e.account);
            if (Step(s)) {
                balance = sqlite3_column_int64(s, 0);
                last_seq = sqlite3_column_int64(s, 1);
                highest = sqlite3_column_int64(s, 2);
            }
            sqlite3_reset(s);
        }
        // Strictly higher: a token writes once, so two holders that were handed the same token
        // (a lock service that lost its counter, then raised it) cannot both write.
        if (fence > 0 && fence <= highest) throw FencedError(e.account, fence, highest);
        std::int64_t next = 0;
        if (__builtin_add_overflow(balance, e.amount, &next)) return false;
        e.balance = next;
        e.seq = last_seq + 1;
        {
            sqlite3_stmt* s = c_.Prepare(
                "INSERT INTO accounts(account, balance, last_seq, fence) VALUES (?1, ?2, ?3, ?4)"
                " ON CONFLICT(account) DO UPDATE SET balance = excluded.balance,"
                " last_seq = excluded.last_seq, fence = excluded.fence");
            Bind(s, 1, e.account);
            sqlite3_bind_int64(s, 2, e.balance);
            sqlite3_bind_int64(s, 3, e.seq);
            sqlite3_bind_int64(s, 4, std::max(fence, highest));
            Change(s);
        }
        sqlite3_stmt* s = c_.Prepare(
            "INSERT INTO entries(account, seq, entry_id, amount, balance, memo, idempotency_key,"
            " principal, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        Bind(s, 1, e.account);
        sqlite3_bind_int64(s, 2, e.seq);
        Bind(s, 3, e.entry_id);
        sqlite3_bind_int64(s, 4, e.amount);
        sqlite3_bind_int64(s, 5, e.balance);
        Bind(s, 6, e.memo);
        Bind(s, 7, e.idempotency_key);
        Bind(s, 8, e.principal);
        Bind(s, 9, e.created_at);
        Change(s);
        return true;
    }

    std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> GetAccount(
        const std::string& account) override {
        sqlite3_stmt* s = c_.Prepare("SELECT balance FROM accounts WHERE account = ?1");
        Bind(s, 1, account);
        std::optional<std::pair<std::int64_t, std::vector<LedgerEntry>>> out;
        if (Step(s)) out.emplace(sqlite3_column_int64(s, 0), std::vector<LedgerEntry>{});
        sqlite3_reset(s);
        if (!out) return out;
        sqlite3_stmt* q = c_.Prepare(kSelectEntry " WHERE account = ?1 ORDER BY seq");
        Bind(q, 1, account);
        while (Step(q)) out->second.push_back(ReadEntry(q));
        sqlite3_reset(q);
        return out;
    }

    std::vector<std::pair<std::string, std::int64_t>> AllAccounts() override {
        sqlite3_stmt* s = c_.Prepare("SELECT account, balance FROM accounts ORDER BY account");
        std::vector<std::pair<std::string, std::int64_t>> out;
        while (Step(s)) out.emplace_back(Text(s, 0), sqlite3_column_int64(s, 1));
        sqlite3_reset(s);
        return out;
    }

    std::vector<LedgerEntry> AllEntries() override {
        sqlite3_stmt* s = c_.Prepare(kSelectEntry " ORDER BY account, seq");
        std::vector<LedgerEntry> out;
        while (Step(s)) out.push_back(ReadEntry(s));
        sqlite3_reset(s);
        return out;
    }

  private:
    bool Step(sqlite3_stmt* s) {
        const int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        const Status st = FromSqlite(rc, c_.db());
        sqlite3_reset(s);
        throw Error(st.kind, st.message);
    }
    /// Runs a write statement to completion; returns the rows it changed.
    int Change(sqlite3_stmt* s) {
        while (Step(s)) {
        }
        sqlite3_reset(s);
        return sqlite3_changes(c_.db());
    }
    static Operation ReadOp(sqlite3_stmt* s) {
        Operation o;
        o.principal = Text(s, 0);
        o.key = Text(s, 1);
        o.fingerprint = Text(s, 2);
        o.state = Text(s, 3);
        o.owner = Text(s, 4);
        o.lease_until_ms = sqlite3_column_int64(s, 5);
        o.recovery_point = Text(s, 6);
        o.recovery_state = Text(s, 7);
        o.method = Text(s, 8);
        o.path = Text(s, 9);
        o.request_body = Text(s, 10);
        o.response_status = sqlite3_column_int(s, 11);
        o.response_headers = Text(s, 12);
        o.response_body = Text(s, 13);
        o.created_at_ms = sqlite3_column_int64(s, 14);
        o.updated_at_ms = sqlite3_column_int64(s, 15);
        return o;
    }
    static Resource ReadResource(sqlite3_stmt* s) {
        return Resource{Text(s, 0), Text(s, 1), Text(s, 2), Text(s, 3), Text(s, 4), Text(s, 5)};
    }
    static LedgerEntry ReadEntry(sqlite3_stmt* s) {
        LedgerEntry e;
        e.entry_id = Text(s, 0);
        e.account = Text(s, 1);
        e.amount = sqlite3_column_int64(s, 2);
        e.seq = sqlite3_column_int64(s, 3);
        e.balance = sqlite3_column_int64(s, 4);
        e.memo = Text(s, 5);
        e.idempotency_key = Text(s, 6);
        e.principal = Text(s, 7);
        e.created_at = Text(s, 8);
        return e;
    }

    Connection& c_;
};

#undef kSelectOp
#undef kSelectResource
#undef kSelectEntry

void Migrate(Connection& c) {
    // BEGIN IMMEDIATE serialises replicas that start at the same moment on one file.
    c.Exec("BEGIN IMMEDIATE");
    try {
        sqlite3_stmt* s = c.Prepare("PRAGMA user_version");
        int version = 0;
        if (sqlite3_step(s) == SQLITE_ROW) version = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
        if (version > kSchemaVersion)
            throw std::runtime_error("database schema version " + std::to_string(version) +
                                     " is newer than this binary's " +
                                     std::to_string(kSchemaVersion));
        if (version < 1) {
            c.Exec(
                "CREATE TABLE IF NOT EXISTS resources ("
                " id TEXT PRIMARY KEY,"
                " data TEXT NOT NULL,"
                " created_at TEXT NOT NULL,"
                " idempotency_key TEXT,"
                " owner TEXT NOT NULL DEFAULT '',"
                " principal TEXT NOT NULL DEFAULT '')");
            // Clustered on (principal, key): one B-tree, and the claim's lookup is the insert.
            c.Exec(
                "CREATE TABLE IF NOT EXISTS journal ("
                " principal TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
                " state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),"
                " owner TEXT NOT NULL, lease_until_ms INTEGER NOT NULL,"
                " recovery_point TEXT NOT NULL DEFAULT '', recovery_state TEXT NOT NULL DEFAULT '',"
                " method TEXT NOT NULL, path TEXT NOT NULL, request_body TEXT NOT NULL,"
                " response_status INTEGER NOT NULL DEFAULT 0,"
                " response_headers TEXT NOT NULL DEFAULT '', response_body TEXT NOT NULL DEFAULT "
                "'',"
                " created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,"
                " PRIMARY KEY (principal, key)) WITHOUT ROWID");
            // Only in_progress rows are indexed for the recovery scan: completed rows (nearly
            // all of them) cost no index maintenance.
            c.Exec(
                "CREATE INDEX IF NOT EXISTS journal_expired ON journal(lease_until_ms)"
                " WHERE state = 'in_progress'");
            // Retention deletes the oldest completed rows in batches; without this index each
            // batch scanned the whole journal inside the writer (a 30-50 ms stall every scan).
            c.Exec(
                "CREATE INDEX IF NOT EXISTS journal_retention ON journal(updated_at_ms)"
                " WHERE state = 'completed'");
            c.Exec(
                "CREATE TABLE IF NOT EXISTS accounts ("
                " account TEXT PRIMARY KEY, balance INTEGER NOT NULL, last_seq INTEGER NOT NULL)");
            c.Exec(
                "CREATE TABLE IF NOT EXISTS entries ("
                " account TEXT NOT NULL, seq INTEGER NOT NULL, entry_id TEXT NOT NULL UNIQUE,"
                " amount INTEGER NOT NULL, balance INTEGER NOT NULL, memo TEXT NOT NULL,"
                " idempotency_key TEXT NOT NULL, principal TEXT NOT NULL, created_at TEXT NOT NULL,"
                " PRIMARY KEY (account, seq))");
        }
        if (version < 2) c.Exec("ALTER TABLE accounts ADD COLUMN fence INTEGER NOT NULL DEFAULT 0");
        c.Exec("PRAGMA user_version=" + std::to_string(kSchemaVersion));
        c.Exec("COMMIT");
    } catch (...) {
        sqlite3_exec(c.db(), "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

/// A queue served by one thread that owns one connection.
class Worker {
  public:
    using Done = std::function<void(Status)>;

    Worker(std::string path, Durability d, bool group_commit)
        : path_(std::move(path)), durability_(std::move(d)), group_commit_(group_commit) {
        conn_ = std::make_unique<Connection>(path_, durability_);
        if (group_commit_) Migrate(*conn_);
        tx_ = std::make_unique<SqliteTx>(*conn_);
        thread_ = std::thread([this] { Run(); });
    }
    ~Worker() { Stop(); }

    void Submit(store::Job job, Done done) {
        {
            std::lock_guard lock(mu_);
            if (!stopping_) {
                queue_.push_back({std::move(job), std::move(done)});
                cv_.notify_one();
                return;
            }
        }
        done({ErrorKind::kTransient, "store is shut down"});
    }

    void Stop() {
        std::call_once(stopped_, [this] {
            {
                std::lock_guard lock(mu_);
                stopping_ = true;
                cv_.notify_all();
            }
            if (thread_.joinable()) thread_.join();
            tx_.reset();
            conn_.reset();
        });
    }

    bool Healthy() const { return healthy_.load(std::memory_order_relaxed); }

  private:
    struct Item {
        store::Job job;
        Done done;
    };

    void Run() {
        std::vector<Item> batch;
        std::vector<Status> results;
        for (;;) {
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping and drained
                const std::size_t n =
                    group_commit_
                        ? std::min<std::size_t>(queue_.size(),
                                                static_cast<std::size_t>(durability_.max_batch))
                        : 1;
                for (std::size_t i = 0; i < n; ++i) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            results.assign(batch.size(), Status::Ok());
            if (group_commit_)
                RunBatch(batch, results);
            else
                for (std::size_t i = 0; i < batch.size(); ++i) results[i] = RunRead(batch[i]);
            for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
            batch.clear();
        }
    }

    Status Invoke(Item& item) {
        try {
            return item.job(*tx_);
        } catch (const Error& e) {
            return {e.kind, e.what()};
        } catch (const std::exception& e) {
            return {ErrorKind::kPermanent, e.what()};
        }
    }

    // A read job sees one snapshot for all its statements.
    Status RunRead(Item& item) {
        sqlite3* db = conn_->db();
        int rc = sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) return FromSqlite(rc, db);
        Status st = Invoke(item);
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
        return st;
    }

    // Each write job runs in its own savepoint, so a job that fails (or decides to abort)
    // takes back exactly its own statements and leaves its neighbours in the batch alone.
    Status RunOne(Item& item) {
        sqlite3* db = conn_->db();
        int rc = sqlite3_step(conn_->Prepare("SAVEPOINT job"));
        if (rc != SQLITE_DONE) return FromSqlite(rc, db);
        Status st = Invoke(item);
        if (sqlite3_get_autocommit(db)) return st;  // SQLite rolled back the whole transaction
        if (!st.ok()) sqlite3_step(conn_->Prepare("ROLLBACK TO job"));
        rc = sqlite3_step(conn_->Prepare("RELEASE job"));
        if (rc != SQLITE_DONE && st.ok()) st = FromSqlite(rc, db);
        return st;
    }

    // Every write of the batch shares one transaction and so one fsync; each job is atomic on
    // its own (a failing statement rolls back only itself), and a job that fails does not
    // take its neighbours down with it.
    void RunBatch(std::vector<Item>& batch, std::vector<Status>& results) {
        sqlite3* db = conn_->db();
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) {
            Status st = FromSqlite(rc, db);
            healthy_.store(false, std::memory_order_relaxed);
            for (auto& r : results) r = st;
            return;
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            results[i] = RunOne(batch[i]);
            // Some errors (disk full, I/O) make SQLite roll back the whole transaction, not
            // just the statement: then nothing of this batch is committed, and the jobs after
            // this one would run in autocommit mode. Fail them all instead.
            if (sqlite3_get_autocommit(db)) {
                const Status lost{ErrorKind::kTransient,
                                  "the batch transaction was rolled back: " + results[i].message};
                for (std::size_t j = 0; j < batch.size(); ++j)
                    if (j >= i || results[j].ok()) {
                        if (j == i && !results[j].ok()) continue;  // keep its own error
                        results[j] = lost;
                    }
                healthy_.store(false, std::memory_order_relaxed);
                return;
            }
        }
        rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) {
            Status st = FromSqlite(rc, db);
            // Only BUSY before anything was written is a clean "not committed"; after an I/O
            // error the commit frame may have reached the WAL: the outcome is unknown, and the
            // caller must re-read (the journal row) before deciding.
            if ((rc & 0xFF) != SQLITE_BUSY) st.kind = ErrorKind::kInDoubt;
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            for (auto& r : results)
                if (r.ok()) r = st;
            healthy_.store(false, std::memory_order_relaxed);
            return;
        }
        healthy_.store(true, std::memory_order_relaxed);
    }

    std::string path_;
    Durability durability_;
    bool group_commit_;
    std::unique_ptr<Connection> conn_;
    std::unique_ptr<SqliteTx> tx_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::once_flag stopped_;
    std::atomic<bool> healthy_{true};
    std::thread thread_;
};

/// Copies committed WAL frames into the database file every 100 ms with a PASSIVE checkpoint,
/// which runs alongside the writer instead of blocking it.
class Checkpointer {
  public:
    Checkpointer(const std::string& path, const Durability& d) : conn_(path, d) {
        thread_ = std::thread([this] { Run(); });
    }
    ~Checkpointer() { Stop(); }

    void Stop() {
        {
            std::lock_guard lock(mu_);
            if (stopping_) return;
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

  private:
    void Run() {
        std::unique_lock lock(mu_);
        while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; })) {
            lock.unlock();
            int frames = 0, done = 0;
            // SQLITE_BUSY here only means another connection is checkpointing: try next time.
            sqlite3_wal_checkpoint_v2(conn_.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames,
                                      &done);
            lock.lock();
        }
    }

    Connection conn_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

class SqliteStore final : public Store {
  public:
    SqliteStore(const std::string& path, Durability d)
        : writer_(path, d, /*group_commit=*/true),
          reader_(path, d, /*group_commit=*/false),
          checkpointer_(path, d) {}

    ~SqliteStore() override { Shutdown(); }

    void Write(Job job, std::function<void(Status)> done) override {
        writer_.Submit(std::move(job), std::move(done));
    }

    void Read(Job job, std::function<void(Status)> done) override {
        reader_.Submit(std::move(job), std::move(done));
    }

    bool Healthy() const override { return writer_.Healthy(); }

    void Shutdown() override {
        writer_.Stop();
        reader_.Stop();
        checkpointer_.Stop();
    }

  private:
    Worker writer_;
    Worker reader_;
    Checkpointer checkpointer_;
};

}  // namespace

/// An existing store opened for reading only: one reader thread, no writer, no checkpointer.
class ReadOnlySqliteStore final : public Store {
  public:
    ReadOnlySqliteStore(const std::string& path, const Durability& d)
        : reader_(path, d, /*group_commit=*/false) {}
    ~ReadOnlySqliteStore() override { Shutdown(); }
    void Write(Job, std::function<void(Status)> done) override {
        done({ErrorKind::kPermanent, "this store was opened read-only"});
    }
    void Read(Job job, std::function<void(Status)> done) override {
        reader_.Submit(std::move(job), std::move(done));
    }
    bool Healthy() const override { return reader_.Healthy(); }
    void Shutdown() override { reader_.Stop(); }

  private:
    Worker reader_;
};

std::unique_ptr<Store> OpenSqliteStore(const std::string& path, Durability durability) {
    if (durability.read_only) return std::make_unique<ReadOnlySqliteStore>(path, durability);
    if (durability.synchronous != "full" && durability.synchronous != "normal" &&
        durability.synchronous != "off")
        throw std::invalid_argument("synchronous must be full, normal or off, not '" +
                                    durability.synchronous + "'");
    return std::make_unique<SqliteStore>(path, std::move(durability));
}

std::unique_ptr<Store> OpenStore(const std::string& url, Durability durability) {
    std::string_view u = url;
    if (IsPostgresUrl(u)) return OpenPostgresStore(url, durability);
    if (u.starts_with("sqlite://"))
        u.remove_prefix(9);
    else if (u.starts_with("sqlite:"))
        u.remove_prefix(7);
    else
        throw std::invalid_argument("unsupported store URL '" + url +
                                    "': expected sqlite:PATH or postgres://...");
    if (u.empty()) throw std::invalid_argument("store URL '" + url + "' names no file");
    return OpenSqliteStore(std::string(u), std::move(durability));
}

}  // namespace rollsafe::store
