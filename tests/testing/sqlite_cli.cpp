#include "testing/sqlite_cli.hpp"

#include <cstring>
#include <thread>

#include "testing/process.hpp"

namespace rollsafe::testing {

SqliteResult SqliteQuery(const std::string& db_path, const std::string& sql) {
    SqliteResult r;
    const bool pg = db_path.starts_with("postgres://") || db_path.starts_with("postgresql://");
    const std::string tool = pg ? "psql" : "sqlite3";
    // psql -A -t -F '|' prints rows exactly as sqlite3 -noheader -separator '|' does
    const ProcessResult p = pg ? RunProcess({"psql", "-X", "-q", "-A", "-t", "-F", "|", "-v",
                                             "ON_ERROR_STOP=1", "-d", db_path, "-c", sql})
                               : RunProcess({"sqlite3", "-batch", "-noheader", "-separator", "|",
                                             "-cmd", ".timeout 5000", db_path, sql});
    if (p.spawn_errno != 0) {
        r.error = "cannot run " + tool + ": " + std::strerror(p.spawn_errno);
        return r;
    }
    if (!p.exit_code) {
        r.error = tool + " did not finish in time";
        return r;
    }
    if (*p.exit_code != 0 || !p.err.empty()) {
        r.error = tool + " exited " + std::to_string(*p.exit_code) + ": " + p.err;
        return r;
    }
    std::size_t start = 0;
    while (start < p.out.size()) {
        auto nl = p.out.find('\n', start);
        if (nl == std::string::npos) nl = p.out.size();
        r.rows.push_back(p.out.substr(start, nl - start));
        start = nl + 1;
    }
    r.ok = true;
    return r;
}

std::string SqliteOneRow(const std::string& db_path, const std::string& sql) {
    const SqliteResult q = SqliteQuery(db_path, sql);
    if (!q.ok) return "<error: " + q.error + ">";
    if (q.rows.size() != 1) return "<" + std::to_string(q.rows.size()) + " rows>";
    return q.rows[0];
}

bool SqlitePoll(const std::string& db_path, const std::string& sql, const std::string& expected,
                std::chrono::steady_clock::time_point deadline, std::string* last) {
    for (;;) {
        *last = SqliteOneRow(db_path, sql);
        if (*last == expected) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::string SqlQuote(const std::string& s) {
    std::string out = "'";
    for (const char c : s) {
        if (c == '\'') out += '\'';
        out += c;
    }
    out += '\'';
    return out;
}

}  // namespace rollsafe::testing
