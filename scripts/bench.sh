#!/usr/bin/env bash
# The benchmark tool (issue 19): builds the release binaries, waits for a quiet machine, runs the named
# parts (default: all) as separate processes, each bounded in time and cleaned up after, and writes
# target/bench/summary.json: [{part, figure, unit, value, target, pass, command, machine, at}].
#
# Usage:
#   scripts/bench.sh [PART...]      run parts (default all; --list names them); prints the summary table
#   scripts/bench.sh --list         the parts
#   scripts/bench.sh --check-docs   does docs/benchmarks.md's generated block show the last run?
#                                   (target/bench/summary.json, else the recorded docs/benchmarks.json)
#   scripts/bench.sh --record       copy the last run to docs/benchmarks.json and regenerate the block
#
# Settings (environment): BENCH_MAX_LOAD (1-minute load average counted as quiet, default 1.0),
# BENCH_QUIET_WAIT (seconds to wait for it, default 300; then the part runs anyway and its machine
# string says "busy"), BENCH_PART_TIMEOUT (seconds per part, default 600), BENCH_FAILOVER_REQUESTS
# (requests per batch in the failover part, default 20), BENCH_REQUESTS (idle-rss load, default 1000).
# Fleet part: BENCH_FLEET_CLUSTERS (remote kubesim processes, default 50), BENCH_FLEET_GRANTS (live grants,
# default 10000), BENCH_FLEET_BURST (approvals at once, default 1000), BENCH_FLEET_UNREACHABLE and
# BENCH_FLEET_SLOW (clusters made unreachable / slow in the degraded run, default 10 each), BENCH_FLEET_SLOW_MS
# (the slow clusters' latency per call, default 5000).
# Web-replicas part: BENCH_OHA (the oha binary, default .tools/bin/oha; scripts/install-bench-tools.sh
# installs it), BENCH_REPLICAS_USERS (local accounts, default 250), BENCH_REPLICAS_CONCURRENCY (concurrent
# users, default 500), BENCH_REPLICAS_RATE (requests per second per user, default 1), BENCH_REPLICAS_SECONDS
# (seconds of load, default 20), BENCH_REPLICAS_OHA_PER_MIX (oha processes per mix and replica, default 2),
# BENCH_REPLICAS_SESSIONS (terminal sessions, default 2000), BENCH_REPLICAS_DECIDERS (decision workers
# during the kill, default 40).
# Terminal-cost part: BENCH_TERMINAL_MIB (MiB of shell output per path, default 1024), BENCH_TERMINAL_ROUNDS
# (alternating rounds they are split into, default 4), BENCH_TERMINAL_SESSIONS (idle sessions for the memory
# figure, default 500). Scopes part: BENCH_SCOPE_CHANGES (pod changes, default 200), BENCH_SCOPE_GRANTS
# (scoped grants in the second run, default 100).
# Lifecycle part: JANUS_BENCH_PARTS (the lifecycle bench's parts, default seq,revoke,bulk,expiry; also
# scheduled), BENCH_BULK (approvals at once, default 1000).
#
# Adding a part: write a function part_<name> (hyphens in the name as underscores) that writes its figures as a JSON list of
# {part, figure, unit, value, target, pass} to "$1", and add <name> to PARTS.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS=(failover idle-rss fleet web-replicas terminal-cost scopes lifecycle)
out=target/bench
summary="$out/summary.json"
recorded=docs/benchmarks.json
py=scripts/bench/summary.py

case "${1:-}" in
  --list)
    printf '%s\n' "${PARTS[@]}"
    exit 0
    ;;
  --check-docs)
    src="$recorded"
    [ -f "$summary" ] && src="$summary"
    exec python3 "$py" check "$src" docs/benchmarks.md
    ;;
  --record)
    [ -f "$summary" ] || { echo "no $summary: run scripts/bench.sh first" >&2; exit 1; }
    cp "$summary" "$recorded"
    python3 "$py" record "$recorded" docs/benchmarks.md
    echo "recorded $summary in $recorded and docs/benchmarks.md"
    exit 0
    ;;
esac

want=("$@")
[ ${#want[@]} -eq 0 ] && want=("${PARTS[@]}")
for p in "${want[@]}"; do
  [[ " ${PARTS[*]} " == *" $p "* ]] || { echo "unknown part: $p (parts: ${PARTS[*]})" >&2; exit 2; }
done

# --- parts -------------------------------------------------------------------------------------------

# Two `janus controller` processes with the chart's leader election against kubesim `serve`: the leader
# SIGKILLed, then SIGTERMed (crates/janus-bench/src/failover.rs).
part_failover() {
  target/release/janus-bench failover --bin-dir target/release --out "$1" \
    --requests "${BENCH_FAILOVER_REQUESTS:-20}"
}

# Idle memory of kubesim, `janus controller` and `janus web` (scripts/bench-idle-rss.sh), read from its
# report lines ("<state>: kubesim X MiB, janus controller Y MiB, janus web Z MiB").
part_idle_rss() {
  # The binaries the runner built: a build of only janus and kubesim would rebuild them.
  BENCH_NO_BUILD=1 BENCH_BIN_DIR=target/release scripts/bench-idle-rss.sh | tee "$1.log"
  python3 - "$1.log" "$1" <<'PY'
import json, re, sys
figs = []
for line in open(sys.argv[1]):
    m = re.match(r"(idle[^:]*): kubesim ([\d.]+) MiB, janus controller ([\d.]+) MiB, janus web ([\d.]+) MiB", line)
    if not m:
        continue
    for name, v in (("janus controller", m.group(3)), ("janus web", m.group(4))):
        figs.append({"part": "idle-rss", "figure": f"{name} RSS, {m.group(1)}", "unit": "MiB",
                     "value": float(v), "target": "< 30", "pass": float(v) < 30})
if not figs:
    sys.exit("bench-idle-rss.sh reported nothing")
json.dump(figs, open(sys.argv[2], "w"), indent=2)
PY
}

# One `janus controller` granting on BENCH_FLEET_CLUSTERS remote kubesim processes with BENCH_FLEET_GRANTS
# live grants: approval bursts and expiries, all healthy, then with clusters unreachable and slow
# (crates/janus-bench/src/fleet.rs).
part_fleet() {
  target/release/janus-bench fleet --bin-dir target/release --out "$1"
}

# Two `janus web` replicas with the chart's configuration on one throwaway PostgreSQL: 500 concurrent
# users through oha (installed by scripts/install-bench-tools.sh), 2,000 terminal sessions cut by revokes,
# one replica SIGKILLed while decisions are made (crates/janus-bench/src/replicas.rs).
part_web_replicas() {
  scripts/install-bench-tools.sh
  target/release/janus-bench web-replicas --bin-dir target/release --out "$1"
}

# CPU per GiB of shell output through a `janus web` terminal against a straight exec to kubesim in the
# same run, and the web's RSS per idle terminal session (crates/janus-bench/src/terminal.rs).
part_terminal_cost() {
  target/release/janus-bench terminal-cost --bin-dir target/release --out "$1"
}

# Pod-scope lag (issue 16): pod created → in the grant's Role, deleted → out, p50/p99 with 1 and 100
# scoped grants (crates/janus-controller/benches/scopes.rs, which writes the figures to BENCH_JSON).
part_scopes() {
  BENCH_JSON="$(realpath "$1")" cargo bench -q -p janus-controller --bench scopes
}

# One request at a time (approve → Active, revoke → token refused, API calls per grant), 1,000 approvals
# at once and expiry lag on one cluster (crates/janus-controller/benches/lifecycle.rs, which writes the
# figures to BENCH_JSON; kubesim and the controller share its process, as in the earlier runs).
part_lifecycle() {
  BENCH_JSON="$(realpath "$1")" JANUS_BENCH_PARTS="${JANUS_BENCH_PARTS:-seq,revoke,bulk,expiry}" \
    cargo bench -q -p janus-controller --bench lifecycle
}

# --- runner ------------------------------------------------------------------------------------------

mkdir -p "$out"
echo "building the release binaries" >&2
cargo build --release -q -p janus -p kubesim -p janus-bench
# The cargo-bench parts compile here too, so that no part spends its time bound compiling.
for p in "${want[@]}"; do
  case "$p" in
    scopes | lifecycle) cargo bench -q --no-run -p janus-controller --bench "$p" ;;
  esac
done

load1() { cut -d' ' -f1 /proc/loadavg; }
quiet() { awk -v l="$(load1)" -v m="${BENCH_MAX_LOAD:-1.0}" 'BEGIN { exit !(l < m) }'; }

# Waits (bounded) for the 1-minute load average to drop below BENCH_MAX_LOAD; prints the machine string.
wait_quiet() {
  local waited=0 limit="${BENCH_QUIET_WAIT:-300}" state=quiet
  until quiet; do
    if [ "$waited" -ge "$limit" ]; then
      state=busy
      echo "the machine is still busy after ${limit}s (load $(load1)); running anyway" >&2
      break
    fi
    [ "$waited" -eq 0 ] && echo "waiting for a quiet machine (load $(load1), want < ${BENCH_MAX_LOAD:-1.0})" >&2
    sleep 5
    waited=$((waited + 5))
  done
  local mem
  mem="$(awk '/^MemTotal:/ {printf "%.0f", $2/1048576}' /proc/meminfo)"
  echo "$(nproc) cores, ${mem} GiB, $(uname -m); $state: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
}

group=""
cleanup() {
  # The part runs in its own session: kill its whole process group (kubesim, controllers, web).
  if [ -n "$group" ]; then kill -- "-$group" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

failed=()
for p in "${want[@]}"; do
  machine="$(wait_quiet)"
  echo "== $p ($machine)" >&2
  part_out="$out/$p.json"
  rm -f "$part_out"
  fn="part_${p//-/_}"
  export -f "$fn"
  setsid bash -c "set -euo pipefail; $fn \"\$1\"" _ "$part_out" &
  group=$!
  limit="${BENCH_PART_TIMEOUT:-600}"
  started=$SECONDS
  while kill -0 "$group" 2>/dev/null; do
    if [ $((SECONDS - started)) -ge "$limit" ]; then
      echo "part $p exceeded ${limit}s; stopping it" >&2
      kill -- "-$group" 2>/dev/null || true
      break
    fi
    sleep 1
  done
  status=0
  wait "$group" || status=$?
  cleanup
  group=""
  if [ "$status" -ne 0 ] || [ ! -s "$part_out" ]; then
    echo "part $p failed (status $status)" >&2
    failed+=("$p")
    continue
  fi
  python3 "$py" merge "$summary" "$part_out" "$p" "scripts/bench.sh $p" "$machine"
done

python3 "$py" table "$summary"
echo "summary: $summary (scripts/bench.sh --record puts it in docs/benchmarks.md)" >&2
[ ${#failed[@]} -eq 0 ] || { echo "failed parts: ${failed[*]}" >&2; exit 1; }
