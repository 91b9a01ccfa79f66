/// @file
/// @brief A fresh temporary directory for one test, removed with its contents afterwards.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace rollsafe::testing {

/// A fresh directory from mkdtemp(3) under $TMPDIR (or /tmp), removed recursively on
/// destruction unless the environment variable ROLLSAFE_TEST_KEEP_TMP is set.
class TempDir {
  public:
    TempDir() {
        const char* tmp = std::getenv("TMPDIR");
        std::string templ =
            std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/rollsafe-test-XXXXXX";
        if (::mkdtemp(templ.data()) == nullptr)
            throw std::runtime_error("mkdtemp " + templ + " failed");
        path_ = templ;
    }
    ~TempDir() {
        if (std::getenv("ROLLSAFE_TEST_KEEP_TMP") != nullptr) return;
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& Path() const { return path_; }
    /// `name` inside the directory.
    std::string File(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

}  // namespace rollsafe::testing
