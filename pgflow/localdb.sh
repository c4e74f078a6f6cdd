#!/usr/bin/env bash
# Local throwaway PostgreSQL 15 + pg_cron for development, tests and the demo.
#
#   scripts/db.sh up      start (installing PostgreSQL and pg_cron when missing); prints DATABASE_URL
#   scripts/db.sh down    stop the cluster
#   scripts/db.sh restart restart it (fast shutdown: every connection is cut, as in a failover)
#   scripts/db.sh url     print the DATABASE_URL the cluster serves
#
# The one copy lives in the package (pgflow/localdb.sh), so `pgflow demo` has it in an
# installed wheel too; scripts/db.sh is a link to it. The cluster's state folder is
# PGFLOW_STATE_DIR (an absolute path; the demo sets it), else .pgflow/ beside the folder the
# script was called from (scripts/db.sh in a checkout: the checkout's .pgflow/).
#
# PostgreSQL's binaries: PGFLOW_PG_BINDIR, else /usr/lib/postgresql/$PGFLOW_PG_VERSION/bin
# (version 15 unless set), installed with apt when missing and this is root.
#
# When DATABASE_URL is already set, `up` only prints it: that database is used as given.
# Idempotent: a second `up` reuses the running cluster. Exit status 3: PostgreSQL with
# pg_cron is missing and cannot be installed here (one line on stderr says what is needed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGVER=${PGFLOW_PG_VERSION:-15}
PORT=${PGFLOW_PG_PORT:-}
DBNAME=${PGFLOW_DB_NAME:-pgflow}
state=${PGFLOW_STATE_DIR:-"$here/.pgflow"}
bindir=${PGFLOW_PG_BINDIR:-"/usr/lib/postgresql/$PGVER/bin"}
NEEDS=3

log() { printf 'db: %s\n' "$*" >&2; }

# Run a PostgreSQL command as the postgres OS user, from a directory it can enter (the
# caller's may be under a private home), with paths that do not pass through .pgflow's link.
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

# The port: PGFLOW_PG_PORT, else the one this cluster was created with (.pgflow/port), else
# 55432 or, when another server holds that, the next free one.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
resolve_port() {
  if [ -n "$PORT" ]; then return 0; fi
  if [ -f "$state/port" ]; then PORT=$(cat "$state/port"); return 0; fi
  PORT=55432
  while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
}

local_url() { printf 'postgresql://postgres@127.0.0.1:%s/%s\n' "$PORT" "$DBNAME"; }

# Where the binaries' extensions are: pg_config's answer for binaries of one's own, else
# the Debian packages' folder.
sharedir() {
  if [ -n "${PGFLOW_PG_BINDIR:-}" ] && [ -x "$bindir/pg_config" ]; then
    "$bindir/pg_config" --sharedir
  else
    printf '/usr/share/postgresql/%s\n' "$PGVER"
  fi
}

install_packages() {
  if [ -x "$bindir/postgres" ] && [ -f "$(sharedir)/extension/pg_cron.control" ]; then
    return 0
  fi
  local needs="PostgreSQL $PGVER with pg_cron is needed: set DATABASE_URL to a server that preloads pg_cron, or"
  if [ -n "${PGFLOW_PG_BINDIR:-}" ]; then  # binaries of one's own: apt would not put them there
    log "$needs PGFLOW_PG_BINDIR to a folder of its binaries ($bindir has no postgres with pg_cron)"
    exit "$NEEDS"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "$needs install postgresql-$PGVER and postgresql-$PGVER-cron (or your platform's equivalent)"
    exit "$NEEDS"
  fi
  if [ "$(id -u)" != 0 ]; then
    log "$needs run: sudo apt-get install postgresql-$PGVER postgresql-$PGVER-cron"
    exit "$NEEDS"
  fi
  log "installing postgresql-$PGVER and postgresql-$PGVER-cron (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "postgresql-$PGVER" "postgresql-$PGVER-cron" postgresql-client >/dev/null
}

# The data directory must be reachable by the postgres OS user; a state folder under a
# private home directory is not, so the cluster then lives under /var/tmp and the state
# folder is a link to it. Either way, `state` ends as the resolved path: postgres is never
# handed the link itself, whose parent it may not be allowed to traverse.
prepare_state_dir() {
  if [ ! -e "$state" ]; then
    local parent
    parent=$(dirname "$state")
    mkdir -p "$parent"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$parent"; then
      local alt
      alt="/var/tmp/pgflow-sms-$(printf '%s' "$parent" | sha1sum | cut -c1-12)"
      mkdir -p "$alt"
      ln -s "$alt" "$state"
    else
      mkdir -p "$state"
    fi
  fi
  state=$(readlink -f "$state")
}

is_running() {
  [ -f "$state/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$state/data" status >/dev/null 2>&1
}

cmd_up() {
  if [ -n "${DATABASE_URL:-}" ]; then
    printf '%s\n' "$DATABASE_URL"
    return 0
  fi
  install_packages
  prepare_state_dir
  resolve_port
  if [ ! -f "$state/data/PG_VERSION" ]; then
    log "creating a throwaway cluster in $state/data (port $PORT)"
    mkdir -p "$state/data" "$state/run"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$state"
    as_pg "$bindir/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$state/data/postgresql.conf" <<CONF
# pgflow-sms local cluster: throwaway, tuned for speed over durability
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$state/run'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DBNAME'
cron.use_background_workers = on
max_worker_processes = 32
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
log_min_messages = warning
log_statement = none
CONF
    echo "$PORT" > "$state/port"
  fi
  if ! is_running; then
    if port_in_use "$PORT"; then
      log "port $PORT is taken by another server; set PGFLOW_PG_PORT to a free port"
      exit 1
    fi
    log "starting the cluster on 127.0.0.1:$PORT"
    as_pg "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w -t 60 start >/dev/null
  fi
  if ! as_pg "$bindir/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
      "select 1 from pg_database where datname = '$DBNAME'" | grep -q 1; then
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DBNAME"
  fi
  local_url
}

cmd_down() {
  if [ -e "$state" ]; then state=$(readlink -f "$state"); fi
  if [ -d "$state/data" ] && is_running; then
    as_pg "$bindir/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null
    log "stopped"
  else
    log "not running"
  fi
}

cmd_restart() {
  if [ -e "$state" ]; then state=$(readlink -f "$state"); fi
  if [ -d "$state/data" ] && is_running; then
    as_pg "$bindir/pg_ctl" -D "$state/data" -l "$state/postgres.log" -m fast -w -t 60 restart >/dev/null
    log "restarted"
  else
    log "not running"
    exit 1
  fi
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  restart) cmd_restart ;;
  url) if [ -n "${DATABASE_URL:-}" ]; then printf '%s\n' "$DATABASE_URL"; else
         [ -e "$state" ] && state=$(readlink -f "$state"); resolve_port; local_url; fi ;;
  *) echo "usage: $0 up|down|restart|url" >&2; exit 2 ;;
esac
