#!/usr/bin/env bash
# Regenerates charts/k8s-janus/files/crd.yaml from the Rust types: the CRD the
# chart installs must be exactly what `janus crd` prints (tests compare them).
#
# Uses $JANUS_BIN when set (e.g. target/release/janus), otherwise `cargo run`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/charts/k8s-janus/files/crd.yaml"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
if [ -n "${JANUS_BIN:-}" ]; then
  "$JANUS_BIN" crd >"$tmp"
else
  (cd "$REPO" && cargo run --quiet --bin janus -- crd) >"$tmp"
fi
grep -q 'name: accessrequests.k8s-janus.opsmode.io' "$tmp" ||
  { echo "update-chart-crd: 'janus crd' did not print the AccessRequest CRD" >&2; exit 1; }
mv "$tmp" "$OUT"
trap - EXIT
echo "wrote $OUT"
