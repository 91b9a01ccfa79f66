/// @file
/// @brief The store an integration test runs its replicas on, for tests instantiated over both
/// stores: an SQLite file in a fresh directory, or a fresh schema of the PostgreSQL server in
/// ROLLSAFE_TEST_PG (scripts/test.sh exports it), dropped at the end.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "testing/process.hpp"
#include "testing/temp_dir.hpp"

namespace rollsafe::testing {

/// Runs `sql` with psql on the PostgreSQL server at `url` (NOTICEs off); false, after a test
/// failure naming the statement, when it fails.
bool Psql(const std::string& url, const std::string& sql);

class TestStore {
  public:
    /// `kind` is "sqlite" or "postgres". For "postgres" without ROLLSAFE_TEST_PG, or when the
    /// schema cannot be made, ok() is false and a test failure has been recorded.
    explicit TestStore(const std::string& kind);
    ~TestStore();
    TestStore(const TestStore&) = delete;
    TestStore& operator=(const TestStore&) = delete;

    bool ok() const { return !url_.empty(); }
    bool postgres() const { return postgres_; }
    /// What the store helpers take (SqliteOneRow, SqlitePoll, RunAudit): the SQLite file's path,
    /// or the `postgres://` URL pointing at the schema.
    const std::string& Url() const { return url_; }
    /// Options for a replica on this store.
    ServeOptions Replica(std::vector<std::string> args = {},
                         std::vector<std::pair<std::string, std::string>> env = {}) const;

  private:
    bool postgres_ = false;
    std::unique_ptr<TempDir> dir_;
    std::string base_, schema_, url_;
};

}  // namespace rollsafe::testing
