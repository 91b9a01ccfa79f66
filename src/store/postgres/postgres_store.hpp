/// @file
/// @brief The PostgreSQL store (internal to the store module; reached through OpenStore).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "rollsafe/store/store.hpp"

namespace rollsafe::store {

/// Connects (the URL is a libpq connection URI), creates or migrates the schema under an
/// advisory lock (or, read-only, checks its version), and starts `durability.pg_pool` worker
/// threads with one connection each. Throws std::runtime_error when PostgreSQL cannot be
/// reached or the schema is foreign or newer.
std::unique_ptr<Store> OpenPostgresStore(const std::string& url, const Durability& durability);

}  // namespace rollsafe::store
