#!/usr/bin/env bash
# scripts/demo.sh — rollsafe in about 15 seconds.
#
# Starts three replicas of `rollsafe serve` on one shared SQLite file (all on 127.0.0.1), sends
# them a few writes, then shuts replica 1 down the way an orchestrator would — SIGTERM while a
# 4-second POST is in flight — and narrates what happens: readiness flips to 503, requests are
# still served during the drain delay (with `Connection: close`), the listeners close, the
# in-flight POST still completes and is stored, the process exits 0, and replicas 2 and 3 keep
# serving throughout. Ends with `demo: OK — ...` (exit 0) or `demo: FAILED — ...` (exit 1).
#
# Builds first when the binary is missing (scripts/install-deps.sh, then the release preset).
# Needs only bash, curl, sqlite3, grep and sed. Set ROLLSAFE_BIN to use another binary,
# NO_COLOR=1 for plain output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ROLLSAFE_BIN:-$ROOT/build/release/apps/rollsafe/rollsafe}
DRAIN_DELAY=2s
DRAIN_MS=2000
SHUTDOWN_TIMEOUT=10s
LONG_WORK_MS=4000
QUICK_POSTS=3

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  B=$'\e[1m' DIM=$'\e[2m' GRN=$'\e[32m' RED=$'\e[31m' YEL=$'\e[33m' CYN=$'\e[36m' RST=$'\e[0m'
else
  B='' DIM='' GRN='' RED='' YEL='' CYN='' RST=''
fi

step() { printf '\n%s▶ %s%s\n' "$B" "$*" "$RST"; }
say() { printf '  %s\n' "$*"; }
FAILS=()
pass() { printf '  %s✓%s %s\n' "$GRN" "$RST" "$*"; }
# fail REASON [DETAIL]: REASON also goes into the final verdict line
fail() { printf '  %s✗ %s%s\n' "$RED" "$*" "$RST"; FAILS+=("$1"); }
die() {
  printf '%sdemo: FAILED — %s%s\n' "$RED$B" "$*" "$RST"
  exit 1
}

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
secs() { printf '%d.%02d s' $(($1 / 1000)) $(($1 % 1000 / 10)); } # ms -> "1.23 s"
T0=
stamp() { local ms=$(($(now_ms) - T0)); printf '%st+%d.%03ds%s' "$CYN" $((ms / 1000)) $((ms % 1000)) "$RST"; }
event() { printf '  %s  %s\n' "$(stamp)" "$*"; }

CURL=(curl -s --noproxy '*')
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

# ---------------------------------------------------------------------------------------------
# cleanup: every process started here is stopped on exit, Ctrl-C included

TMP=$(mktemp -d /tmp/rollsafe-demo.XXXXXX)
DB=$TMP/shared.db
PIDS=() API=() ADMIN=()
BG_PID='' LONG_PID=''
KEEP_TMP=0
# shellcheck disable=SC2317  # only reached through the EXIT trap (shellcheck 0.9 false positive)
cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  for p in "$BG_PID" "$LONG_PID"; do
    if [[ -n $p ]]; then kill "$p" 2>/dev/null || true; fi
  done
  # a second SIGTERM cancels the drain: replicas stop at once
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.1
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    local any=0
    for p in "${PIDS[@]}"; do alive "$p" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  if ((KEEP_TMP || rc != 0)) && [[ -n $(ls -A "$TMP" 2>/dev/null) ]]; then
    printf '%s  (logs and database kept in %s)%s\n' "$DIM" "$TMP" "$RST"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'printf "\n%sinterrupted%s\n" "$YEL" "$RST"; exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 0. binary

for tool in curl sqlite3 grep sed; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (scripts/install-deps.sh installs it)"
done

printf '%srollsafe demo%s — three replicas, one SQLite file, one graceful shutdown\n' "$B" "$RST"
if [[ ! -x $BIN ]]; then
  [[ -z ${ROLLSAFE_BIN:-} ]] || die "ROLLSAFE_BIN=$BIN is not an executable"
  step "Building rollsafe (no binary at ${BIN#"$ROOT"/})"
  "$ROOT/scripts/install-deps.sh" || die "scripts/install-deps.sh failed"
  (cd "$ROOT" && cmake --preset release && cmake --build --preset release) || die "the build failed"
  [[ -x $BIN ]] || die "the build finished but $BIN does not exist"
fi

# ---------------------------------------------------------------------------------------------
# helpers

# post PORT KEY WORK_MS NAME: POST /resources; sets P_CODE and P_BODY; headers in $TMP/NAME.h
post() {
  local port=$1 key=$2 work=$3 name=$4 out
  out=$("${CURL[@]}" -o "$TMP/$name.body" -D "$TMP/$name.h" -w '%{http_code}' --max-time 30 \
    -X POST -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
    --data "{\"data\":{\"demo\":\"$name\"},\"work_ms\":$work}" "http://127.0.0.1:$port/resources" || true)
  P_CODE=$out
  P_BODY=$(cat "$TMP/$name.body" 2>/dev/null || true)
}
header() { grep -i "^$1:" "$2" 2>/dev/null | head -1 | tr -d '\r' | sed 's/^[^:]*: *//'; }
json_id() { sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$1"; }
readyz() { "${CURL[@]}" -o "$TMP/readyz.body" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz" || true; }
ACKED=0 # 201s received: every one of them must be a row in the shared database

# ---------------------------------------------------------------------------------------------
# 1. three replicas, one database

step "Starting 3 replicas on one SQLite file"
say "${DIM}$("$BIN" --version 2>&1 | head -1) · $BIN${RST}"
say "${DIM}database: $DB · --drain-delay $DRAIN_DELAY --shutdown-timeout $SHUTDOWN_TIMEOUT${RST}"
for i in 1 2 3; do
  "$BIN" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --store "sqlite:$DB" \
    --name "replica-$i" --drain-delay "$DRAIN_DELAY" --shutdown-timeout "$SHUTDOWN_TIMEOUT" \
    >"$TMP/replica-$i.log" 2>"$TMP/replica-$i.err" &
  PIDS[i]=$!
done
for i in 1 2 3; do
  line=''
  for ((t = 0; t < 150; t++)); do
    line=$(grep -m1 '"event":"listening"' "$TMP/replica-$i.log" 2>/dev/null || true)
    [[ -n $line ]] && break
    if ! alive "${PIDS[i]}"; then
      rc=0
      wait "${PIDS[i]}" 2>/dev/null || rc=$?
      [[ ! -s $TMP/replica-$i.log ]] || say "stdout: $(tail -3 "$TMP/replica-$i.log")"
      [[ ! -s $TMP/replica-$i.err ]] || say "stderr: $(tail -3 "$TMP/replica-$i.err")"
      die "replica-$i exited with status $rc during startup"
    fi
    sleep 0.1
  done
  [[ -n $line ]] || die "replica-$i printed no \"listening\" line within 15 s"
  API[i]=$(grep -o '"api_port":[0-9]*' <<<"$line" | cut -d: -f2)
  ADMIN[i]=$(grep -o '"admin_port":[0-9]*' <<<"$line" | cut -d: -f2)
  [[ -n ${API[i]} && -n ${ADMIN[i]} ]] || die "cannot read the ports of replica-$i from: $line"
  printf '  replica-%d  pid %-7s api %shttp://127.0.0.1:%s%s  admin %shttp://127.0.0.1:%s%s\n' \
    "$i" "${PIDS[i]}" "$B" "${API[i]}" "$RST" "$B" "${ADMIN[i]}" "$RST"
done

step "Readiness (GET /readyz on each admin port)"
for i in 1 2 3; do
  code=$(readyz "${ADMIN[i]}")
  if [[ $code == 200 ]]; then
    pass "replica-$i  200  $(cat "$TMP/readyz.body")"
  else
    fail "replica-$i /readyz answered $code at startup" "$(cat "$TMP/readyz.body" 2>/dev/null)"
  fi
done

step "A few quick writes to each replica (POST /resources)"
for i in 1 2 3; do
  codes=() ids=()
  for ((n = 1; n <= QUICK_POSTS; n++)); do
    post "${API[i]}" "demo-$$-r$i-$n" 0 "quick-r$i-$n"
    codes+=("$P_CODE")
    [[ $P_CODE == 201 ]] && ACKED=$((ACKED + 1)) && ids+=("$(json_id "$P_BODY" | cut -c1-8)…")
  done
  if [[ ${#ids[@]} == "$QUICK_POSTS" ]]; then
    pass "replica-$i  ${codes[*]}  ${DIM}ids ${ids[*]}${RST}"
  else
    fail "replica-$i quick POSTs answered ${codes[*]}"
  fi
done
say "${DIM}e.g. $P_BODY${RST}"

# ---------------------------------------------------------------------------------------------
# 2. the rolling-restart moment

step "Shutting down replica-1 while it is busy"
say "A ${LONG_WORK_MS} ms POST goes to replica-1; 0.5 s later replica-1 gets SIGTERM, as from"
say "Kubernetes or systemd. Meanwhile a client keeps writing to replicas 2 and 3."
echo

# steady traffic to replicas 2 and 3 for the whole scenario
: >"$TMP/bg.codes"
(
  n=0
  while [[ ! -e $TMP/bg.stop ]]; do
    n=$((n + 1))
    i=$((2 + n % 2))
    c=$("${CURL[@]}" -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
      -H "Idempotency-Key: demo-$$-bg-$n" --data "{\"data\":{\"demo\":\"bg-$n\"}}" \
      "http://127.0.0.1:${API[i]}/resources" || true)
    echo "replica-$i $c" >>"$TMP/bg.codes"
    sleep 0.1
  done
) &
BG_PID=$!

LONG_KEY="demo-$$-long"
T0=$(now_ms)
(
  "${CURL[@]}" -o "$TMP/long.body" -D "$TMP/long.h" -w '%{http_code}' --max-time 30 -X POST \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $LONG_KEY" \
    --data "{\"data\":{\"demo\":\"long\"},\"work_ms\":$LONG_WORK_MS}" \
    "http://127.0.0.1:${API[1]}/resources" >"$TMP/long.code" 2>/dev/null || true
  now_ms >"$TMP/long.done"
) &
LONG_PID=$!
event "POST /resources work_ms=$LONG_WORK_MS (Idempotency-Key: $LONG_KEY) → replica-1, in the background"
sleep 0.5

kill -TERM "${PIDS[1]}"
T_TERM=$(now_ms)
event "${YEL}SIGTERM → replica-1${RST} (pid ${PIDS[1]})"

# readiness must flip to 503 at once
code='' ready_ms=''
while (($(now_ms) - T_TERM < 1500)); do
  code=$(readyz "${ADMIN[1]}")
  if [[ $code == 503 ]]; then ready_ms=$(($(now_ms) - T_TERM)); break; fi
  sleep 0.02
done
if [[ -n $ready_ms ]]; then
  event "replica-1 /readyz → ${B}503${RST} $(cat "$TMP/readyz.body")  ${DIM}(${ready_ms} ms after SIGTERM)${RST}"
  ((ready_ms <= 100)) || fail "replica-1 /readyz took ${ready_ms} ms to turn 503 (contract: 100 ms)"
else
  event "replica-1 /readyz → $code"
  fail "replica-1 /readyz never answered 503 while draining (last: $code)"
fi

# still served during the drain delay, but every response asks the client to go elsewhere
post "${API[1]}" "demo-$$-during-drain" 0 drain
conn=$(header connection "$TMP/drain.h")
envoy=$(header x-envoy-immediate-health-check-fail "$TMP/drain.h")
event "POST during the drain delay → ${B}$P_CODE${RST}, Connection: ${conn:-(none)}${envoy:+, x-envoy-immediate-health-check-fail: $envoy}"
[[ $P_CODE == 201 ]] && ACKED=$((ACKED + 1))
[[ $P_CODE == 201 ]] || fail "a POST during the drain delay answered $P_CODE (expected 201)"
[[ ${conn,,} == close ]] || fail "the response during the drain delay lacks Connection: close"

# after the drain delay the listeners close: new connections are refused
refused_ms='' last=''
while (($(now_ms) - T_TERM < DRAIN_MS + 3000)); do
  rc=0
  last=$("${CURL[@]}" -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:${API[1]}/livez") || rc=$?
  if ((rc == 7)); then refused_ms=$(($(now_ms) - T_TERM)); break; fi
  sleep 0.05
done
if [[ -n $refused_ms ]]; then
  event "new connection to replica-1 → ${B}refused${RST}  ${DIM}(listeners closed $(secs "$refused_ms") after SIGTERM; drain delay $DRAIN_DELAY)${RST}"
  ((refused_ms >= DRAIN_MS - 100)) || fail "replica-1 refused connections after $refused_ms ms, before the ${DRAIN_DELAY} drain delay ended"
else
  event "replica-1 still accepts connections (last answer: $last)"
  fail "replica-1 still accepted connections $(secs $((DRAIN_MS + 3000))) after SIGTERM"
fi

# the in-flight request is allowed to finish, and its write is committed
for ((t = 0; t < 300; t++)); do [[ -s $TMP/long.done ]] && break; sleep 0.1; done
wait "$LONG_PID" 2>/dev/null || true
LONG_PID=''
long_code=$(cat "$TMP/long.code" 2>/dev/null || true)
long_body=$(cat "$TMP/long.body" 2>/dev/null || true)
long_ms=$(($(cat "$TMP/long.done" 2>/dev/null || now_ms) - T0))
if [[ $long_code == 201 ]]; then
  ACKED=$((ACKED + 1))
  long_conn=$(header connection "$TMP/long.h")
  printf '  %st+%d.%03ds%s  the %d ms POST → %s201%s after %s%s: %s\n' "$CYN" $((long_ms / 1000)) $((long_ms % 1000)) "$RST" \
    "$LONG_WORK_MS" "$B" "$RST" "$(secs "$long_ms")" "${long_conn:+ (Connection: $long_conn)}" "$long_body"
else
  event "the $LONG_WORK_MS ms POST → ${long_code:-no answer} $long_body"
  fail "the in-flight POST answered ${long_code:-nothing} (expected 201)"
fi

# and the process exits 0 as soon as nothing is left
exit_rc=''
for ((t = 0; t < 200; t++)); do alive "${PIDS[1]}" || break; sleep 0.05; done
if alive "${PIDS[1]}"; then
  fail "replica-1 was still running $(secs $(($(now_ms) - T_TERM))) after SIGTERM"
else
  exit_ms=$(($(now_ms) - T_TERM))
  exit_rc=0
  wait "${PIDS[1]}" 2>/dev/null || exit_rc=$?
  event "replica-1 exited with status ${B}$exit_rc${RST}, $(secs "$exit_ms") after SIGTERM"
  [[ $exit_rc == 0 ]] || fail "replica-1 exited with status $exit_rc (expected 0)"
fi

touch "$TMP/bg.stop"
wait "$BG_PID" 2>/dev/null || true
BG_PID=''

# ---------------------------------------------------------------------------------------------
# 3. what the logs and the database say

step "replica-1's own account (its JSON log: signal, lifecycle, exit)"
grep -E '"event":"(signal|lifecycle|exit)"' "$TMP/replica-1.log" | sed "s/^/    ${DIM}/; s/\$/${RST}/" || say "(no lifecycle lines)"
grep -q '"from":"ready","to":"draining"' "$TMP/replica-1.log" || fail "replica-1 logged no ready→draining transition"
grep -q '"event":"exit","code":0' "$TMP/replica-1.log" || fail "replica-1 logged no {\"event\":\"exit\",\"code\":0}"

step "Replicas 2 and 3 kept serving"
bg_total=$(wc -l <"$TMP/bg.codes")
bg_ok=$(grep -c ' 201$' "$TMP/bg.codes" || true)
ACKED=$((ACKED + bg_ok))
if ((bg_total > 0 && bg_ok == bg_total)); then
  pass "$bg_ok/$bg_total POSTs to replicas 2 and 3 during the shutdown → 201"
else
  fail "only $bg_ok of $bg_total POSTs to replicas 2 and 3 succeeded during the shutdown" \
    "$(grep -v ' 201$' "$TMP/bg.codes" | sort | uniq -c | tr '\n' ' ')"
fi
for i in 2 3; do
  code=$(readyz "${ADMIN[i]}")
  if [[ $code == 200 ]]; then pass "replica-$i /readyz → 200"; else fail "replica-$i /readyz answered $code after the shutdown"; fi
done

step "The shared database"
rows=$(sqlite3 -cmd '.timeout 5000' "$DB" 'SELECT count(*) FROM resources' 2>&1) || die "sqlite3 could not read $DB: $rows"
sqlite3 -cmd '.timeout 5000' "$DB" "SELECT owner, count(*) FROM resources GROUP BY owner ORDER BY owner" |
  while IFS='|' read -r owner n; do say "${owner:-(no owner)}: $n rows"; done
if ((rows == ACKED)); then
  pass "$rows rows = $ACKED acknowledged writes: nothing lost, nothing extra"
elif ((rows > ACKED)); then
  pass "$rows rows ≥ $ACKED acknowledged writes (a request that timed out on the client side may still have committed)"
else
  fail "$rows rows < $ACKED acknowledged writes: acknowledged writes are missing"
fi
long_id=$(json_id "$long_body")
if [[ -n $long_id ]]; then
  stored_key=$(sqlite3 -cmd '.timeout 5000' "$DB" "SELECT idempotency_key FROM resources WHERE id='${long_id//\'/}'")
  if [[ $stored_key == "$LONG_KEY" ]]; then
    pass "the long POST's row is there: id $long_id, Idempotency-Key $stored_key"
  else
    fail "the long POST's row (id $long_id) is missing or has key '$stored_key'"
  fi
fi

# Every write exactly once: no key stored twice, no effect without a completed journal row.
audit_out=$("$BIN" audit --store "sqlite:$DB" 2>&1 >/dev/null) && audit_rc=0 || audit_rc=$?
summary=$("$BIN" audit --store "sqlite:$DB" 2>/dev/null | tail -1)
if ((audit_rc == 0)); then
  pass "rollsafe audit: exit 0 — $summary"
else
  fail "rollsafe audit exited $audit_rc" "$audit_out"
fi

step "Stopping replicas 2 and 3"
kill -TERM "${PIDS[2]}" "${PIDS[3]}"
for i in 2 3; do
  for ((t = 0; t < 300; t++)); do alive "${PIDS[i]}" || break; sleep 0.05; done
  rc=0
  wait "${PIDS[i]}" 2>/dev/null || rc=$?
  if [[ $rc == 0 ]]; then pass "replica-$i exited 0"; else fail "replica-$i exited with status $rc"; fi
done

# ---------------------------------------------------------------------------------------------
echo
status=0
if ((${#FAILS[@]} == 0)); then
  printf '%sdemo: OK — replica-1 drained and exited 0 in %s; its in-flight %d ms POST was stored (201); replicas 2 and 3 answered %d/%d; %d acknowledged writes, %d rows%s\n' \
    "$GRN$B" "$(secs "$exit_ms")" "$LONG_WORK_MS" "$bg_ok" "$bg_total" "$ACKED" "$rows" "$RST"
else
  KEEP_TMP=1
  status=1
  msg=$(printf '%s; ' "${FAILS[@]}")
  printf '%sdemo: FAILED — %s%s\n' "$RED$B" "${msg%; }" "$RST"
fi
exit "$status"
