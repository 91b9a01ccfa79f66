#!/usr/bin/env bash
# services.sh start|stop|status|pg-down|pg-up — a throwaway PostgreSQL 15 and Redis 7 on
# 127.0.0.1 for the PostgreSQL store (`--store postgres://...`), the Redis lock
# (`--lock redis://...`) and their tests. Run as root on Debian 12 (scripts/install-deps.sh
# installs postgresql, libpq-dev, redis-server and libhiredis-dev).
#
#   start    initdb a fresh cluster under $SVC_DIR/pg (wiped first; a running one is kept),
#            start it, create database rollsafe_test; start redis-server (no persistence);
#            print both URLs on stdout as shell assignments, ready for `eval`:
#              ROLLSAFE_TEST_PG=postgres://postgres@127.0.0.1:55432/rollsafe_test
#              ROLLSAFE_TEST_REDIS=redis://127.0.0.1:56379
#   stop     fast shutdown of both (idempotent)
#   status   exit 0 and print the assignments while both run, exit 1 otherwise
#   pg-down  stop PostgreSQL, keeping its data (fault tests: the database goes away)
#   pg-up    start the kept cluster again and wait until it accepts connections
#
# Durability stays on (fsync, synchronous_commit), so tests and benchmarks see real commits.
# Trust authentication, and only on 127.0.0.1: never point this at a shared machine's network.
# Environment: SVC_DIR (default /tmp/rollsafe-services), PG_PORT (default 55432), REDIS_PORT
# (default 56379).
set -euo pipefail

SVC_DIR=${SVC_DIR:-/tmp/rollsafe-services}
PG_PORT=${PG_PORT:-55432}
PG_BIN=/usr/lib/postgresql/15/bin # initdb/pg_ctl are not on PATH on Debian
PG_DB=rollsafe_test
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
PG_DIR=$SVC_DIR/pg
REDIS_PORT=${REDIS_PORT:-56379}
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
REDIS_DIR=$SVC_DIR/redis

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

# pg-up: the cluster start_pg created, started again with its data
up_pg() {
  pg_running && return 0
  [[ -f $PG_DIR/data/postgresql.conf ]] || {
    echo "services.sh: no cluster under $PG_DIR (run start first)" >&2
    return 1
  }
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null || {
    tail -20 "$PG_DIR/postgres.log" >&2
    return 1
  }
  echo "postgres: pid $(pg_pid) port $PG_PORT (data kept)" >&2
}

redis_pid() { [[ -s $REDIS_DIR/redis.pid ]] && cat "$REDIS_DIR/redis.pid"; }
redis_running() {
  local pid
  pid=$(redis_pid) && alive "$pid"
}

start_redis() {
  local i
  if redis_running; then
    echo "redis: already running (pid $(redis_pid))" >&2
    return 0
  fi
  command -v redis-server >/dev/null || {
    echo "services.sh: redis-server missing (apt-get install redis-server)" >&2
    return 1
  }
  mkdir -p "$REDIS_DIR"
  rm -f "$REDIS_DIR/redis.pid"
  # No persistence: a lock service that restarts empty is the case the fencing token covers.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_DIR/redis.pid" \
    --logfile "$REDIS_DIR/redis.log" >/dev/null
  for ((i = 0; i < 500; i++)); do
    if [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
      echo "redis: pid $(redis_pid) port $REDIS_PORT" >&2
      return 0
    fi
    sleep 0.02
  done
  echo "services.sh: redis not ready after 10 s" >&2
  cat "$REDIS_DIR/redis.log" >&2
  return 1
}

stop_redis() {
  local pid
  pid=$(redis_pid) && alive "$pid" || {
    echo "redis: not running" >&2
    return 0
  }
  stop_pid redis "$pid" TERM
}

urls() {
  echo "ROLLSAFE_TEST_PG=$PG_URL"
  echo "ROLLSAFE_TEST_REDIS=$REDIS_URL"
}

stop_pg() {
  local pid
  pid=$(pg_pid) || {
    echo "postgres: not running" >&2
    return 0
  }
  alive "$pid" || {
    echo "postgres: pid $pid not running" >&2
    return 0
  }
  stop_pid postgres "$pid" INT # SIGINT: PostgreSQL's fast shutdown
}

# stop_pid NAME PID SIGNAL: sends SIGNAL, waits up to 30 s for the process to go, then KILL
stop_pid() {
  local name=$1 pid=$2 i
  kill -"$3" "$pid"
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || {
      echo "$name: pid $pid stopped" >&2
      return 0
    }
    sleep 0.1
  done
  echo "$name: pid $pid still running after 30 s, sending KILL" >&2
  kill -KILL "$pid"
}

case ${1:-} in
  start)
    start_pg >/dev/null
    start_redis
    urls
    ;;
  stop)
    rc=0
    stop_redis || rc=1
    stop_pg || rc=1
    exit $rc
    ;;
  status)
    if pg_running && redis_running; then
      urls
    else
      pg_running || echo "postgres: not running" >&2
      redis_running || echo "redis: not running" >&2
      exit 1
    fi
    ;;
  pg-down) stop_pg ;;
  pg-up) up_pg ;;
  *)
    echo "usage: $0 start|stop|status|pg-down|pg-up" >&2
    exit 2
    ;;
esac
