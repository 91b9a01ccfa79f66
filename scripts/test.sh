#!/usr/bin/env bash
# test.sh — everything CI runs, on a fresh Debian 12 machine or a developer's:
#   1. installs missing dependencies (scripts/install-deps.sh) and starts PostgreSQL and Redis on
#      loopback (scripts/services.sh; stopped at exit) for the PostgreSQL store and Redis lock
#      tests (ROLLSAFE_TEST_PG, ROLLSAFE_TEST_REDIS),
#   2. builds the release preset with -Werror and runs every test (unit + integration),
#   3. builds the ASan+UBSan preset and runs every test again.
# Set ROLLSAFE_SKIP_SANITIZE=1 to skip step 3 while iterating.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
scripts/install-deps.sh

# PostgreSQL and Redis for the tests of both stores and of the Redis lock (*_dbtest.cpp and the
# integration tests read ROLLSAFE_TEST_PG / ROLLSAFE_TEST_REDIS; without them those tests fail
# with a message). A caller's own pair wins. Services already running (a developer's) are used
# and left running.
if [[ -z ${ROLLSAFE_TEST_PG:-} || -z ${ROLLSAFE_TEST_REDIS:-} ]]; then
  if ! svc=$(scripts/services.sh status 2>/dev/null); then
    svc=$(scripts/services.sh start)
    trap 'scripts/services.sh stop || true' EXIT
  fi
  eval "$svc"
fi
export ROLLSAFE_TEST_PG ROLLSAFE_TEST_REDIS
echo "==> PostgreSQL for the store tests: $ROLLSAFE_TEST_PG"
echo "==> Redis for the lock tests: $ROLLSAFE_TEST_REDIS"

check_format() {
  local files
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp' 2>/dev/null)
  if ((${#files[@]} == 0)) || ! command -v clang-format >/dev/null; then
    echo "==> format check skipped (no git checkout or no clang-format)"
    return 0
  fi
  echo "==> clang-format check (${#files[@]} files)"
  clang-format --dry-run -Werror "${files[@]}"
}

run_preset() {
  local preset=$1 t0
  t0=$(date +%s)
  echo "==> [$preset] configure + build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -- -j"$jobs"
  echo "==> [$preset] tests"
  ctest --preset "$preset" -j"$jobs"
  echo "==> [$preset] done in $(($(date +%s) - t0)) s"
}

check_format
run_preset release
if [[ ${ROLLSAFE_SKIP_SANITIZE:-0} != 1 ]]; then
  # Leaks are errors too; halt_on_error makes any report fail the test that triggered it.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_preset asan
fi
echo "test.sh: all tests passed"
