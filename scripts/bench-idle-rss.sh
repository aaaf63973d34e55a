#!/usr/bin/env bash
# Idle memory of each process as it runs in production: kubesim (standing in for the API server),
# `janus controller` and `janus web` as separate release-built processes. Prints VmRSS of each once
# started and idle, then again after 1,000 AccessRequests were created and handled and things are idle.
#
# Usage: scripts/bench-idle-rss.sh   (builds the release binaries first; results go to stdout)
#        BENCH_NO_BUILD=1 scripts/bench-idle-rss.sh   uses the binaries already in BENCH_BIN_DIR (default
#        target/release), as scripts/bench.sh does: it has built them, and a build of only `-p janus -p
#        kubesim` resolves features differently from its build, so cargo would rebuild both (and could
#        take longer than the part's time bound).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${BENCH_REQUESTS:-1000}"
bin="${BENCH_BIN_DIR:-target/release}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p janus -p kubesim
fi
for b in janus kubesim; do
  [ -x "$bin/$b" ] || { echo "no $bin/$b (build it, or unset BENCH_NO_BUILD)" >&2; exit 1; }
done
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

rss() { awk '/^VmRSS:/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
report() {
  echo "$1: kubesim $(rss "${pids[0]}"), janus controller $(rss "${pids[1]}"), janus web $(rss "${pids[2]}")"
}

{
  "$bin/janus" crd
  cat <<'EOF'
---
apiVersion: v1
kind: Namespace
metadata: {name: k8s-janus}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: janus-pod-exec}
rules:
  - {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
  - {apiGroups: [""], resources: [pods/exec], verbs: [create, get]}
EOF
} >"$work/seed.yaml"

cat >"$work/janus.yaml" <<EOF
namespace: k8s-janus
adminEmails: [admin@example.com]
clusters:
  - name: central
    displayName: Central
database:
  url: sqlite://$work/janus.db
EOF

"$bin/kubesim" serve --kubeconfig "$work/kubeconfig" --seed "$work/seed.yaml" >"$work/kubesim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
export KUBECONFIG="$work/kubeconfig"
JANUS_LOG=warn "$bin/janus" controller --config "$work/janus.yaml" --no-leader-election \
  --metrics-listen 127.0.0.1:0 >"$work/controller.log" 2>&1 &
pids+=($!)
port=$((20000 + RANDOM % 20000))
JANUS_LOG=warn "$bin/janus" web --config "$work/janus.yaml" --listen "127.0.0.1:$port" >"$work/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || {
  echo "web did not start" >&2
  cat "$work/web.log" >&2
  exit 1
}
sleep 10
report "idle after start"

# 1,000 requests straight to the API server (as kubectl would), then idle again.
server="$(awk '/server:/ {print $2; exit}' "$work/kubeconfig")"
token="$(awk '/token:/ {print $2; exit}' "$work/kubeconfig")"
awk '/certificate-authority-data:/ {print $2; exit}' "$work/kubeconfig" | base64 -d >"$work/ca.crt"
for i in $(seq 1 "$N"); do
  printf '{"apiVersion":"k8s-janus.opsmode.io/v1alpha1","kind":"AccessRequest","metadata":{"name":"rss-%05d"},"spec":{"requester":"user%d@example.com","cluster":"central","namespaces":["team-a"],"reason":"memory benchmark","ttlSeconds":3600}}\n' "$i" "$((i % 50))"
done | while read -r body; do
  curl -fsS --cacert "$work/ca.crt" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -X POST "$server/apis/k8s-janus.opsmode.io/v1alpha1/accessrequests" -d "$body" >/dev/null
done
# Idle means handled: wait until the controller has given every request a phase.
for _ in $(seq 120); do
  phased="$(curl -fsS --cacert "$work/ca.crt" -H "Authorization: Bearer $token" \
    "$server/apis/k8s-janus.opsmode.io/v1alpha1/accessrequests" |
    python3 -c 'import json,sys; print(sum(1 for i in json.load(sys.stdin)["items"] if i.get("status",{}).get("phase")))')"
  [ "$phased" -ge "$N" ] && break
  sleep 1
done
echo "requests with a phase: $phased of $N"
sleep 10
report "idle with $N requests"
