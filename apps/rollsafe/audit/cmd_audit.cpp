#include "audit/cmd_audit.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "audit/auditor.hpp"
#include "rollsafe/store/store.hpp"

namespace rollsafe::audit {
namespace {

/// Reading every table of a large store takes a while; a store that has not answered by then
/// is stuck, not slow.
constexpr auto kReadDeadline = std::chrono::minutes(2);

struct Flags {
    std::string store;
    std::int64_t now_ms = 0;
    bool now_given = false;
};

/// The file a `sqlite:` URL names; nullopt for any other URL (OpenStore judges those).
std::optional<std::string> SqlitePath(std::string_view url) {
    for (std::string_view prefix : {"sqlite://", "sqlite:"})
        if (url.starts_with(prefix)) return std::string(url.substr(prefix.size()));
    return std::nullopt;
}

int Run(const Flags& f) {
    // Taken before the snapshot: a lease that expires while we read is not "expired" yet.
    const std::int64_t now_ms = f.now_given
                                    ? f.now_ms
                                    : std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
    auto snapshot = std::make_shared<Snapshot>();
    std::string error;
    if (!ReadStoreSnapshot(f.store, snapshot.get(), &error)) {
        std::cerr << "rollsafe audit: " << error << "\n";
        return 1;
    }
    const AuditResult result = Audit(*snapshot, now_ms);
    for (const auto& line : result.effect_lines) std::cout << line << '\n';
    for (const auto& line : result.problem_lines) std::cerr << line << '\n';
    std::cout << result.summary_line << '\n' << std::flush;
    return result.ok ? 0 : 1;
}

}  // namespace

bool ReadStoreSnapshot(const std::string& store_url, Snapshot* out, std::string* error) {
    // OpenStore creates a missing database, and an empty store would pass the audit: a typo
    // in the path must fail instead.
    if (auto path = SqlitePath(store_url); path && !path->empty()) {
        std::error_code ec;
        if (!std::filesystem::exists(*path, ec)) {
            *error = "cannot open store: no database at '" + *path + "'";
            return false;
        }
    }
    std::unique_ptr<store::Store> st;
    try {
        store::Durability read_only;
        read_only.read_only = true;  // an audit must not migrate or write what it checks
        st = store::OpenStore(store_url, read_only);
    } catch (const std::exception& e) {
        *error = std::string("cannot open store: ") + e.what();
        return false;
    }

    // Shared with the callbacks, so that a read finishing after the deadline writes into
    // memory that is still alive.
    auto snapshot = std::make_shared<Snapshot>();
    auto done = std::make_shared<std::promise<store::Status>>();
    auto status = done->get_future();
    st->Read(
        [snapshot](store::Tx& tx) {
            snapshot->operations = tx.AllOperations();
            snapshot->resources = tx.AllResources();
            snapshot->entries = tx.AllEntries();
            snapshot->accounts = tx.AllAccounts();
            return store::Status::Ok();
        },
        [done](store::Status s) { done->set_value(std::move(s)); });
    if (status.wait_for(kReadDeadline) != std::future_status::ready) {
        *error = "the store did not answer within " +
                 std::to_string(
                     std::chrono::duration_cast<std::chrono::seconds>(kReadDeadline).count()) +
                 " s";
        // Shutdown would wait for the stuck read; the process is about to exit anyway.
        (void)st.release();
        return false;
    }
    const store::Status read = status.get();
    st->Shutdown();
    if (!read.ok()) {
        *error = "cannot read store: " + read.message;
        return false;
    }
    *out = std::move(*snapshot);
    return true;
}

void AddAuditCommand(CLI::App& app, std::function<int()>* run) {
    auto flags = std::make_shared<Flags>();
    auto* cmd = app.add_subcommand(
        "audit",
        "Check a store for duplicated, orphaned or stuck effects and for ledgers that do not "
        "add up");
    cmd->add_option("--store", flags->store,
                    "Store URL: sqlite:PATH (must exist) or postgres://...")
        ->required();
    auto* now = cmd->add_option("--now-ms", flags->now_ms,
                                "Judge leases as of this Unix time in ms (default: now)");
    cmd->callback([flags, now, run] {
        flags->now_given = now->count() > 0;
        *run = [flags] { return Run(*flags); };
    });
}

}  // namespace rollsafe::audit
