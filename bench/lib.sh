# bench/lib.sh — helpers shared by the benchmark scripts (sourced, not run). The caller defines
# log MESSAGE and die MESSAGE, and sets INTERRUPTED=1 from its INT trap.

# true while pid runs and is not a zombie (kill -0 alone also succeeds on an unreaped zombie)
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

# stop_pid NAME PID [LIMIT]: SIGTERM, wait up to LIMIT seconds, then SIGKILL; reaps the child and
# sets STOP_RC to its exit status. (Not for use in $(...): a subshell cannot reap our children.)
STOP_RC=
stop_pid() {
  local name=$1 pid=$2 limit=${3:-15} i
  STOP_RC=0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ((INTERRUPTED)); then sleep 0.2; kill -TERM "$pid" 2>/dev/null || true; fi # 2nd signal: now
    for ((i = 0; i < limit * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) still running after ${limit}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

# to_ms "1.23ms" | "850.00us" | "2.1s" | "1m" | "1h" -> milliseconds with 2 decimals ("n/a" if empty)
to_ms() {
  awk -v v="$1" 'BEGIN{
    if (v == "") { print "n/a"; exit }
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
    else if (u == "h") n *= 3600000;
    printf "%.2f", n }'
}

# parse_wrk FILE: sets W_RPS W_REQS W_NON2XX W_P50 W_P99 (ms) W_SOCKERR from `wrk --latency`
parse_wrk() {
  local f=$1
  W_RPS=$(awk '/^Requests\/sec:/{print $2}' "$f")
  W_REQS=$(awk '/ requests in /{print $1}' "$f")
  W_NON2XX=$(awk '/Non-2xx or 3xx responses:/{print $NF}' "$f")
  W_NON2XX=${W_NON2XX:-0}
  W_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
  W_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
  W_SOCKERR=$(sed -n 's/^ *Socket errors: *//p' "$f")
  [[ -n $W_RPS && -n $W_REQS ]] || die "could not parse wrk output $f:
$(cat "$f")"
}
