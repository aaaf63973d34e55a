#!/usr/bin/env bash
# Installs the load generator the benchmarks need into $REPO/.tools (gitignored):
#   .tools/bin/oha   oha (crates.io, pinned, `cargo install --locked`), the HTTP load generator of the
#                    web-replicas part (scripts/bench.sh web-replicas). Built once per machine and user into
#                    ~/.cache/k8s-janus-tools (a few minutes on 2 cores), then copied.
#
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
OHA_VERSION="1.16.0"

log() { printf '[install-bench-tools] %s\n' "$*" >&2; }
die() { printf '[install-bench-tools] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS/bin"
have() { [ "$("$1" --version 2>/dev/null || true)" = "oha $OHA_VERSION" ]; }
if have "$TOOLS/bin/oha"; then
  log "oha already installed: $OHA_VERSION"
  exit 0
fi
# The cache survives a fresh clone on the same machine (CI), so the compile is paid once per machine.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/k8s-janus-tools/oha-$OHA_VERSION"
if ! have "$cache/bin/oha"; then
  log "building oha $OHA_VERSION into $cache (cargo install --locked; takes minutes the first time)"
  cargo install --locked --quiet --version "$OHA_VERSION" --root "$cache" oha ||
    die "cargo install oha@$OHA_VERSION failed"
fi
install -m 0755 "$cache/bin/oha" "$TOOLS/bin/oha"
have "$TOOLS/bin/oha" || die "oha $OHA_VERSION not found after cargo install"
log "installed $TOOLS/bin/oha ($OHA_VERSION)"
