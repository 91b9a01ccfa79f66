#!/usr/bin/env bash
# services.sh start|stop|status — a throwaway PostgreSQL 15 on 127.0.0.1 for the PostgreSQL
# store (`--store postgres://...`) and its tests. Run as root on Debian 12 (scripts/install-deps.sh
# installs postgresql and libpq-dev). Only PostgreSQL is started for now; Redis (for the lock
# of issue 5) will join it here.
#
#   start   initdb a fresh cluster under $SVC_DIR/pg (wiped first; a running one is kept),
#           start it, create database rollsafe_test and print its URL on stdout:
#             postgres://postgres@127.0.0.1:55432/rollsafe_test
#   stop    fast shutdown (idempotent)
#   status  exit 0 and print the URL while it runs, exit 1 otherwise
#
# Durability stays on (fsync, synchronous_commit), so tests and benchmarks see real commits.
# Trust authentication, and only on 127.0.0.1: never point this at a shared machine's network.
# Environment: SVC_DIR (default /tmp/rollsafe-services), PG_PORT (default 55432).
set -euo pipefail

SVC_DIR=${SVC_DIR:-/tmp/rollsafe-services}
PG_PORT=${PG_PORT:-55432}
PG_BIN=/usr/lib/postgresql/15/bin # initdb/pg_ctl are not on PATH on Debian
PG_DB=rollsafe_test
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
PG_DIR=$SVC_DIR/pg

# true while pid runs and is not a zombie (kill -0 alone also succeeds on an unreaped zombie)
alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]
}
# initdb/postgres refuse root: run as postgres, from a directory it can enter
as_pg() { (cd / && runuser -u postgres -- "$@"); }
pg_pid() { [[ -s $PG_DIR/data/postmaster.pid ]] && head -1 "$PG_DIR/data/postmaster.pid"; }
pg_running() {
  local pid
  pid=$(pg_pid) && alive "$pid"
}

start_pg() {
  if pg_running; then
    echo "postgres: already running (pid $(pg_pid))" >&2
    echo "$PG_URL"
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || {
    echo "services.sh: run as root" >&2
    return 1
  }
  [[ -x $PG_BIN/initdb ]] || {
    echo "services.sh: $PG_BIN/initdb missing (apt-get install postgresql)" >&2
    return 1
  }
  [[ -n $SVC_DIR && $SVC_DIR != / ]] || {
    echo "services.sh: bad SVC_DIR" >&2
    return 2
  }
  rm -rf "$PG_DIR"
  mkdir -p "$SVC_DIR"
  chmod 0755 "$SVC_DIR"
  as_pg test -x "$SVC_DIR" || {
    echo "services.sh: user postgres cannot enter $SVC_DIR: make it and every parent o+x" >&2
    return 1
  }
  install -d -m 0700 -o postgres -g postgres "$PG_DIR"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    return 1
  }
  cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = on
synchronous_commit = on
max_connections = 200
CONF
  # trust on loopback only (initdb's default pg_hba also trusts the unix socket, which lives in
  # PG_DIR, mode 0700)
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null || {
    cat "$PG_DIR/postgres.log" >&2
    return 1
  }
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
  psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE DATABASE $PG_DB" >/dev/null
  echo "postgres: pid $(pg_pid) port $PG_PORT" >&2
  echo "$PG_URL"
}

stop_pg() {
  local pid i
  pid=$(pg_pid) || {
    echo "postgres: not running" >&2
    return 0
  }
  alive "$pid" || {
    echo "postgres: pid $pid not running" >&2
    return 0
  }
  kill -INT "$pid" # fast shutdown
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || {
      echo "postgres: pid $pid stopped" >&2
      return 0
    }
    sleep 0.1
  done
  echo "postgres: pid $pid still running after 30 s, sending KILL" >&2
  kill -KILL "$pid"
}

case ${1:-} in
  start) start_pg ;;
  stop) stop_pg ;;
  status)
    if pg_running; then
      echo "$PG_URL"
    else
      echo "postgres: not running" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
