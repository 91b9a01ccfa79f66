#include "testing/test_store.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include <gtest/gtest.h>

namespace rollsafe::testing {
bool Psql(const std::string& url, const std::string& sql) {
    const ProcessResult p = RunProcess({"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                        "-c", "SET client_min_messages = warning; " + sql});
    EXPECT_TRUE(p.exit_code && *p.exit_code == 0) << sql << ": " << p.err;
    return p.exit_code && *p.exit_code == 0;
}

TestStore::TestStore(const std::string& kind) : postgres_(kind == "postgres") {
    if (!postgres_) {
        dir_ = std::make_unique<TempDir>();
        url_ = dir_->Path() + "/store.db";
        return;
    }
    const char* base = std::getenv("ROLLSAFE_TEST_PG");
    if (!base || !*base) {
        ADD_FAILURE() << "ROLLSAFE_TEST_PG is not set: run eval \"$(scripts/services.sh start)\" "
                         "(scripts/test.sh does)";
        return;
    }
    static std::atomic<int> n{0};
    base_ = base;
    schema_ = "it_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
    if (!Psql(base_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE; CREATE SCHEMA " + schema_))
        return;
    url_ = base_ + (base_.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
           schema_;
}

TestStore::~TestStore() {
    if (!schema_.empty()) Psql(base_, "DROP SCHEMA IF EXISTS " + schema_ + " CASCADE");
}

ServeOptions TestStore::Replica(std::vector<std::string> args,
                                std::vector<std::pair<std::string, std::string>> env) const {
    ServeOptions o;
    o.extra_args = std::move(args);
    o.env = std::move(env);
    if (postgres_)
        o.store_url = url_;
    else
        o.db_path = url_;
    return o;
}

}  // namespace rollsafe::testing
