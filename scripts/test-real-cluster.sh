#!/usr/bin/env bash
# Runs the portable end-to-end suites against a real cluster: the current context of $KUBECONFIG (or
# ~/.kube/config). kind, k3d or a cloud cluster; cluster-admin rights are needed.
#
#   KUBECONFIG=~/.kube/kind.yaml JANUS_TEST_CLUSTER_CONTEXT=kind-janus scripts/test-real-cluster.sh
#   scripts/test-real-cluster.sh --sim     # proof run: a kubesim started as a separate process,
#                                          # reached through the kubeconfig it writes, nothing else
#
# JANUS_TEST_CLUSTER_CONTEXT must name the kubeconfig's current context (`kubectl config
# current-context`): the suites refuse any other cluster, so a stray current-context never points
# them at a cluster nobody chose. Only --sim sets it (to the context of the kubesim it starts).
#
# What it does to the cluster (server-side apply, field manager janus-testkit): the AccessRequest CRD,
# namespaces k8s-janus, team-a, team-b and team-c with a busybox:1.36 pod `app` each, Secret
# team-a/db-password, and the chart's ServiceAccounts and RBAC (the same objects `helm install
# k8s-janus ./charts/k8s-janus -n k8s-janus` creates); the full list is in docs/operations.md. Between
# tests it deletes the AccessRequests of the suites' identities (requester @example.com) and the
# credentials labelled with their names, nothing else; still, use a throwaway cluster. If the chart is installed, scale its controller to 0 first (the suites run their
# own controller with the chart's controller token), as .github/workflows/kind.yml does.
#
# The controller and web run in the test process and reach the API server at the kubeconfig's server
# address, so that address must be reachable from this machine (kind's 127.0.0.1:PORT is).
# Tests that need kubesim itself (fault injection, restarts, token-lifetime knobs, a second cluster)
# print "SKIPPED <test> ... kubesim-only: <reason>" and pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The portable suites: "<package> <test binary> [test name filter]". The tests share the one cluster,
# so each binary runs its tests one at a time.
SUITES=(
  "janus-testkit testcluster prepare_janus"
  "janus-controller lifecycle"
  # The web's authorization matrix and terminal suites (the stalled-cluster terminal test is kubesim-only).
  "janus-web authz"
  "janus-web terminal"
  "janus chart every_chart_rbac_rule_is_needed"
)

export PATH="$PWD/.tools/bin:$PATH"
command -v helm >/dev/null 2>&1 || { echo "test-real-cluster.sh: helm is required (scripts/install-test-tools.sh)" >&2; exit 2; }

sim_pid=""
cleanup() {
  if [[ -n "$sim_pid" ]]; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [[ "${1:-}" == "--sim" ]]; then
  # The proof that the suites need nothing but a kubeconfig: kubesim in its own process.
  cargo build --quiet -p kubesim --bin kubesim
  simdir="$(mktemp -d)"
  KUBECONFIG="$simdir/kubeconfig"
  export KUBECONFIG
  target/debug/kubesim serve --name kubesim-proof --kubeconfig "$KUBECONFIG" >"$simdir/kubesim.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 1 100); do
    [[ -s "$KUBECONFIG" ]] && break
    sleep 0.1
  done
  [[ -s "$KUBECONFIG" ]] || { cat "$simdir/kubesim.log" >&2; echo "kubesim did not start" >&2; exit 1; }
  echo "kubesim (pid $sim_pid) serving; KUBECONFIG=$KUBECONFIG"
  # The kubesim just started is the throwaway cluster: confirm its context.
  JANUS_TEST_CLUSTER_CONTEXT="$(kubectl config current-context)"
  export JANUS_TEST_CLUSTER_CONTEXT
fi

export JANUS_TEST_CLUSTER=kubeconfig
context="$(kubectl config current-context 2>/dev/null || echo '?')"
if [[ -z "${JANUS_TEST_CLUSTER_CONTEXT:-}" ]]; then
  echo "test-real-cluster.sh: set JANUS_TEST_CLUSTER_CONTEXT to the context to test (current: ${context});" \
    "the suites write to it and delete their leftover requests, so name a throwaway cluster" >&2
  exit 2
fi
if [[ "$JANUS_TEST_CLUSTER_CONTEXT" != "$context" ]]; then
  echo "test-real-cluster.sh: JANUS_TEST_CLUSTER_CONTEXT=${JANUS_TEST_CLUSTER_CONTEXT} but the current context is ${context}" >&2
  exit 2
fi
export JANUS_TEST_CLUSTER_CONTEXT
server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || echo '?')"
echo "==> portable suites against context ${context} (${server})"

for suite in "${SUITES[@]}"; do
  read -r package binary filter <<<"$suite"
  echo
  echo "==> cargo test -p $package --test $binary ${filter:-}"
  # --show-output: the kubesim-only tests' SKIPPED lines are part of the record.
  cargo test -p "$package" --test "$binary" -- ${filter:+"$filter"} --test-threads=1 --show-output
done
echo
echo "==> all portable suites passed against ${context}"
