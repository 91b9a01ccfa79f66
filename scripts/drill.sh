#!/usr/bin/env bash
# scripts/drill.sh — the main job: prove zero loss while replicas are rolled, drained and killed.
#
# On a fresh Debian 12 machine: installs what is missing (scripts/install-deps.sh: nginx, the
# nginx Lua module, the compiler and libraries), builds the release binary, then runs
#
#   rollsafe drill --scenario all --report drill-report/drill.json --html drill-report/drill.html
#
# on the embedded SQLite store: 3 replicas behind a real nginx (Lua balancer), 32 retrying
# clients, rolling update + node drain + crash repeated until 3,000 requests were made, then an
# audit of every write. Prints the verdict table and the paths of the reports; exits with the
# drill's status (0 = nothing failed, lost, duplicated or half-done). Extra arguments go to
# `rollsafe drill` (e.g. `scripts/drill.sh --scenario crash --requests 500`, or the comparison
# switches `--no-retry --no-drain-delay --gateway-retry off`). ROLLSAFE_DRILL_OUT changes the
# report directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${ROLLSAFE_DRILL_OUT:-$ROOT/drill-report}
BIN=$ROOT/build/release/apps/rollsafe/rollsafe

echo "drill.sh: installing missing dependencies (scripts/install-deps.sh)" >&2
"$ROOT/scripts/install-deps.sh" >&2
echo "drill.sh: building the release binary" >&2
(cd "$ROOT" && cmake --preset release >/dev/null && cmake --build --preset release --target rollsafe) >&2
mkdir -p "$OUT"
echo "drill.sh: running rollsafe drill (about 1-2 minutes; the progress line is on stderr)" >&2
exec "$BIN" drill --scenario all --report "$OUT/drill.json" --html "$OUT/drill.html" "$@"
