#!/usr/bin/env bash
# bench/drill_layers.sh — what each layer buys: the same drill with layers switched off.
#
# Runs `rollsafe drill --scenario all` once per configuration below, all with the same seed,
# request count and gateway, and prints one markdown row per run: requests, failed (by cause),
# lost, duplicated, half-done, balance mismatches, retried, p99 during the rollout.
# Usage: bench/drill_layers.sh [REQUESTS=1500] [extra drill args...]
# Needs a release build (cmake --preset release && cmake --build --preset release).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ROLLSAFE_BIN:-$ROOT/build/release/apps/rollsafe/rollsafe}
REQUESTS=${1:-1500}
shift || true
OUT=$(mktemp -d /tmp/rollsafe-layers.XXXXXX)

CONFIGS=(
  "all layers on|"
  "no client retry|--no-retry"
  "no gateway retry|--gateway-retry off"
  "no drain delay, no preStop|--no-drain-delay --no-prestop"
  "no client retry, no gateway retry|--no-retry --gateway-retry off"
  "no client retry, no drain delay, no preStop|--no-retry --no-drain-delay --no-prestop"
  "every layer off|--no-retry --no-drain-delay --no-prestop --gateway-retry off"
)

num() { sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$1" | head -1; }
causes() { # "status 502: 12; connect: 3" from the verdict's failed_by_cause object
  sed -n 's/.*"failed_by_cause": *{\([^}]*\)}.*/\1/p' "$1" | head -1 | sed 's/"//g; s/,/; /g; s/:/: /g'
}

echo "| configuration | requests | failed (causes) | lost | duplicated | half-done | balance | retried | p99 during rollout ms | exit |"
echo "|---|---|---|---|---|---|---|---|---|---|"
i=0
for c in "${CONFIGS[@]}"; do
  name=${c%%|*} args=${c#*|}
  i=$((i + 1))
  # shellcheck disable=SC2086  # args are words on purpose
  set +e
  "$BIN" drill --scenario all --requests "$REQUESTS" --seed 42 --work-dir "$OUT/run$i" \
    --report "$OUT/run$i.json" $args "$@" >"$OUT/run$i.out" 2>&1
  rc=$?
  set -e
  r=$OUT/run$i.json
  if [[ ! -s $r ]]; then
    echo "| $name | drill did not finish (exit $rc): see $OUT/run$i.out | | | | | | | | |"
    continue
  fi
  v=$(tr -d '\n' <"$r" | sed 's/.*"verdict": *{\([^}]*}[^}]*\)}.*/\1/')
  printf '%s' "$v" >"$OUT/run$i.verdict"
  p99=$(tr -d '\n' <"$r" | sed -n 's/.*"latency_during_rollout": *{[^}]*"p99_ms": *\([0-9.]*\).*/\1/p')
  f=$(num "$OUT/run$i.verdict" failed)
  cz=$(causes "$OUT/run$i.verdict")
  echo "| $name | $(num "$OUT/run$i.verdict" requests) | $f${cz:+ ($cz)} | $(num "$OUT/run$i.verdict" lost) | $(num "$OUT/run$i.verdict" duplicated) | $(num "$OUT/run$i.verdict" half_done) | $(num "$OUT/run$i.verdict" balance_mismatches) | $(num "$OUT/run$i.verdict" retried) | $p99 | $rc |"
done
echo
echo "reports: $OUT"
