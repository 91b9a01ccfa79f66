#include "testing/sqlite_cli.hpp"

#include <cstring>

#include "testing/process.hpp"

namespace rollsafe::testing {

SqliteResult SqliteQuery(const std::string& db_path, const std::string& sql) {
    SqliteResult r;
    const ProcessResult p =
        RunProcess({"sqlite3", "-batch", "-noheader", "-separator", "|", db_path, sql});
    if (p.spawn_errno != 0) {
        r.error = std::string("cannot run sqlite3: ") + std::strerror(p.spawn_errno);
        return r;
    }
    if (!p.exit_code) {
        r.error = "sqlite3 did not finish in time";
        return r;
    }
    if (*p.exit_code != 0 || !p.err.empty()) {
        r.error = "sqlite3 exited " + std::to_string(*p.exit_code) + ": " + p.err;
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
