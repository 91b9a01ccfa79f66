// The store URL the drill's reports show: never a password.
#include <gtest/gtest.h>

#include "drill/drill.hpp"

namespace rollsafe::drill {
namespace {

TEST(RedactStoreUrl, HidesTheUserinfoPassword) {
    EXPECT_EQ(RedactStoreUrl("postgres://app:s3cr%40t@db.internal:5432/rollsafe"),
              "postgres://app:***@db.internal:5432/rollsafe");
    EXPECT_EQ(RedactStoreUrl("postgresql://app:pw@[::1]/x?sslmode=require"),
              "postgresql://app:***@[::1]/x?sslmode=require");
}

TEST(RedactStoreUrl, HidesAPasswordParameter) {
    EXPECT_EQ(RedactStoreUrl("postgres://app@db/x?sslmode=require&password=pw&connect_timeout=5"),
              "postgres://app@db/x?sslmode=require&password=***&connect_timeout=5");
    EXPECT_EQ(RedactStoreUrl("postgres://db/x?password=pw"), "postgres://db/x?password=***");
}

TEST(RedactStoreUrl, LeavesUrlsWithoutAPasswordAlone) {
    for (const char* url :
         {"sqlite:/tmp/drill/drill.db", "postgres://postgres@127.0.0.1:55432/rollsafe_test",
          "postgres://postgres@127.0.0.1:55432/t?options=-csearch_path%3Ddrill_1",
          "postgres://db/x?old_password=keep", "sqlite:/tmp/a:b@c/d.db"})
        EXPECT_EQ(RedactStoreUrl(url), url) << url;
}

}  // namespace
}  // namespace rollsafe::drill
