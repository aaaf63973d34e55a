#!/usr/bin/env bash
# k8s-janus: register a remote cluster with the central install, or remove one.
#
#   scripts/setup.sh [add] [flags]        register (interactive unless every answer is given as a flag)
#   scripts/setup.sh remove NAME [flags]  offboard: revoke the cluster's open requests, wait until their
#                                         credentials are gone, delete the kubeconfig Secret
#
# Run it from a workstation whose kubeconfig has contexts for the central and the remote cluster.
# Needs kubectl; uses helm for the agent when available, else `janus agent-manifests | kubectl apply`.
# Safe to re-run: nothing is written when the registration is already up to date. On failure,
# what this run created is removed again. See docs/operations.md ("Registering remote clusters").
set -euo pipefail

PROG=setup.sh
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<'EOF'
Usage:
  setup.sh [add] [options]          register a remote cluster with the central k8s-janus
  setup.sh remove NAME [options]    offboard a remote cluster

Options (add):
  --central-context CTX   kubectl context of the central cluster (default: ask; current context)
  --remote-context CTX    kubectl context of the remote cluster (default: ask)
  --name NAME             cluster name used in AccessRequests (default: ask; derived from the context)
  --display-name TEXT     name shown in the web UI (default: NAME)
  --namespace NS          Janus namespace on the central cluster, and the agent's namespace (default: k8s-janus)
  --agent-namespace NS    the agent's namespace on the remote cluster (default: --namespace)
  --secret-name NAME      kubeconfig Secret name (default: NAME-kubeconfig; set it if clusters[].secretName is set)
  --remote-server URL     API server URL the central cluster uses to reach the remote one
                          (default: the remote context's server)
  --token-duration DUR    lifetime of the agent token, e.g. 720h, 90m (default: 720h = 30 days)
  --rotate                issue a new token even if the current one is valid for long enough
  --release NAME          helm release name of the agent (default: k8s-janus)
  --config-map NAME       the central chart's ConfigMap, whose `roles:` the agent is given (default:
                          k8s-janus-config; unreadable: the shipped roles exec, logs, debug)
  --chart PATH            chart directory (default: ../charts/k8s-janus next to this script)
  --no-helm               apply `janus agent-manifests` with kubectl instead of using helm
  --skip-agent            do not deploy the agent (it is already installed some other way)
  --yes, -y               do not ask for confirmation
  --dry-run               print every change and make none

Options (remove):
  --central-context CTX, --namespace NS, --secret-name NAME, --yes, --dry-run as above
  --remove-agent          also remove the agent from the remote cluster (needs --remote-context)
  --remote-context CTX    the remote cluster, for --remove-agent
  --timeout SECONDS       how long to wait for the controller to remove credentials (default: 120)

Environment: JANUS (path of the janus binary), HELM (path of helm), KUBECTL (path of kubectl).
EOF
}

# ------------------------------------------------------------------------------------------ output

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}
info() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }

# ------------------------------------------------------------------------------------------ options

CMD=add
CENTRAL_CONTEXT=""
REMOTE_CONTEXT=""
NAME=""
DISPLAY_NAME=""
NAMESPACE="k8s-janus"
AGENT_NAMESPACE=""
SECRET_NAME=""
REMOTE_SERVER=""
TOKEN_DURATION="720h"
ROTATE=0
RELEASE="k8s-janus"
CHART=""
NO_HELM=0
SKIP_AGENT=0
YES=0
DRY_RUN=0
REMOVE_AGENT=0
TIMEOUT=120
SERVICE_ACCOUNT="k8s-janus-agent"
REQUEST_TIMEOUT="10s"
CONFIG_MAP="k8s-janus-config"

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }

parse_args() {
  if [[ $# -gt 0 ]]; then
    case "$1" in
      add) CMD=add; shift ;;
      remove)
        CMD=remove; shift
        [[ $# -gt 0 && "$1" != -* ]] || die "usage: setup.sh remove NAME [options]"
        NAME="$1"; shift ;;
    esac
  fi
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --central-context) need_value "$@"; CENTRAL_CONTEXT="$2"; shift 2 ;;
      --remote-context) need_value "$@"; REMOTE_CONTEXT="$2"; shift 2 ;;
      --name) need_value "$@"; NAME="$2"; shift 2 ;;
      --display-name) need_value "$@"; DISPLAY_NAME="$2"; shift 2 ;;
      --namespace) need_value "$@"; NAMESPACE="$2"; shift 2 ;;
      --agent-namespace) need_value "$@"; AGENT_NAMESPACE="$2"; shift 2 ;;
      --secret-name) need_value "$@"; SECRET_NAME="$2"; shift 2 ;;
      --remote-server) need_value "$@"; REMOTE_SERVER="$2"; shift 2 ;;
      --token-duration) need_value "$@"; TOKEN_DURATION="$2"; shift 2 ;;
      --rotate) ROTATE=1; shift ;;
      --release) need_value "$@"; RELEASE="$2"; shift 2 ;;
      --config-map) need_value "$@"; CONFIG_MAP="$2"; shift 2 ;;
      --chart) need_value "$@"; CHART="$2"; shift 2 ;;
      --no-helm) NO_HELM=1; shift ;;
      --skip-agent) SKIP_AGENT=1; shift ;;
      --yes | -y) YES=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      --remove-agent) REMOVE_AGENT=1; shift ;;
      --timeout) need_value "$@"; TIMEOUT="$2"; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
  [[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
  AGENT_NAMESPACE="${AGENT_NAMESPACE:-$NAMESPACE}"
}

# ------------------------------------------------------------------------------------------ tools

KUBECTL="${KUBECTL:-kubectl}"
HELM_BIN=""
JANUS_BIN=""

find_tools() {
  command -v "$KUBECTL" >/dev/null 2>&1 || die "kubectl not found on the PATH (set KUBECTL=/path/to/kubectl)"
  command -v base64 >/dev/null 2>&1 || die "base64 not found on the PATH"
  if [[ -n "${HELM:-}" ]]; then
    command -v "$HELM" >/dev/null 2>&1 || die "HELM=$HELM is not executable"
    HELM_BIN="$HELM"
  elif command -v helm >/dev/null 2>&1; then
    HELM_BIN=helm
  fi
  if [[ -n "${JANUS:-}" ]]; then
    command -v "$JANUS" >/dev/null 2>&1 || die "JANUS=$JANUS is not executable"
    JANUS_BIN="$JANUS"
  elif command -v janus >/dev/null 2>&1; then
    JANUS_BIN=janus
  fi
  CHART="${CHART:-$SCRIPT_DIR/../charts/k8s-janus}"
}

# kubectl against the central cluster, the remote cluster, or a given kubeconfig file.
kc() { "$KUBECTL" --context "$CENTRAL_CONTEXT" --request-timeout="$REQUEST_TIMEOUT" "$@"; }
kr() { "$KUBECTL" --context "$REMOTE_CONTEXT" --request-timeout="$REQUEST_TIMEOUT" "$@"; }

b64() { base64 | tr -d '\n'; }
b64d() { base64 -d 2>/dev/null || base64 -D; }

# Seconds in a duration like 720h, 90m, 3600s or 1h30m.
duration_seconds() {
  local d="$1" total=0 n unit
  [[ "$d" =~ ^([0-9]+[hms])+$ ]] || return 1
  while [[ -n "$d" ]]; do
    [[ "$d" =~ ^([0-9]+)([hms])(.*)$ ]] || return 1
    n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
    case "$unit" in h) total=$((total + n * 3600)) ;; m) total=$((total + n * 60)) ;; s) total=$((total + n)) ;; esac
  done
  echo "$total"
}

now_epoch() { date -u +%s; }
epoch_to_rfc3339() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$1" +%Y-%m-%dT%H:%M:%SZ; }
rfc3339_to_epoch() { date -u -d "$1" +%s 2>/dev/null || date -u -j -f %Y-%m-%dT%H:%M:%SZ "$1" +%s 2>/dev/null; }

# The `exp` claim of a JWT (ServiceAccount tokens are JWTs); empty if it cannot be read.
jwt_exp() {
  local payload
  payload="$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')"
  while (( ${#payload} % 4 != 0 )); do payload="$payload="; done
  printf '%s' "$payload" | b64d | sed -n 's/.*"exp":\([0-9][0-9]*\).*/\1/p' || true
}

# JSON string literal (for annotations and patches).
json_str() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/ }"
  printf '"%s"' "$s"
}

valid_name() { [[ "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ && ${#1} -le 63 ]]; }

# ------------------------------------------------------------------------------------------ prompts

INTERACTIVE=0
[[ -t 0 ]] && INTERACTIVE=1

CONTEXTS=()
load_contexts() {
  local out
  out="$("$KUBECTL" config get-contexts -o name 2>/dev/null)" || die "cannot read kubectl contexts (is KUBECONFIG set?)"
  mapfile -t CONTEXTS <<<"$out"
  [[ ${#CONTEXTS[@]} -gt 0 && -n "${CONTEXTS[0]}" ]] || die "no kubectl contexts found; configure the central and remote clusters in your kubeconfig first"
}

context_exists() {
  local c
  for c in "${CONTEXTS[@]}"; do [[ "$c" == "$1" ]] && return 0; done
  return 1
}

check_context() {
  context_exists "$2" || die "unknown $1 context '$2'; available contexts: ${CONTEXTS[*]}"
}

# ask VAR "question" DEFAULT
ask() {
  local __var="$1" __question="$2" __default="${3:-}" __answer
  if [[ -n "$__default" ]]; then
    printf '%s [%s]: ' "$__question" "$__default"
  else
    printf '%s: ' "$__question"
  fi
  IFS= read -r __answer || die "no answer (end of input)"
  __answer="${__answer:-$__default}"
  printf -v "$__var" '%s' "$__answer"
}

# ask_context VAR "central" DEFAULT: a number from the list or a context name.
ask_context() {
  local __ctxvar="$1" which="$2" default="${3:-}" choice
  while true; do
    ask choice "$which context (number or name)" "$default"
    if [[ "$choice" =~ ^[0-9]+$ ]] && ((choice >= 1 && choice <= ${#CONTEXTS[@]})); then
      choice="${CONTEXTS[$((choice - 1))]}"
    fi
    if context_exists "$choice"; then
      printf -v "$__ctxvar" '%s' "$choice"
      return 0
    fi
    info "  unknown context '$choice'"
  done
}

list_contexts() {
  local current i=1 c
  current="$("$KUBECTL" config current-context 2>/dev/null || true)"
  info "kubectl contexts:"
  for c in "${CONTEXTS[@]}"; do
    if [[ "$c" == "$current" ]]; then info "  $i) $c (current)"; else info "  $i) $c"; fi
    i=$((i + 1))
  done
}

confirm() {
  ((DRY_RUN)) && return 0
  ((YES)) && return 0
  ((INTERACTIVE)) || die "not running in a terminal: pass --yes to proceed without confirmation (or --dry-run to see the plan)"
  local answer
  ask answer "Proceed? [y/N]" ""
  [[ "$answer" =~ ^[yY]([eE][sS])?$ ]] || die "aborted; nothing was changed"
}

# ------------------------------------------------------------------------------------------ rollback

# What this run created, undone in reverse order if it fails.
ROLLBACK=()
TMPDIR_SETUP=""
on_exit() {
  local rc=$?
  if ((rc != 0)) && ((${#ROLLBACK[@]} > 0)); then
    warn "rolling back what this run created"
    local i
    for ((i = ${#ROLLBACK[@]} - 1; i >= 0; i--)); do
      info "  undo: ${ROLLBACK[$i]%%|*}"
      eval "${ROLLBACK[$i]#*|}" >/dev/null 2>&1 || warn "could not undo: ${ROLLBACK[$i]%%|*}"
    done
  fi
  [[ -n "$TMPDIR_SETUP" ]] && rm -rf "$TMPDIR_SETUP"
  exit "$rc"
}
trap on_exit EXIT

# ------------------------------------------------------------------------------------------ cluster facts

# reachable "central|remote" CONTEXT
reachable() {
  local err
  if ! err="$("$KUBECTL" --context "$2" --request-timeout=5s get --raw /version 2>&1 >/dev/null)"; then
    die "cannot reach the $1 cluster (context '$2'): $(printf '%s' "$err" | head -n 3)"
  fi
}

# field CONTEXT JSONPATH-FIELD: a field of the context's cluster entry in the kubeconfig.
cluster_field() {
  "$KUBECTL" config view --raw --minify --context "$1" -o "jsonpath={.clusters[0].cluster.$2}" 2>/dev/null || true
}

# can-i with the caller's identity: can "central|remote" VERB RESOURCE [args…]
can() {
  local where="$1"; shift
  local out
  if [[ "$where" == central ]]; then out="$(kc auth can-i "$@" 2>/dev/null)" || true; else out="$(kr auth can-i "$@" 2>/dev/null)" || true; fi
  [[ "$out" == yes* ]]
}

# can_i_as KUBECONFIG-FILE CHECK…: prints yes, no, or "error: …" (kubectl's warnings are not answers).
can_i_as() {
  local file="$1"; shift
  local out rc=0
  local err="$TMPDIR_SETUP/can-i.$BASHPID.err"
  out="$("$KUBECTL" --kubeconfig "$file" --request-timeout="$REQUEST_TIMEOUT" auth can-i "$@" 2>"$err")" || rc=$?
  case "$out" in
    yes* | no*) printf '%s\n' "${out%%$'\n'*}" ;;
    *) printf 'error: %s\n' "$(grep -v '^Warning:' "$err" | head -n 2 | tr '\n' ' ')(exit $rc)" ;;
  esac
  rm -f "$err"
}

# Reads the existing kubeconfig Secret: sets EXISTING (0/1), EXISTING_KUBECONFIG, EXISTING_SERVER,
# EXISTING_MANAGED, EXISTING_DISPLAY, EXISTING_EXPIRES, EXISTING_CLUSTER.
read_existing_secret() {
  EXISTING=0 EXISTING_KUBECONFIG="" EXISTING_SERVER="" EXISTING_MANAGED="" EXISTING_DISPLAY="" EXISTING_EXPIRES="" EXISTING_CLUSTER=""
  local out err
  if ! out="$(kc get secret "$SECRET_NAME" -n "$NAMESPACE" -o 'jsonpath={.data.kubeconfig}{"\t"}{.metadata.labels.app\.kubernetes\.io/managed-by}{"\t"}{.metadata.labels.k8s-janus\.opsmode\.io/cluster}{"\t"}{.metadata.annotations.k8s-janus\.opsmode\.io/token-expires-at}{"\t"}{.metadata.annotations.k8s-janus\.opsmode\.io/display-name}' 2>"$TMPDIR_SETUP/err")"; then
    err="$(cat "$TMPDIR_SETUP/err")"
    [[ "$err" == *NotFound* || "$err" == *"not found"* ]] && return 0
    die "cannot read Secret $NAMESPACE/$SECRET_NAME on the central cluster: $err"
  fi
  EXISTING=1
  local data
  IFS=$'\t' read -r data EXISTING_MANAGED EXISTING_CLUSTER EXISTING_EXPIRES EXISTING_DISPLAY <<<"$out" || true
  EXISTING_KUBECONFIG="$(printf '%s' "$data" | b64d || true)"
  EXISTING_SERVER="$(printf '%s\n' "$EXISTING_KUBECONFIG" | sed -n 's/^ *server: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' | head -n 1)"
}

existing_token() {
  printf '%s\n' "$EXISTING_KUBECONFIG" | sed -n 's/^ *token: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' | head -n 1
}

# ------------------------------------------------------------------------------------------ access roles

# The central configuration's access roles, which the agent must be able to bind:
# ROLES_JSON (the `roles:` line of the chart's config.yaml, JSON), ROLE_NAMES and ROLE_CLUSTER_ROLES
# (parallel arrays), ROLES_FLAG (`name=clusterRole,…` for `janus agent-manifests --roles`).
ROLES_JSON=""
ROLE_NAMES=(exec logs debug)
ROLE_CLUSTER_ROLES=(janus-pod-exec janus-pod-logs janus-pod-debug)
ROLES_FLAG=""
HELM_ROLE_ARGS=()
load_roles() {
  local config line pairs i
  if ! config="$(kc get configmap "$CONFIG_MAP" -n "$NAMESPACE" -o 'jsonpath={.data.config\.yaml}' 2>/dev/null)" || [[ -z "$config" ]]; then
    warn "cannot read ConfigMap $NAMESPACE/$CONFIG_MAP on the central cluster: assuming the shipped roles (exec, logs, debug); pass --config-map if the chart's release has another name"
  else
    line="$(printf '%s\n' "$config" | sed -n 's/^roles: *//p' | head -n 1)"
    # The chart writes the roles as one line of JSON. Every role has exactly one "name" and one
    # "clusterRole", neither of which can contain a quote (both are Kubernetes names), and a quote
    # inside another string is escaped: so the matches come two per role, in the roles' order.
    mapfile -t pairs < <(printf '%s' "$line" | grep -oE '"(clusterRole|name)":"[^"]*"' | sed -E 's/^"([a-zA-Z]+)":"(.*)"$/\1 \2/')
    local ok=1 a b
    [[ "$line" == \[* && ${#pairs[@]} -gt 0 && $((${#pairs[@]} % 2)) -eq 0 ]] || ok=0
    if ((ok)); then
      ROLES_JSON="$line" ROLE_NAMES=() ROLE_CLUSTER_ROLES=()
      for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        a="${pairs[$i]}" b="${pairs[$((i + 1))]}"
        case "${a%% *}/${b%% *}" in
          name/clusterRole) ROLE_NAMES+=("${a#* }") ROLE_CLUSTER_ROLES+=("${b#* }") ;;
          clusterRole/name) ROLE_NAMES+=("${b#* }") ROLE_CLUSTER_ROLES+=("${a#* }") ;;
          *) ok=0 ;;
        esac
      done
    fi
    if ((!ok)); then
      warn "ConfigMap $NAMESPACE/$CONFIG_MAP has no roles line the chart writes: assuming the shipped roles (exec, logs, debug)"
      ROLES_JSON="" ROLE_NAMES=(exec logs debug) ROLE_CLUSTER_ROLES=(janus-pod-exec janus-pod-logs janus-pod-debug)
    fi
  fi
  ROLES_FLAG=""
  for i in "${!ROLE_NAMES[@]}"; do
    valid_name "${ROLE_NAMES[$i]}" || die "ConfigMap $NAMESPACE/$CONFIG_MAP: role name '${ROLE_NAMES[$i]}' is not valid"
    [[ "${ROLE_CLUSTER_ROLES[$i]}" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "ConfigMap $NAMESPACE/$CONFIG_MAP: ClusterRole '${ROLE_CLUSTER_ROLES[$i]}' of role ${ROLE_NAMES[$i]} is not valid"
    ROLES_FLAG="${ROLES_FLAG:+$ROLES_FLAG,}${ROLE_NAMES[$i]}=${ROLE_CLUSTER_ROLES[$i]}"
  done
}

# helm arguments giving the agent chart the central roles (none: the chart's default, the shipped roles).
helm_role_args() {
  [[ -n "$ROLES_JSON" ]] && printf '%s\n' --set-json "janus.roles=$ROLES_JSON"
  return 0
}

# After registering: every role's ClusterRole must exist on the remote cluster, seen with the agent's
# credential (what the controller will see). Missing ones are reported, and do not undo the registration:
# the other roles work.
check_role_cluster_roles() {
  local file="$1" i role cr out missing=0
  for i in "${!ROLE_NAMES[@]}"; do
    role="${ROLE_NAMES[$i]}" cr="${ROLE_CLUSTER_ROLES[$i]}"
    if out="$("$KUBECTL" --kubeconfig "$file" --request-timeout="$REQUEST_TIMEOUT" get clusterrole "$cr" -o name 2>&1)"; then
      continue
    fi
    missing=1
    if [[ "$out" == *NotFound* || "$out" == *"not found"* ]]; then
      warn "cluster $NAME lacks ClusterRole $cr (role $role): install the chart there with remote.enabled=true or apply \`janus agent-manifests\`"
    else
      warn "cluster $NAME: the agent cannot read ClusterRole $cr (role $role): $(printf '%s' "$out" | head -n 1); upgrade the agent with the central roles (re-run without --skip-agent)"
    fi
  done
  ((missing)) && warn "requests for cluster $NAME with the roles above fail until their ClusterRoles are there; the other roles work"
  return 0
}

# ------------------------------------------------------------------------------------------ permission checks

# The agent credential must allow exactly what the controller does on a remote cluster…
REQUIRED_CHECKS=(
  "get namespaces"
  "list namespaces"
  "get serviceaccounts -A"
  "list serviceaccounts -A"
  "create serviceaccounts -A"
  "delete serviceaccounts -A"
  "create serviceaccounts --subresource=token -A"
  "get rolebindings.rbac.authorization.k8s.io -A"
  "list rolebindings.rbac.authorization.k8s.io -A"
  "create rolebindings.rbac.authorization.k8s.io -A"
  "delete rolebindings.rbac.authorization.k8s.io -A"
  "get roles.rbac.authorization.k8s.io -A"
  "list roles.rbac.authorization.k8s.io -A"
  "create roles.rbac.authorization.k8s.io -A"
  "update roles.rbac.authorization.k8s.io -A"
  "delete roles.rbac.authorization.k8s.io -A"
  "list pods -A"
  "watch pods -A"
  "get deployments.apps -A"
  "list deployments.apps -A"
  "get statefulsets.apps -A"
  "get daemonsets.apps -A"
)
# (plus get and bind on every role's ClusterRole: add_role_checks, once the roles are known)
add_role_checks() {
  local cr
  for cr in "${ROLE_CLUSTER_ROLES[@]}"; do
    REQUIRED_CHECKS+=("get clusterroles.rbac.authorization.k8s.io/$cr" "bind clusterroles.rbac.authorization.k8s.io/$cr")
  done
}
# …and must not allow these (a leaked kubeconfig Secret must not open the cluster).
FORBIDDEN_CHECKS=(
  "get secrets -A"
  "list secrets -A"
  "delete namespaces"
  "create pods -A"
  "delete pods -A"
  "create clusterrolebindings.rbac.authorization.k8s.io"
  "create clusterroles.rbac.authorization.k8s.io"
  "bind clusterroles.rbac.authorization.k8s.io/cluster-admin"
  "escalate clusterroles.rbac.authorization.k8s.io"
  "update rolebindings.rbac.authorization.k8s.io -A"
  "* *"
)

# verify_credential KUBECONFIG-FILE: returns 0 when the credential has exactly the needed rights;
# otherwise prints what is wrong to stderr and returns 1. The token stays in the file, never in argv.
verify_credential() {
  local file="$1" check out bad=0
  local -a args
  out="$(can_i_as "$file" get namespaces)"
  if [[ "$out" == error:* ]]; then
    printf '  the credential does not work: %s\n' "$out" >&2
    return 1
  fi
  # The checks are independent: run them in parallel, one result file each, then read them in order.
  local dir i
  dir="$(mktemp -d "$TMPDIR_SETUP/verify.XXXXXX")"
  set -f
  i=0
  for check in "${REQUIRED_CHECKS[@]}" "${FORBIDDEN_CHECKS[@]}"; do
    read -r -a args <<<"$check"
    can_i_as "$file" "${args[@]}" >"$dir/$i" &
    i=$((i + 1))
  done
  wait
  i=0
  for check in "${REQUIRED_CHECKS[@]}"; do
    out="$(cat "$dir/$i")"
    if [[ "$out" != yes ]]; then
      printf '  missing permission: %s (%s)\n' "$check" "$out" >&2
      bad=1
    fi
    i=$((i + 1))
  done
  for check in "${FORBIDDEN_CHECKS[@]}"; do
    out="$(cat "$dir/$i")"
    # "no - <reason>" is a denial too: the API server adds why, e.g. a binding to a ClusterRole that
    # does not exist yet (an operator's own role, reported after registering)
    if [[ "$out" != no && "$out" != "no - "* ]]; then
      printf '  unexpected permission: %s (%s)\n' "$check" "$out" >&2
      bad=1
    fi
    i=$((i + 1))
  done
  set +f
  rm -rf "$dir"
  return "$bad"
}

# ------------------------------------------------------------------------------------------ kubeconfig

# write_kubeconfig FILE TOKEN [SERVER]: the kubeconfig the controller will use (mode 0600); with
# SERVER, the same for another URL of the API server (the one this workstation reaches).
write_kubeconfig() {
  local file="$1" token="$2" server="${3:-$SERVER}"
  (
    umask 077
    {
      printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: %s\n  cluster:\n' "$NAME"
      printf '    server: %s\n' "$server"
      if [[ "$INSECURE" == true ]]; then
        printf '    insecure-skip-tls-verify: true\n'
      elif [[ -n "$CA_DATA" ]]; then
        printf '    certificate-authority-data: %s\n' "$CA_DATA"
      fi
      [[ -n "$TLS_SERVER_NAME" ]] && printf '    tls-server-name: %s\n' "$TLS_SERVER_NAME"
      printf 'users:\n- name: %s\n  user:\n    token: %s\n' "$NAME" "$token"
      printf 'contexts:\n- name: %s\n  context:\n    cluster: %s\n    user: %s\n' "$NAME" "$NAME" "$NAME"
      printf 'current-context: %s\npreferences: {}\n' "$NAME"
    } >"$file"
  )
}

# ------------------------------------------------------------------------------------------ agent

# Sets AGENT_ACTION (install|upgrade|none|apply|skip) and AGENT_HOW (helm|kubectl|none).
plan_agent() {
  AGENT_HOW=none AGENT_ACTION=skip AGENT_EXISTED=0 AGENT_NS_EXISTED=0
  ((SKIP_AGENT)) && return 0
  kr get namespace "$AGENT_NAMESPACE" >/dev/null 2>&1 && AGENT_NS_EXISTED=1
  kr get serviceaccount "$SERVICE_ACCOUNT" -n "$AGENT_NAMESPACE" >/dev/null 2>&1 && AGENT_EXISTED=1
  if ((!NO_HELM)) && [[ -n "$HELM_BIN" && -f "$CHART/Chart.yaml" ]]; then
    AGENT_HOW=helm
    if "$HELM_BIN" status "$RELEASE" -n "$AGENT_NAMESPACE" --kube-context "$REMOTE_CONTEXT" >/dev/null 2>&1; then
      local want have
      want="$("$HELM_BIN" template "$RELEASE" "$CHART" -n "$AGENT_NAMESPACE" --set remote.enabled=true "${HELM_ROLE_ARGS[@]}" 2>&1)" \
        || die "helm template failed: $want"
      have="$("$HELM_BIN" get manifest "$RELEASE" -n "$AGENT_NAMESPACE" --kube-context "$REMOTE_CONTEXT" 2>/dev/null || true)"
      if [[ "$(printf '%s' "$want" | sed '/^[[:space:]]*$/d')" == "$(printf '%s' "$have" | sed '/^[[:space:]]*$/d')" ]]; then
        AGENT_ACTION=none
      else
        AGENT_ACTION=upgrade
      fi
    else
      ((AGENT_EXISTED)) && die "the agent ServiceAccount $AGENT_NAMESPACE/$SERVICE_ACCOUNT exists on '$REMOTE_CONTEXT' but not as helm release '$RELEASE'; pass --release with its release name, --no-helm if it was applied with kubectl, or --skip-agent"
      AGENT_ACTION=install
    fi
  else
    [[ -n "$JANUS_BIN" ]] || die "neither helm (with the chart at $CHART) nor the janus binary is available to deploy the agent; install one (or set HELM / JANUS), or pass --skip-agent"
    AGENT_HOW=kubectl
    AGENT_ACTION=apply
  fi
}

agent_manifests() {
  if [[ -n "$ROLES_FLAG" ]]; then
    "$JANUS_BIN" agent-manifests --namespace "$AGENT_NAMESPACE" --roles "$ROLES_FLAG"
  else
    "$JANUS_BIN" agent-manifests --namespace "$AGENT_NAMESPACE"
  fi
}

deploy_agent() {
  case "$AGENT_HOW/$AGENT_ACTION" in
    */skip | helm/none) return 0 ;;
    helm/install | helm/upgrade)
      step "deploying the agent with helm ($AGENT_ACTION release $RELEASE in $AGENT_NAMESPACE on '$REMOTE_CONTEXT')"
      if [[ "$AGENT_ACTION" == install ]] && ((!AGENT_NS_EXISTED)); then
        ROLLBACK+=("delete namespace $AGENT_NAMESPACE on $REMOTE_CONTEXT|kr delete namespace \"\$AGENT_NAMESPACE\" --wait=false")
      fi
      if [[ "$AGENT_ACTION" == install ]]; then
        ROLLBACK+=("helm uninstall $RELEASE on $REMOTE_CONTEXT|\"\$HELM_BIN\" uninstall \"\$RELEASE\" -n \"\$AGENT_NAMESPACE\" --kube-context \"\$REMOTE_CONTEXT\"")
      fi
      local out
      out="$("$HELM_BIN" upgrade --install "$RELEASE" "$CHART" -n "$AGENT_NAMESPACE" --create-namespace \
        --kube-context "$REMOTE_CONTEXT" --set remote.enabled=true "${HELM_ROLE_ARGS[@]}" 2>&1)" || die "helm could not deploy the agent: $out"
      ;;
    kubectl/apply)
      step "deploying the agent with kubectl (janus agent-manifests) in $AGENT_NAMESPACE on '$REMOTE_CONTEXT'"
      local manifests out
      manifests="$(agent_manifests)" || die "janus agent-manifests failed"
      if ((!AGENT_NS_EXISTED)); then
        out="$(kr create namespace "$AGENT_NAMESPACE" 2>&1)" || die "cannot create namespace $AGENT_NAMESPACE on '$REMOTE_CONTEXT': $out"
        ROLLBACK+=("delete namespace $AGENT_NAMESPACE on $REMOTE_CONTEXT|kr delete namespace \"\$AGENT_NAMESPACE\" --wait=false")
      fi
      if ((!AGENT_EXISTED)); then
        ROLLBACK+=("delete the agent objects on $REMOTE_CONTEXT|agent_manifests | kr delete -f - --ignore-not-found")
      fi
      out="$(printf '%s\n' "$manifests" | kr apply -f - 2>&1)" || die "kubectl could not apply the agent manifests: $out"
      printf '%s\n' "$out" | sed 's/^/  /'
      ;;
  esac
}

# ------------------------------------------------------------------------------------------ add

cmd_add() {
  load_contexts
  TMPDIR_SETUP="$(mktemp -d)"
  chmod 700 "$TMPDIR_SETUP"
  local asked=0
  if [[ -z "$CENTRAL_CONTEXT" || -z "$REMOTE_CONTEXT" || -z "$NAME" ]]; then
    ((INTERACTIVE)) || die "missing $([[ -z "$CENTRAL_CONTEXT" ]] && echo --central-context)$([[ -z "$REMOTE_CONTEXT" ]] && echo ' --remote-context')$([[ -z "$NAME" ]] && echo ' --name') (not running in a terminal, so cannot ask)"
    asked=1
    list_contexts
    if [[ -z "$CENTRAL_CONTEXT" ]]; then
      ask_context CENTRAL_CONTEXT "Central" "$("$KUBECTL" config current-context 2>/dev/null || true)"
    fi
    [[ -n "$REMOTE_CONTEXT" ]] || ask_context REMOTE_CONTEXT "Remote" ""
  fi
  check_context central "$CENTRAL_CONTEXT"
  check_context remote "$REMOTE_CONTEXT"
  [[ "$CENTRAL_CONTEXT" != "$REMOTE_CONTEXT" ]] || die "the central and the remote context are the same ('$CENTRAL_CONTEXT')"
  if [[ -z "$NAME" ]]; then
    local suggested
    suggested="$(printf '%s' "$REMOTE_CONTEXT" | tr '[:upper:]' '[:lower:]' | sed 's/[^a-z0-9-]/-/g; s/--*/-/g; s/^-//; s/-$//' | cut -c1-63)"
    while true; do
      ask NAME "Cluster name (used in requests)" "$suggested"
      valid_name "$NAME" && break
      info "  invalid name: lowercase letters, digits and '-', at most 63 characters"
    done
  fi
  valid_name "$NAME" || die "invalid cluster name '$NAME': lowercase letters, digits and '-', at most 63 characters"
  if [[ -z "$DISPLAY_NAME" ]]; then
    if ((asked)); then ask DISPLAY_NAME "Display name" "$NAME"; else DISPLAY_NAME="$NAME"; fi
  fi
  SECRET_NAME="${SECRET_NAME:-$NAME-kubeconfig}"
  local duration
  duration="$(duration_seconds "$TOKEN_DURATION")" || die "invalid --token-duration '$TOKEN_DURATION' (e.g. 720h, 90m)"
  ((duration >= 600)) || die "--token-duration must be at least 10m (the Kubernetes minimum)"

  step "checking the clusters"
  reachable central "$CENTRAL_CONTEXT"
  reachable remote "$REMOTE_CONTEXT"
  local central_server remote_server
  central_server="$(cluster_field "$CENTRAL_CONTEXT" server)"
  remote_server="$(cluster_field "$REMOTE_CONTEXT" server)"
  [[ "$central_server" != "$remote_server" ]] || die "contexts '$CENTRAL_CONTEXT' and '$REMOTE_CONTEXT' point at the same API server ($remote_server); the central cluster needs no registration"
  SERVER="${REMOTE_SERVER:-$remote_server}"
  SERVER="${SERVER%/}"
  # The credential is checked through the context's own URL: --remote-server may be reachable only
  # from the central cluster.
  CHECK_SERVER="${remote_server%/}"
  [[ "$SERVER" == https://* ]] || die "the remote API server '$SERVER' is not https://; pass --remote-server"
  INSECURE="$(cluster_field "$REMOTE_CONTEXT" insecure-skip-tls-verify)"
  TLS_SERVER_NAME="$(cluster_field "$REMOTE_CONTEXT" tls-server-name)"
  CA_DATA="$(cluster_field "$REMOTE_CONTEXT" certificate-authority-data)"
  if [[ -z "$CA_DATA" ]]; then
    local ca_file
    ca_file="$(cluster_field "$REMOTE_CONTEXT" certificate-authority)"
    if [[ -n "$ca_file" ]]; then
      [[ -r "$ca_file" ]] || die "the CA file '$ca_file' of context '$REMOTE_CONTEXT' is not readable"
      CA_DATA="$(b64 <"$ca_file")"
    fi
  fi
  [[ "$INSECURE" == true ]] && warn "context '$REMOTE_CONTEXT' skips TLS verification; so will the central controller"

  local verb err
  for verb in get create update; do
    can central "$verb" secrets -n "$NAMESPACE" \
      || die "insufficient rights on the central cluster ('$CENTRAL_CONTEXT'): you cannot $verb secrets in namespace $NAMESPACE"
  done
  if ! err="$(kc get namespace "$NAMESPACE" -o name 2>&1 >/dev/null)"; then
    # Without the right to read namespaces, the Secret write below reports a missing namespace itself.
    if [[ "$err" == *NotFound* || "$err" == *"not found"* ]]; then
      die "namespace '$NAMESPACE' not found on the central cluster ('$CENTRAL_CONTEXT'): install the chart there first, or pass --namespace"
    elif [[ "$err" != *Forbidden* && "$err" != *forbidden* ]]; then
      die "cannot check namespace '$NAMESPACE' on the central cluster ('$CENTRAL_CONTEXT'): $err"
    fi
  fi

  read_existing_secret
  if ((EXISTING)); then
    [[ "$EXISTING_MANAGED" == k8s-janus ]] \
      || die "Secret $NAMESPACE/$SECRET_NAME exists and is not managed by k8s-janus; refusing to overwrite it (choose another --name or --secret-name)"
    if [[ -n "$EXISTING_CLUSTER" && "$EXISTING_CLUSTER" != "$NAME" ]]; then
      die "Secret $NAMESPACE/$SECRET_NAME registers cluster '$EXISTING_CLUSTER', not '$NAME'"
    fi
    [[ "$EXISTING_SERVER" == "$SERVER" ]] \
      || die "cluster name '$NAME' is already registered for another API server ($EXISTING_SERVER, Secret $NAMESPACE/$SECRET_NAME); choose another --name, or run 'setup.sh remove $NAME' first"
  fi
  local other
  other="$(kc get secrets -n "$NAMESPACE" -l "k8s-janus.opsmode.io/cluster=$NAME" -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null | grep -vx "$SECRET_NAME" | head -n 1 || true)"
  [[ -z "$other" ]] || die "cluster name '$NAME' is already registered by Secret $NAMESPACE/$other; choose another --name"

  if ((!SKIP_AGENT)); then
    for verb in "create clusterroles.rbac.authorization.k8s.io" "create clusterrolebindings.rbac.authorization.k8s.io" "bind clusterroles.rbac.authorization.k8s.io/janus-pod-exec" "create serviceaccounts -n $AGENT_NAMESPACE" "create serviceaccounts --subresource=token -n $AGENT_NAMESPACE"; do
      # shellcheck disable=SC2086 # word splitting of the check is intended
      can remote $verb || die "insufficient rights on the remote cluster ('$REMOTE_CONTEXT'): you cannot $verb"
    done
  else
    can remote create serviceaccounts --subresource=token -n "$AGENT_NAMESPACE" \
      || die "insufficient rights on the remote cluster ('$REMOTE_CONTEXT'): you cannot create tokens for serviceaccounts in $AGENT_NAMESPACE"
  fi
  load_roles
  mapfile -t HELM_ROLE_ARGS < <(helm_role_args)
  add_role_checks
  plan_agent

  local kubeconfig="$TMPDIR_SETUP/kubeconfig" check="$TMPDIR_SETUP/check-kubeconfig"
  local token="" token_action="issue" expires_at=""
  # Keep the current token when it still works, has the right permissions and is far from expiry.
  if ((EXISTING)) && ((!ROTATE)) && [[ "$AGENT_ACTION" != install ]]; then
    local old exp_epoch left
    old="$(existing_token)"
    exp_epoch="$(rfc3339_to_epoch "$EXISTING_EXPIRES" || true)"
    if [[ -n "$old" && -n "$exp_epoch" ]]; then
      left=$((exp_epoch - $(now_epoch)))
      write_kubeconfig "$kubeconfig" "$old"
      write_kubeconfig "$check" "$old" "$CHECK_SERVER"
      if ((left > duration / 3)) && [[ "$(cat "$kubeconfig")" == "$EXISTING_KUBECONFIG" ]] \
        && verify_credential "$check" 2>/dev/null; then
        token="$old" token_action="keep" expires_at="$EXISTING_EXPIRES"
      elif ((left <= duration / 3)); then
        token_action="renew"
      fi
    fi
  fi

  info ""
  info "Plan:"
  info "  central cluster : context '$CENTRAL_CONTEXT', namespace $NAMESPACE"
  if [[ "$SERVER" == "$CHECK_SERVER" ]]; then
    info "  remote cluster  : context '$REMOTE_CONTEXT', server $SERVER"
  else
    info "  remote cluster  : context '$REMOTE_CONTEXT', server $SERVER for the controller (checked here through $CHECK_SERVER)"
  fi
  info "  cluster name    : $NAME (display name: $DISPLAY_NAME)"
  case "$AGENT_HOW/$AGENT_ACTION" in
    */skip) info "  agent           : not deployed (--skip-agent)" ;;
    helm/none) info "  agent           : helm release $RELEASE in $AGENT_NAMESPACE is up to date (no change)" ;;
    helm/*) info "  agent           : helm upgrade --install $RELEASE $CHART -n $AGENT_NAMESPACE --create-namespace --set remote.enabled=true ($AGENT_ACTION)" ;;
    kubectl/*) info "  agent           : janus agent-manifests --namespace $AGENT_NAMESPACE --roles ... | kubectl apply -f - (unchanged objects are not written)" ;;
  esac
  info "  roles           : ${ROLE_NAMES[*]} (ClusterRoles: ${ROLE_CLUSTER_ROLES[*]}; the agent may bind exactly these)"
  case "$token_action" in
    keep) info "  credential      : keep the current token of $AGENT_NAMESPACE/$SERVICE_ACCOUNT (valid until $expires_at; permissions re-checked just now)" ;;
    *) info "  credential      : kubectl create token $SERVICE_ACCOUNT -n $AGENT_NAMESPACE --duration $TOKEN_DURATION ($token_action)" ;;
  esac
  info "  checks          : kubectl auth can-i: ${#REQUIRED_CHECKS[@]} permissions the controller needs, ${#FORBIDDEN_CHECKS[@]} it must not have"
  if ((EXISTING)); then
    info "  central Secret  : $NAMESPACE/$SECRET_NAME (update if anything changed)"
  else
    info "  central Secret  : $NAMESPACE/$SECRET_NAME (create; key kubeconfig, label k8s-janus.opsmode.io/cluster=$NAME)"
  fi
  info ""
  if ((DRY_RUN)); then
    info "dry run: nothing was changed"
    return 0
  fi
  confirm

  deploy_agent

  if [[ "$token_action" != keep ]]; then
    step "issuing a token for $AGENT_NAMESPACE/$SERVICE_ACCOUNT (duration $TOKEN_DURATION)"
    local err
    # the token goes from kubectl's stdout into a variable and a 0600 file, never onto a command line
    token="$(kr create token "$SERVICE_ACCOUNT" -n "$AGENT_NAMESPACE" --duration "$TOKEN_DURATION" 2>"$TMPDIR_SETUP/err")" \
      || { err="$(cat "$TMPDIR_SETUP/err")"; die "cannot create a token for $AGENT_NAMESPACE/$SERVICE_ACCOUNT on '$REMOTE_CONTEXT': $err"; }
    local exp
    exp="$(jwt_exp "$token")"
    [[ -n "$exp" ]] || exp=$(($(now_epoch) + duration))
    expires_at="$(epoch_to_rfc3339 "$exp")"
    write_kubeconfig "$kubeconfig" "$token"
    write_kubeconfig "$check" "$token" "$CHECK_SERVER"
  fi

  if [[ "$token_action" != keep ]]; then
    step "checking the agent credential with kubectl auth can-i"
    verify_credential "$check" \
      || die "the agent credential does not have exactly the permissions the controller needs (see above); nothing was registered"
  fi

  # The Secret: written only when its content would change.
  local kc_b64 display_json
  kc_b64="$(b64 <"$kubeconfig")"
  if ((EXISTING)) && [[ "$(cat "$kubeconfig")" == "$EXISTING_KUBECONFIG" && "$EXISTING_DISPLAY" == "$DISPLAY_NAME" ]]; then
    step "Secret $NAMESPACE/$SECRET_NAME is up to date (no change)"
  else
    display_json="$(json_str "$DISPLAY_NAME")"
    cat >"$TMPDIR_SETUP/secret.yaml" <<EOF
apiVersion: v1
kind: Secret
type: Opaque
metadata:
  name: $SECRET_NAME
  namespace: $NAMESPACE
  labels:
    app.kubernetes.io/managed-by: k8s-janus
    k8s-janus.opsmode.io/cluster: $NAME
  annotations:
    k8s-janus.opsmode.io/display-name: $display_json
    k8s-janus.opsmode.io/registered-by: setup.sh
    k8s-janus.opsmode.io/server: "$SERVER"
    k8s-janus.opsmode.io/token-expires-at: "$expires_at"
data:
  kubeconfig: $kc_b64
EOF
    local out
    if ((EXISTING)); then
      step "updating Secret $NAMESPACE/$SECRET_NAME on '$CENTRAL_CONTEXT'"
      out="$(kc replace -f "$TMPDIR_SETUP/secret.yaml" 2>&1)" || die "cannot update Secret $NAMESPACE/$SECRET_NAME: $out"
    else
      step "creating Secret $NAMESPACE/$SECRET_NAME on '$CENTRAL_CONTEXT'"
      out="$(kc create -f "$TMPDIR_SETUP/secret.yaml" 2>&1)" || die "cannot create Secret $NAMESPACE/$SECRET_NAME: $out"
    fi
  fi
  ROLLBACK=()
  check_role_cluster_roles "$check"
  info ""
  info "Cluster '$NAME' is registered. Requests for cluster '$NAME' can be made now (no restart needed)."
  info "The agent token expires at $expires_at: re-run this script before then (it renews the token"
  info "when less than a third of its lifetime is left; --rotate renews it at once)."
}

# ------------------------------------------------------------------------------------------ remove

TERMINAL_PHASES=" Expired Denied Revoked Cancelled Failed "

# Open requests for the cluster: lines "name<TAB>phase<TAB>revoked-by".
open_requests() {
  local out
  out="$(kc get accessrequests.k8s-janus.opsmode.io -o 'jsonpath={range .items[*]}{.metadata.name}{"\t"}{.spec.cluster}{"\t"}{.status.phase}{"\t"}{.spec.revocation.by}{"\n"}{end}' 2>&1)" \
    || die "cannot list AccessRequests on the central cluster: $out"
  printf '%s\n' "$out" | awk -F '\t' -v c="$NAME" -v t="$TERMINAL_PHASES" \
    '$1 != "" && $2 == c && index(t, " " $3 " ") == 0 { print $1 "\t" $3 "\t" $4 }'
}

# Requests (of the given names) that still hold credentials: not terminal, or terminal without
# CredentialsRemoved=True. Deleted requests are done (the finalizer removed their credentials first).
pending_cleanup() {
  local r out
  for r in "$@"; do
    out="$(kc get accessrequest "$r" -o 'jsonpath={.status.phase}{"\t"}{.status.conditions[?(@.type=="CredentialsRemoved")].status}' 2>&1)" || {
      [[ "$out" == *NotFound* || "$out" == *"not found"* ]] && continue
      die "cannot read AccessRequest $r: $out"
    }
    local phase removed
    IFS=$'\t' read -r phase removed <<<"$out" || true
    if [[ "$TERMINAL_PHASES" != *" $phase "* || "$removed" != True ]]; then
      printf '%s\n' "$r"
    fi
  done
}

cmd_remove() {
  load_contexts
  valid_name "$NAME" || die "invalid cluster name '$NAME'"
  if [[ -z "$CENTRAL_CONTEXT" ]]; then
    ((INTERACTIVE)) || die "missing --central-context (not running in a terminal, so cannot ask)"
    list_contexts
    ask_context CENTRAL_CONTEXT "Central" "$("$KUBECTL" config current-context 2>/dev/null || true)"
  fi
  check_context central "$CENTRAL_CONTEXT"
  if ((REMOVE_AGENT)); then
    if [[ -z "$REMOTE_CONTEXT" ]]; then
      ((INTERACTIVE)) || die "--remove-agent needs --remote-context"
      ask_context REMOTE_CONTEXT "Remote" ""
    fi
    check_context remote "$REMOTE_CONTEXT"
  fi
  SECRET_NAME="${SECRET_NAME:-$NAME-kubeconfig}"
  reachable central "$CENTRAL_CONTEXT"
  ((REMOVE_AGENT)) && reachable remote "$REMOTE_CONTEXT"
  # the agent's role bindings are named by role: remove those the central configuration lists
  ((REMOVE_AGENT)) && load_roles
  can central delete secrets -n "$NAMESPACE" \
    || die "insufficient rights on the central cluster ('$CENTRAL_CONTEXT'): you cannot delete secrets in namespace $NAMESPACE"
  can central patch accessrequests.k8s-janus.opsmode.io \
    || die "insufficient rights on the central cluster ('$CENTRAL_CONTEXT'): you cannot patch accessrequests (needed to revoke them)"

  local secrets labelled
  secrets=""
  kc get secret "$SECRET_NAME" -n "$NAMESPACE" >/dev/null 2>&1 && secrets="$SECRET_NAME"
  labelled="$(kc get secrets -n "$NAMESPACE" -l "k8s-janus.opsmode.io/cluster=$NAME" -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null || true)"
  local s
  for s in $labelled; do [[ " $secrets " == *" $s "* ]] || secrets="${secrets:+$secrets }$s"; done

  # (not a process substitution: a failure to list must stop the script before anything is deleted)
  local requests=() line listed
  listed="$(open_requests)"
  while IFS= read -r line; do [[ -n "$line" ]] && requests+=("$line"); done <<<"$listed"

  info ""
  info "Plan (remove cluster '$NAME' from context '$CENTRAL_CONTEXT'):"
  if ((${#requests[@]} == 0)); then
    info "  requests        : none open"
  else
    for line in "${requests[@]}"; do
      info "  revoke          : AccessRequest ${line%%$'\t'*} (phase $(printf '%s' "$line" | cut -f2))"
    done
    info "  wait            : until the controller removed their credentials (at most ${TIMEOUT}s)"
  fi
  if [[ -n "$secrets" ]]; then
    for s in $secrets; do info "  delete          : Secret $NAMESPACE/$s"; done
  else
    info "  Secret          : none found for cluster '$NAME' in $NAMESPACE"
  fi
  ((REMOVE_AGENT)) && info "  agent           : remove from context '$REMOTE_CONTEXT' (namespace $AGENT_NAMESPACE)"
  info ""
  if ((${#requests[@]} == 0)) && [[ -z "$secrets" ]] && ((!REMOVE_AGENT)); then
    info "nothing to do: cluster '$NAME' is not registered"
    return 0
  fi
  if ((DRY_RUN)); then
    info "dry run: nothing was changed"
    return 0
  fi
  confirm

  if ((${#requests[@]} > 0)); then
    local now names=() r by patch
    now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    patch="{\"spec\":{\"revocation\":{\"by\":\"setup.sh\",\"at\":\"$now\",\"reason\":$(json_str "cluster $NAME is being removed")}}}"
    for line in "${requests[@]}"; do
      r="${line%%$'\t'*}"
      by="$(printf '%s' "$line" | cut -f3)"
      names+=("$r")
      if [[ -n "$by" ]]; then
        info "  $r: already revoked by $by"
        continue
      fi
      step "revoking AccessRequest $r"
      local out
      out="$(kc patch accessrequest "$r" --type merge -p "$patch" 2>&1)" || die "cannot revoke AccessRequest $r: $out"
    done
    step "waiting for the controller to remove their credentials"
    local deadline left
    deadline=$(($(now_epoch) + TIMEOUT))
    local pending
    while true; do
      pending="$(pending_cleanup "${names[@]}")"
      mapfile -t left <<<"$pending"
      [[ -z "$pending" ]] && break
      if (($(now_epoch) >= deadline)); then
        die "timed out after ${TIMEOUT}s: credentials of ${left[*]} are still present (is the controller running?). The Secret was NOT deleted: the controller needs it to remove them. Re-run when they are gone."
      fi
      sleep 1
    done
    info "  all credentials removed"
  fi
  for s in $secrets; do
    step "deleting Secret $NAMESPACE/$s"
    local out
    out="$(kc delete secret "$s" -n "$NAMESPACE" --ignore-not-found 2>&1)" || die "cannot delete Secret $NAMESPACE/$s: $out"
  done
  if ((REMOVE_AGENT)); then
    step "removing the agent from '$REMOTE_CONTEXT'"
    if [[ -n "$HELM_BIN" ]] && "$HELM_BIN" status "$RELEASE" -n "$AGENT_NAMESPACE" --kube-context "$REMOTE_CONTEXT" >/dev/null 2>&1; then
      local out
      out="$("$HELM_BIN" uninstall "$RELEASE" -n "$AGENT_NAMESPACE" --kube-context "$REMOTE_CONTEXT" 2>&1)" || die "helm uninstall failed: $out"
    elif [[ -n "$JANUS_BIN" ]]; then
      local out
      out="$(agent_manifests | kr delete -f - --ignore-not-found 2>&1)" || die "kubectl delete of the agent failed: $out"
    else
      die "neither helm (release $RELEASE) nor janus is available to remove the agent"
    fi
    info "  agent removed (its ServiceAccount is gone, so every token issued for it is invalid)"
  fi
  info ""
  info "Cluster '$NAME' is removed."
}

# ------------------------------------------------------------------------------------------ main

parse_args "$@"
find_tools
case "$CMD" in
  add) cmd_add ;;
  remove) cmd_remove ;;
esac
