#!/usr/bin/env bash
# bench/pg_bench.sh — durable POST /resources on the PostgreSQL store, next to pgbench running a
# one-INSERT-per-transaction script at the same client count, against the same server.
#
# usage: bench/pg_bench.sh [--binary PATH] [--duration 10s] [--connections 64] [--rounds 1]
#                          [--pg-pool N] [--serve-arg ARG]... [--pg URL] [--out DIR]
#
# One invocation: takes the PostgreSQL of `scripts/services.sh status` (or `--pg URL`; when
# neither answers, `scripts/services.sh start`s one and stops it at exit), creates a fresh
# schema for the run, starts `rollsafe serve --store postgres://...?options=-csearch_path=<it>`
# on 127.0.0.1, then per round: `wrk -t1 -cC --latency -s bench/post.lua` against POST
# /resources (each request writes a journal row and a resource row, one commit), then
# `pgbench -n -f <one INSERT> -c C -j 2 -T <same>` into a table as wide as `resources`. Prints
# both transactions/s, the ratio and both p99s (pgbench's from its per-transaction log), checks
# that every acknowledged POST is stored, and writes the summary, raw output and logs to the
# output directory. Drops the schema and stops everything it started on exit, Ctrl-C included.
#
# The machine this was written for has 2 cores shared by wrk, rollsafe and PostgreSQL (and
# pgbench): wrk runs 1 thread so that the client takes as little as it can from the other two.
# Loopback only; every load is bounded by --duration.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/build/release/apps/rollsafe/rollsafe
DURATION=10s
CONNS=64
ROUNDS=1
PG_POOL=
SERVE_ARGS=()
PG_URL=
OUT=

usage() {
  sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}
die() { echo "pg_bench: error: $*" >&2; exit 1; }
log() { echo "pg_bench: $*" >&2; }

while (($#)); do
  case $1 in
    --binary) BIN=${2:?--binary needs a path}; shift 2 ;;
    --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
    --connections) CONNS=${2:?--connections needs a value}; shift 2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
    --pg-pool) PG_POOL=${2:?--pg-pool needs a value}; shift 2 ;;
    --serve-arg) SERVE_ARGS+=("${2?--serve-arg needs a value}"); shift 2 ;;
    --pg) PG_URL=${2:?--pg needs a URL}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "pg_bench: unknown argument: $1" >&2; usage 2 ;;
  esac
done
[[ $DURATION =~ ^([0-9]+)([sm]?)$ ]] || die "--duration must look like 10s, 30s, 1m (got '$DURATION')"
SECS=${BASH_REMATCH[1]}
[[ ${BASH_REMATCH[2]} == m ]] && SECS=$((SECS * 60))
((SECS >= 1 && SECS <= 600)) || die "--duration must be 1s..10m (got '$DURATION')"
if ! [[ $CONNS =~ ^[1-9][0-9]*$ ]] || ((CONNS > 150)); then
  die "--connections must be 1..150 (services.sh allows 200 PostgreSQL connections; got '$CONNS')"
fi
[[ $ROUNDS =~ ^[1-9]$ ]] || die "--rounds must be 1..9 (got '$ROUNDS')"
[[ -z $PG_POOL || $PG_POOL =~ ^[1-9][0-9]*$ ]] || die "--pg-pool must be a positive integer (got '$PG_POOL')"
[[ -z $PG_URL || $PG_URL =~ ^postgres(ql)?://(.*@)?(127\.0\.0\.1|localhost|\[::1\])[:/] ]] ||
  die "--pg must be a postgres:// URL on 127.0.0.1 or localhost (loopback only; got '$PG_URL')"

for tool in wrk pgbench psql curl ss; do
  command -v "$tool" >/dev/null || die "'$tool' not found (scripts/install-deps.sh installs wrk and postgresql)"
done
[[ -x $BIN ]] || die "rollsafe binary not found at $BIN (build: cmake --preset release && cmake --build --preset release, or pass --binary)"
LUA=$ROOT/bench/post.lua
[[ -r $LUA ]] || die "missing $LUA"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$ROOT/bench/results/pg-$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

SCHEMA="pgbench_${STAMP//-/_}_$$"
RUN_ID="p$STAMP-$$-$RANDOM"
STARTED_SERVICES=0
SCHEMA_MADE=0
RS_PID=
LOAD_PID=
INTERRUPTED=0

# alive, stop_pid, to_ms, parse_wrk
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

psql_q() { psql -X -q -At -v ON_ERROR_STOP=1 "$PG_URL" "$@"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then kill -TERM "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
  if [[ -n $RS_PID ]]; then stop_pid rollsafe "$RS_PID" 15; fi
  if ((SCHEMA_MADE)); then
    psql_q -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 ||
      log "could not drop schema $SCHEMA"
  fi
  if ((STARTED_SERVICES)); then "$ROOT/scripts/services.sh" stop >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'INTERRUPTED=1; log "interrupted, stopping everything"; exit 130' INT
trap 'INTERRUPTED=1; exit 143' TERM

# wrk prints latencies as 635.00us, 1.23ms, 2.00s: convert to milliseconds.

# Runs "$@" in the background and waits, so that Ctrl-C reaches our INT trap at once (wrk and
# pgbench catch SIGINT themselves, and bash ignores a SIGINT its foreground child handled).
run_bg() { # OUTFILE CMD...
  local f=$1 rc=0
  shift
  "$@" >"$f" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: the running one, or one started for this run

if [[ -z $PG_URL ]]; then
  if svc=$("$ROOT/scripts/services.sh" status 2>/dev/null); then
    PG_URL=$(sed -n 's/^ROLLSAFE_TEST_PG=//p' <<<"$svc")
  elif pg_isready -q -h 127.0.0.1 -p "${PG_PORT:-55432}" 2>/dev/null; then
    die "a PostgreSQL answers on 127.0.0.1:${PG_PORT:-55432} but 'scripts/services.sh status' fails (Redis down?): pass --pg URL"
  else
    log "no PostgreSQL running: scripts/services.sh start (stopped again at exit)"
    svc=$("$ROOT/scripts/services.sh" start) || die "scripts/services.sh start failed"
    STARTED_SERVICES=1
    PG_URL=$(sed -n 's/^ROLLSAFE_TEST_PG=//p' <<<"$svc")
  fi
fi
[[ -n $PG_URL ]] || die "no PostgreSQL URL (scripts/services.sh status printed none)"
psql_q -c 'SELECT 1' >/dev/null || die "cannot connect to $PG_URL"

# Both sides must measure real commits: one server, so the same settings for both.
read -r PG_FSYNC PG_SYNC_COMMIT < <(psql_q -F ' ' -c \
  "SELECT current_setting('fsync'), current_setting('synchronous_commit')")
[[ $PG_FSYNC == on && $PG_SYNC_COMMIT == on ]] ||
  die "PostgreSQL has fsync=$PG_FSYNC synchronous_commit=$PG_SYNC_COMMIT: both must be on"
PG_SETTINGS=$(psql_q -F '=' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings
  WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes',
                 'commit_delay', 'shared_buffers', 'max_connections', 'wal_level',
                 'max_wal_size', 'checkpoint_timeout') ORDER BY name" | paste -sd' ')
PG_VERSION=$(psql_q -c 'SHOW server_version')

# A schema of its own: rollsafe migrates into it (search_path), pgbench inserts into its table.
psql_q -c "SET client_min_messages = warning; CREATE SCHEMA $SCHEMA" >/dev/null ||
  die "cannot create schema $SCHEMA"
SCHEMA_MADE=1
# As wide as rollsafe's `resources` row (id, data, created_at, idempotency_key, owner,
# principal), keyed by a text id that grows over time like rollsafe's UUIDv7s.
psql_q -c "CREATE TABLE $SCHEMA.pgb (id TEXT PRIMARY KEY, data TEXT NOT NULL,
  created_at TEXT NOT NULL, idempotency_key TEXT, owner TEXT NOT NULL DEFAULT '',
  principal TEXT NOT NULL DEFAULT '')" >/dev/null
PGB_SCRIPT=$OUT/insert.sql
cat >"$PGB_SCRIPT" <<SQL
\\set n :n + 1
INSERT INTO $SCHEMA.pgb (id, data, created_at, idempotency_key, owner, principal) VALUES ('$RUN_ID-' || lpad(:n::text, 12, '0') || '-' || :client_id, '{"sku":"bench-' || lpad(:n::text, 8, '0') || '","qty":3,"price":12.5,"tags":["a","b"],"note":"wrk"}', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), '$RUN_ID-t' || :client_id || '-' || :n, 'bench', 'anonymous');
SQL

SEP='?'
[[ $PG_URL == *\?* ]] && SEP='&'
STORE_URL="$PG_URL${SEP}options=-csearch_path%3D$SCHEMA"

# ---------------------------------------------------------------------------------------------
# rollsafe: ports from its `"event":"listening"` stdout line

start_rollsafe() {
  local t0 line rc=0 code
  local args=(serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --store "$STORE_URL" --no-access-log)
  [[ -z $PG_POOL ]] || args+=(--pg-pool "$PG_POOL")
  args+=("${SERVE_ARGS[@]}")
  RS_CMD="$BIN ${args[*]}"
  "$BIN" "${args[@]}" >"$OUT/rollsafe.log" 2>"$OUT/rollsafe.stderr" &
  RS_PID=$!
  t0=$SECONDS
  while ((SECONDS - t0 < 15)); do
    line=$(grep -m1 '"event":"listening"' "$OUT/rollsafe.log" 2>/dev/null || true)
    [[ -n $line ]] && break
    if ! alive "$RS_PID"; then
      wait "$RS_PID" 2>/dev/null || rc=$?
      RS_PID=
      die "rollsafe exited with status $rc before it was listening:
  command: $RS_CMD
  stdout:  $(tail -5 "$OUT/rollsafe.log")
  stderr:  $(tail -5 "$OUT/rollsafe.stderr")"
    fi
    sleep 0.05
  done
  [[ -n $line ]] || die "rollsafe printed no \"event\":\"listening\" line within 15 s"
  RS_API=$(grep -o '"api_port":[0-9]*' <<<"$line" | cut -d: -f2)
  RS_ADMIN=$(grep -o '"admin_port":[0-9]*' <<<"$line" | cut -d: -f2)
  [[ -n $RS_API && -n $RS_ADMIN ]] || die "cannot parse api_port/admin_port from: $line"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$RS_ADMIN/readyz" || true)
  [[ $code == 200 ]] || die "rollsafe admin /readyz answered '$code', expected 200"
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
    -H "Idempotency-Key: $RUN_ID-probe" --data '{"data":{"probe":true}}' \
    "http://127.0.0.1:$RS_API/resources" || true)
  [[ $code == 201 ]] || die "rollsafe POST /resources answered '$code', expected 201"
}

# ---------------------------------------------------------------------------------------------
# one round: wrk, then pgbench, same client count and duration


# parse_pgbench FILE LOGPREFIX: G_TPS G_TX G_FAILED G_P50 G_P99 (ms, from the per-transaction
# log: field 3 is the transaction's latency in microseconds)
parse_pgbench() {
  local f=$1 prefix=$2
  G_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$f")
  G_TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$f")
  G_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$f")
  G_FAILED=${G_FAILED:-0}
  [[ -n $G_TPS && -n $G_TX ]] || die "could not parse pgbench output $f:
$(cat "$f")"
  read -r G_P50 G_P99 < <(cat "$prefix".* | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "n/a n/a"; exit }
          i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
          printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }')
}

declare -a T_RPS T_P50 T_P99 T_NON2XX T_TPS T_GP50 T_GP99 T_RATIO
TOTAL_2XX=0

run_round() { # N
  local r=$1 wf=$OUT/wrk-r$1.txt gf=$OUT/pgbench-r$1.txt
  log "round $r: wrk -t1 -c$CONNS -d${SECS}s --latency -s bench/post.lua http://127.0.0.1:$RS_API/resources"
  BENCH_RUN_ID="$RUN_ID-r$r" run_bg "$wf" wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s --latency \
    -s "$LUA" "http://127.0.0.1:$RS_API/resources" || die "wrk failed:
$(cat "$wf")"
  parse_wrk "$wf"
  alive "$RS_PID" || die "rollsafe died during the load (stderr: $(tail -5 "$OUT/rollsafe.stderr"))"
  T_RPS[r]=$W_RPS T_P50[r]=$W_P50 T_P99[r]=$W_P99 T_NON2XX[r]=$W_NON2XX
  [[ -z $W_SOCKERR ]] || log "round $r: wrk socket errors: $W_SOCKERR"
  TOTAL_2XX=$((TOTAL_2XX + W_REQS - W_NON2XX))
  sleep 1 # requests wrk abandoned at its deadline may still commit; let the server go idle

  log "round $r: pgbench -n -f insert.sql -c $CONNS -j 2 -T $SECS (one INSERT per transaction)"
  rm -f "$OUT/pgbench-r$r.log".*
  # n counts each client's transactions; each round starts its own range, so ids never repeat
  run_bg "$gf" pgbench -n -f "$PGB_SCRIPT" -D n=$(((r - 1) * 1000000000)) -c "$CONNS" -j 2 -T "$SECS" \
    --log --log-prefix="$OUT/pgbench-r$r.log" "$PG_URL" || die "pgbench failed:
$(cat "$gf")"
  parse_pgbench "$gf" "$OUT/pgbench-r$r.log"
  ((G_FAILED == 0)) || die "pgbench: $G_FAILED failed transactions (see $gf)"
  T_TPS[r]=$G_TPS T_GP50[r]=$G_P50 T_GP99[r]=$G_P99
  T_RATIO[r]=$(awk -v a="$W_RPS" -v b="$G_TPS" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "0" }')
  log "round $r: rollsafe ${W_RPS} req/s (p99 ${W_P99} ms), pgbench ${G_TPS} tx/s (p99 ${G_P99} ms), ratio ${T_RATIO[r]}"
  sleep 1
}

# ---------------------------------------------------------------------------------------------
# run

{
  echo "date:       $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host:       $(uname -srm), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
  echo "rollsafe:   $("$BIN" --version 2>&1 | head -1) ($BIN)"
  echo "git:        $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
  echo "postgresql: $PG_VERSION; $PG_SETTINGS"
  echo "wrk:        $(wrk -v 2>&1 | head -1 | awk '{print $2}'), -t1 -c$CONNS -d${SECS}s --latency -s bench/post.lua"
  echo "pgbench:    $(pgbench --version), -n -f insert.sql -c $CONNS -j 2 -T $SECS"
} >"$OUT/env.txt"

log "output: $OUT"
start_rollsafe
log "rollsafe pid $RS_PID, api 127.0.0.1:$RS_API: $RS_CMD"
echo "serve:      $RS_CMD" >>"$OUT/env.txt"
sleep 1
for ((round = 1; round <= ROUNDS; round++)); do run_round "$round"; done

ROWS=$(psql_q -c "SELECT count(*) FROM $SCHEMA.resources") || die "cannot count $SCHEMA.resources"
JROWS=$(psql_q -c "SELECT count(*) FROM $SCHEMA.journal") || die "cannot count $SCHEMA.journal"
log "stopping rollsafe (SIGTERM)"
stop_pid rollsafe "$RS_PID" 40
RS_EXIT=$STOP_RC
RS_PID=

# ---------------------------------------------------------------------------------------------
# report

{
  echo "## rollsafe on PostgreSQL vs pgbench — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "$(nproc) cores shared by wrk (1 thread), rollsafe, pgbench and PostgreSQL $PG_VERSION; 127.0.0.1 only."
  echo "rollsafe: \`${RS_CMD#"$ROOT"/}\` (store URL with search_path=$SCHEMA)."
  echo "wrk -t1 -c$CONNS -d${SECS}s --latency -s bench/post.lua; pgbench -n -f insert.sql -c $CONNS -j 2 -T $SECS."
  echo "PostgreSQL: $PG_SETTINGS"
  echo
  echo "| round | rollsafe POST /resources req/s | p50 | p99 | non-2xx | pgbench INSERT tx/s | p50 | p99 | ratio |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for ((round = 1; round <= ROUNDS; round++)); do
    printf '| %d | %.0f | %s ms | %s ms | %s | %.0f | %s ms | %s ms | **%s** |\n' "$round" \
      "${T_RPS[round]}" "${T_P50[round]}" "${T_P99[round]}" "${T_NON2XX[round]}" \
      "${T_TPS[round]}" "${T_GP50[round]}" "${T_GP99[round]}" "${T_RATIO[round]}"
  done
  echo
  echo "- rows: resources $ROWS, journal $JROWS (2xx counted by wrk: $TOTAL_2XX, plus 1 probe)"
  echo "- rollsafe SIGTERM to exit: status $RS_EXIT"
  echo "- target: rollsafe >= 60% of pgbench's tx/s (each request = one journal row + one resource row)"
  echo
  echo "Raw output: $OUT"
} | tee "$OUT/summary.md"

# A lost acknowledged write or a failed shutdown is a correctness failure; the ratio is reported.
((ROWS >= TOTAL_2XX)) || die "acknowledged writes missing: $ROWS rows < $TOTAL_2XX 2xx responses"
[[ $RS_EXIT == 0 ]] || die "rollsafe exited with status $RS_EXIT after SIGTERM (expected 0)"
