#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: trust auth, fsync off, a free port on 127.0.0.1, the unix
# socket inside its own directory. Nothing is left behind after `stop`.
#
#   scripts/pg-throwaway.sh start [DIR]   initdb + start; prints shell assignments:
#                                          PG_THROWAWAY_DIR=… JANUS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/janus_test
#   scripts/pg-throwaway.sh pause DIR     stop the server, keep its data (outage tests)
#   scripts/pg-throwaway.sh resume DIR    start it again on the same port
#   scripts/pg-throwaway.sh stop DIR      stop the server and delete DIR
#
# Needs initdb, pg_ctl and postgres (PATH, or /usr/local/bin, or $PG_BIN). initdb refuses to run as
# root, so as root everything runs as the `postgres` system user.
set -euo pipefail

die() { echo "pg-throwaway: $*" >&2; exit 2; }

find_bin() {
  for d in "${PG_BIN:-}" /usr/local/bin /usr/lib/postgresql/*/bin; do
    [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

BIN="$(find_bin)" || die "initdb/pg_ctl/postgres not found (set PG_BIN to their directory)"

as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    local ru; ru="$(command -v runuser || echo /usr/sbin/runuser)"
    "$ru" -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_start() {
  local dir="$1" port
  port="$(cat "$dir/port")"
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
}

cmd="${1:-}"
case "$cmd" in
  start)
    dir="${2:-}"
    if [[ -z "$dir" ]]; then
      dir="$(mktemp -d "${TMPDIR:-/tmp}/janus-pg.XXXXXX")"
      # A failed start leaves nothing behind.
      trap 'if [[ $? != 0 ]]; then "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"; fi' EXIT
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    chmod 700 "$dir"
    as_pg "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    echo "CREATE DATABASE janus_test;" \
      | as_pg "$BIN/postgres" --single -D "$dir/data" -c fsync=off postgres >"$dir/single.log" 2>&1 \
      || { cat "$dir/single.log" >&2; die "cannot create database janus_test"; }
    port=""
    for _ in 1 2 3 4 5; do
      port="$(free_port)"
      echo "$port" >"$dir/port"
      if pg_start "$dir" 2>/dev/null; then break; fi
      port=""
    done
    [[ -n "$port" ]] || { cat "$dir/server.log" >&2 || true; die "postgres did not start"; }
    echo "PG_THROWAWAY_DIR=$dir"
    echo "JANUS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/janus_test"
    ;;
  pause)
    dir="${2:?usage: pg-throwaway.sh pause DIR}"
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    ;;
  resume)
    dir="${2:?usage: pg-throwaway.sh resume DIR}"
    pg_start "$dir" || { cat "$dir/server.log" >&2 || true; die "postgres did not start"; }
    ;;
  stop)
    dir="${2:?usage: pg-throwaway.sh stop DIR}"
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
    fi
    case "$dir" in
      /|"") die "refusing to delete $dir" ;;
    esac
    rm -rf "$dir"
    ;;
  *)
    die "usage: pg-throwaway.sh start [DIR] | pause DIR | resume DIR | stop DIR"
    ;;
esac
