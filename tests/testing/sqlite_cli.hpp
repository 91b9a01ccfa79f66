/// @file
/// @brief Reads a SQLite database with the `sqlite3` command-line tool, so the tests check
/// what is on disk without linking the code under test.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace rollsafe::testing {

/// Result of one query: `rows` are the output lines, columns separated by '|'.
struct SqliteResult {
    bool ok = false;  ///< the tool ran and exited 0
    std::vector<std::string> rows;
    std::string error;  ///< stderr, exit status or spawn failure when !ok
};

/// Runs `sql` against the database file `db_path` with `sqlite3 -batch -noheader` (or, when
/// `db_path` is a `postgres://` URL, with `psql -A -t -F '|'`: the same row format), waiting up
/// to 5 s for a lock held by a running server (`.timeout`), bounded by kMaxTestWait. (Not
/// -readonly: a WAL database left by a killed process needs recovery, which a read-only connection
/// cannot do.)
SqliteResult SqliteQuery(const std::string& db_path, const std::string& sql);

/// The only row of a query expected to return exactly one, or, for assertion messages,
/// "<error: ...>" when the query failed and "<N rows>" when it returned N != 1 rows.
std::string SqliteOneRow(const std::string& db_path, const std::string& sql);

/// Runs `sql` every 50 ms until SqliteOneRow gives `expected`. Returns whether it did before
/// `deadline`; `last` receives the last answer (for the message).
bool SqlitePoll(const std::string& db_path, const std::string& sql, const std::string& expected,
                std::chrono::steady_clock::time_point deadline, std::string* last);

/// SQL string literal for `s` ('...' with quotes doubled).
std::string SqlQuote(const std::string& s);

}  // namespace rollsafe::testing
