/// @file
/// @brief `rollsafe audit`: checks a store for duplicated, orphaned or stuck effects and for
/// ledger accounts that do not add up.
///
/// Prints one JSON line per stored effect and one summary line on standard output, and one
/// JSON line per problem on standard error. Exit status: 0 when the store is consistent, 1
/// when a problem was found or the store cannot be opened or read, 2 on a usage error.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "audit/auditor.hpp"

namespace rollsafe::audit {

/// Opens `store_url` read-only (a `sqlite:` file must exist) and reads every table into
/// `*snapshot` in one read transaction. Returns false with a sentence in `*error` ("cannot
/// open store: ...", "cannot read store: ...", "the store did not answer within 120 s").
bool ReadStoreSnapshot(const std::string& store_url, Snapshot* snapshot, std::string* error);

/// Adds the `audit` subcommand to `app`. When it is chosen, `*run` is set to the function
/// that runs it and returns the process exit status.
void AddAuditCommand(CLI::App& app, std::function<int()>* run);

}  // namespace rollsafe::audit
