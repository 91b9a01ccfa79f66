#include <sqlite3.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rollsafe/store/store.hpp"

namespace rollsafe::store {
namespace {

constexpr int kSchemaVersion = 1;

/// One connection with a cache of prepared statements. Used by exactly one thread.
class Connection {
  public:
    Connection(const std::string& path, const Durability& d) {
        const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
            std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw std::runtime_error("cannot open SQLite database '" + path + "': " + msg);
        }
        try {
            // Several processes share the file; wait for each other's write locks instead of
            // failing at once.
            sqlite3_busy_timeout(db_, 5000);
            EnableWal(path);
            Exec("PRAGMA synchronous=" + d.synchronous);
            Exec("PRAGMA foreign_keys=ON");
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
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

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
                " owner TEXT NOT NULL DEFAULT '')");
        }
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
    using Job = std::function<Status(Connection&)>;
    using Done = std::function<void(Status)>;

    Worker(std::string path, Durability d, bool group_commit)
        : path_(std::move(path)), durability_(std::move(d)), group_commit_(group_commit) {
        conn_ = std::make_unique<Connection>(path_, durability_);
        if (group_commit_) Migrate(*conn_);
        thread_ = std::thread([this] { Run(); });
    }
    ~Worker() { Stop(); }

    void Submit(Job job, Done done) {
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
            conn_.reset();
        });
    }

    bool Healthy() const { return healthy_.load(std::memory_order_relaxed); }

  private:
    struct Item {
        Job job;
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
                for (std::size_t i = 0; i < batch.size(); ++i) results[i] = RunOne(batch[i]);
            for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
            batch.clear();
        }
    }

    Status RunOne(Item& item) {
        try {
            return item.job(*conn_);
        } catch (const std::exception& e) {
            return {ErrorKind::kPermanent, e.what()};
        }
    }

    // Every write of the batch shares one transaction and so one fsync; each job is atomic on
    // its own (a failing statement rolls back only itself), and a job that fails does not
    // take its neighbours down with it.
    void RunBatch(std::vector<Item>& batch, std::vector<Status>& results) {
        sqlite3* db = conn_->db();
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) {
            Status st = FromSqlite(rc, db);
            healthy_.store(st.kind != ErrorKind::kTransient, std::memory_order_relaxed);
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
                    if (j != i && (j > i || results[j].ok())) results[j] = lost;
                healthy_.store(false, std::memory_order_relaxed);
                return;
            }
        }
        rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) {
            Status st = FromSqlite(rc, db);
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
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool stopping_ = false;
    std::once_flag stopped_;
    std::atomic<bool> healthy_{true};
    std::thread thread_;
};

class SqliteStore final : public Store {
  public:
    SqliteStore(const std::string& path, Durability d)
        : writer_(path, d, /*group_commit=*/true), reader_(path, d, /*group_commit=*/false) {}

    ~SqliteStore() override { Shutdown(); }

    void InsertResource(Resource r, std::function<void(Status)> done) override {
        writer_.Submit(
            [r = std::move(r)](Connection& c) -> Status {
                sqlite3_stmt* s = c.Prepare(
                    "INSERT INTO resources(id, data, created_at, idempotency_key, owner) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)");
                Bind(s, 1, r.id);
                Bind(s, 2, r.data_json);
                Bind(s, 3, r.created_at);
                if (r.idempotency_key.empty())
                    sqlite3_bind_null(s, 4);
                else
                    Bind(s, 4, r.idempotency_key);
                Bind(s, 5, r.owner);
                const int rc = sqlite3_step(s);
                Status st = rc == SQLITE_DONE ? Status::Ok() : FromSqlite(rc, c.db());
                sqlite3_reset(s);
                return st;
            },
            std::move(done));
    }

    void GetResource(std::string id,
                     std::function<void(Status, std::optional<Resource>)> done) override {
        auto found = std::make_shared<std::optional<Resource>>();
        reader_.Submit(
            [id = std::move(id), found](Connection& c) -> Status {
                sqlite3_stmt* s = c.Prepare(
                    "SELECT id, data, created_at, COALESCE(idempotency_key, ''), owner "
                    "FROM resources WHERE id = ?1");
                Bind(s, 1, id);
                const int rc = sqlite3_step(s);
                auto text = [&](int col) {
                    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
                    return std::string(p ? p : "",
                                       static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
                };
                Status st;
                if (rc == SQLITE_ROW) {
                    *found = Resource{text(0), text(1), text(2), text(3), text(4)};
                } else if (rc != SQLITE_DONE) {
                    st = FromSqlite(rc, c.db());
                }
                sqlite3_reset(s);
                return st;
            },
            [found, done = std::move(done)](Status st) { done(std::move(st), std::move(*found)); });
    }

    bool Healthy() const override { return writer_.Healthy(); }

    void Shutdown() override {
        writer_.Stop();
        reader_.Stop();
    }

  private:
    Worker writer_;
    Worker reader_;
};

}  // namespace

std::unique_ptr<Store> OpenSqliteStore(const std::string& path, Durability durability) {
    if (durability.synchronous != "full" && durability.synchronous != "normal" &&
        durability.synchronous != "off")
        throw std::invalid_argument("synchronous must be full, normal or off, not '" +
                                    durability.synchronous + "'");
    return std::make_unique<SqliteStore>(path, std::move(durability));
}

std::unique_ptr<Store> OpenStore(const std::string& url, Durability durability) {
    std::string_view u = url;
    if (u.starts_with("sqlite://"))
        u.remove_prefix(9);
    else if (u.starts_with("sqlite:"))
        u.remove_prefix(7);
    else
        throw std::invalid_argument("unsupported store URL '" + url +
                                    "': expected sqlite:PATH (PostgreSQL comes later)");
    if (u.empty()) throw std::invalid_argument("store URL '" + url + "' names no file");
    return OpenSqliteStore(std::string(u), std::move(durability));
}

}  // namespace rollsafe::store
