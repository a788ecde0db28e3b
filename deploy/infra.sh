#!/usr/bin/env bash
# Local infrastructure for Backstop: PostgreSQL (Debian package) and a single-node Kafka
# (KRaft, jars from Maven Central). Idempotent: running `up` when all is up does nothing.
#
#   deploy/infra.sh up | down | status | pg-up | pg-down | kafka-up | kafka-down
#
# DATABASE_URL given -> no local PostgreSQL; KAFKA_BOOTSTRAP_SERVERS given -> no local Kafka.
# BACKSTOP_KAFKA_PORT / BACKSTOP_KAFKA_NODE choose another broker (make test runs its own);
# BACKSTOP_KAFKA_FRESH=1 starts that broker empty when it is not already running.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${BACKSTOP_CACHE:-$HOME/.cache/backstop}"
KAFKA_VERSION="3.9.1"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
KAFKA_PORT="${BACKSTOP_KAFKA_PORT:-9092}"
KAFKA_DIR="$CACHE/${BACKSTOP_KAFKA_NODE:-kafka-node}"
PG_USER="${PGUSER:-backstop}"
PG_PASSWORD="${PGPASSWORD:-backstop}"
DATABASES="backstop_registry backstop_datasync backstop_risk backstop_assistance backstop_notify backstop_quality"

say() { echo "[infra] $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- PostgreSQL
# The newest installed server (the client package alone also creates /usr/lib/postgresql/N).
pg_version() {
  for bin in $(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V -r); do
    basename "$(dirname "$(dirname "$bin")")"; return
  done
}

pg_install() {
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(pg_version)" ]; then
    [ "$(id -u)" = 0 ] || { say "PostgreSQL is missing; install the 'postgresql' package"; exit 1; }
    say "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
}

psql_su() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }

pg_up() {
  if [ -n "${DATABASE_URL:-}" ]; then say "DATABASE_URL given: not starting PostgreSQL"; return; fi
  pg_install
  local v; v="$(pg_version)"
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$v main$"; then
    pg_createcluster "$v" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$v" '$1==v && $2=="main" {print $4}' | grep -q online; then
    say "starting PostgreSQL $v"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start
  fi
  for _ in $(seq 1 30); do port_open 5432 && break; sleep 0.5; done
  # Five services with their pools, plus tests: more than the default 100 connections.
  # 128 MB of shared buffers made the backends write pages themselves once a county's
  # feed records outgrew it (about 50% more PostgreSQL CPU per COPY).
  if [ "$(psql_su -c 'SHOW max_connections')" -lt 400 ] \
    || [ "$(psql_su -c "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")" -lt 512 ]; then
    psql_su -c "ALTER SYSTEM SET max_connections = 400" >/dev/null
    psql_su -c "ALTER SYSTEM SET shared_buffers = '512MB'" >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$v" main restart
    for _ in $(seq 1 30); do port_open 5432 && break; sleep 0.5; done
  fi
  # A loopback-only development cluster: TLS (on by default in Debian) only costs time.
  if [ "$(psql_su -c 'SHOW ssl')" = "on" ]; then
    psql_su -c "ALTER SYSTEM SET ssl = off" >/dev/null
    psql_su -c "SELECT pg_reload_conf()" >/dev/null
  fi
  if [ -z "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" ]; then
    psql_su -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" >/dev/null
  fi
  for db in $DATABASES; do
    if [ -z "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
      psql_su -c "CREATE DATABASE $db OWNER $PG_USER" >/dev/null
    fi
  done
  say "PostgreSQL ready on 127.0.0.1:5432"
}

pg_down() {
  local v; v="$(pg_version)"
  [ -n "$v" ] && pg_ctlcluster --skip-systemctl-redirect "$v" main stop 2>/dev/null || true
  say "PostgreSQL stopped"
}

# ---------------------------------------------------------------- Kafka
kafka_fetch() {
  if [ -z "$(ls "$KAFKA_LIBS"/kafka_2.13-*.jar 2>/dev/null)" ]; then
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mvn -B -q -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime
  fi
}

kafka_up() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then say "KAFKA_BOOTSTRAP_SERVERS given: not starting Kafka"; return; fi
  if port_open "$KAFKA_PORT"; then say "Kafka already listening on 127.0.0.1:$KAFKA_PORT"; return; fi
  kafka_fetch
  if [ -n "${BACKSTOP_KAFKA_FRESH:-}" ]; then
    kafka_down >/dev/null 2>&1
    rm -rf "$KAFKA_DIR"
  fi
  mkdir -p "$KAFKA_DIR/data"
  sed -e "s#@LOG_DIR@#$KAFKA_DIR/data#" -e "s#127.0.0.1:9092#127.0.0.1:$KAFKA_PORT#g" \
    -e "s#127.0.0.1:9093#127.0.0.1:$((KAFKA_PORT + 1))#g" \
    "$HERE/kafka/server.properties" > "$KAFKA_DIR/server.properties"
  cp "$HERE/kafka/log4j.properties" "$KAFKA_DIR/log4j.properties"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local id; id="$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool format -t "$id" -c "$KAFKA_DIR/server.properties" >/dev/null
  fi
  say "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
  : > "$KAFKA_DIR/server.log"
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Dkafka.logs.dir="$KAFKA_DIR" \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >>"$KAFKA_DIR/server.log" 2>&1 < /dev/null &
  echo $! > "$KAFKA_DIR/kafka.pid"
  # A broker with many partitions on disk takes minutes to load them: wait, and say so.
  for i in $(seq 1 600); do
    if grep -q "Kafka Server started" "$KAFKA_DIR/server.log" 2>/dev/null; then
      say "Kafka ready"; return
    fi
    kill -0 "$(cat "$KAFKA_DIR/kafka.pid")" 2>/dev/null || { tail -30 "$KAFKA_DIR/server.log" >&2; exit 1; }
    [ $((i % 60)) = 0 ] && say "Kafka still loading its logs after $((i / 2)) s"
    sleep 0.5
  done
  say "Kafka did not start in 300 s"; tail -30 "$KAFKA_DIR/server.log" >&2; exit 1
}

kafka_down() {
  local pidfile="$KAFKA_DIR/kafka.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    local pid; pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  say "Kafka stopped"
}

status() {
  port_open 5432 && echo "postgresql: up (127.0.0.1:5432)" || echo "postgresql: down"
  port_open "$KAFKA_PORT" && echo "kafka: up (127.0.0.1:$KAFKA_PORT)" || echo "kafka: down"
}

case "${1:-up}" in
  up) pg_up; kafka_up ;;
  down) kafka_down; pg_down ;;
  status) status ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  *) echo "usage: $0 up|down|status|pg-up|pg-down|kafka-up|kafka-down" >&2; exit 2 ;;
esac
