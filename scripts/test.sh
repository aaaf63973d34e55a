#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh          formatting, lints, Rust unit + end-to-end tests (kubesim, real kubectl),
#                            Helm chart tests (real helm, kubernetes-validate), browser tests (chromium),
#                            cargo deny (licenses, bans, sources), the production binary without the simulator
#
# It installs what the tests need by itself (scripts/install-test-tools.sh: helm, a Python venv, chromium
# and playwright-core under .tools/). It needs: a Rust toolchain (cargo), python3, node, and kubectl on the PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

for tool in cargo python3 kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "scripts/test.sh: '$tool' is required on the PATH" >&2; exit 2; }
done

# CI builds a clean clone once: incremental caches (about 8 GiB here) and line tables (half of each of
# the ~170 test binaries) buy nothing there and once filled the CI disk mid-build: the test build takes
# 6.5 GiB instead of 25 (`cargo test --no-run` on a clean clone, 2026-12-07).
if [[ "${CI:-}" == true ]]; then
  export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=0
fi
free_gib="$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')"
echo "scripts/test.sh: ${free_gib} GiB free on the build disk (a clean CI build needs about 12)"
if (( free_gib < 12 )); then
  echo "scripts/test.sh: warning: less than 12 GiB free; the build may fail with 'No space left on device'" >&2
fi

step "installing test tools (helm, kubernetes-validate, pytest, chromium, playwright-core)"
scripts/install-test-tools.sh
export PATH="$PWD/.tools/bin:$PATH"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo deny check licenses bans sources (deny.toml; duplicate versions are warnings)"
# No advisories: the RustSec database cannot be fetched from here (see deny.toml).
.tools/bin/cargo-deny --locked check licenses bans sources

step "throwaway PostgreSQL for the storage tests (scripts/pg-throwaway.sh)"
# The storage suite runs against SQLite always and against this cluster through JANUS_TEST_POSTGRES_URL.
if pg_env="$(scripts/pg-throwaway.sh start)"; then
  PG_THROWAWAY_DIR="$(sed -n 's/^PG_THROWAWAY_DIR=//p' <<<"$pg_env")"
  JANUS_TEST_POSTGRES_URL="$(sed -n 's/^JANUS_TEST_POSTGRES_URL=//p' <<<"$pg_env")"
  export PG_THROWAWAY_DIR JANUS_TEST_POSTGRES_URL
  trap 'scripts/pg-throwaway.sh stop "$PG_THROWAWAY_DIR"' EXIT
  echo "PostgreSQL at $JANUS_TEST_POSTGRES_URL"
elif [[ "${CI:-}" == true ]]; then
  echo "scripts/test.sh: PostgreSQL 15 (initdb, pg_ctl, postgres) is required under CI for the storage tests" >&2
  exit 2
else
  echo "scripts/test.sh: PostgreSQL not available; the storage tests run against SQLite only" >&2
fi

step "cargo test (unit and end-to-end against kubesim)"
# kubectl-driven tests wait on subprocesses, not on the CPU: more threads than cores shortens the run.
cargo test --workspace --locked -- --test-threads="${JANUS_TEST_THREADS:-4}"

step "portable suites through a kubeconfig only (scripts/test-real-cluster.sh --sim: kubesim as a separate process)"
# The real-cluster command, proved here without a real cluster: the tests get nothing but a kubeconfig.
# About 2-3 minutes (the controller lifecycle suite runs its tests one at a time).
scripts/test-real-cluster.sh --sim

step "browser tests (tests/browser: Debian chromium + playwright-core against janus demo)"
# cargo test built target/debug/janus (the demo tests run it). Missing chromium or node is a skip on a
# developer's machine and a failure under CI.
if ! command -v node >/dev/null 2>&1; then
  if [[ "${CI:-}" == true ]]; then
    echo "scripts/test.sh: node is required under CI for the browser tests" >&2
    exit 2
  fi
  echo "scripts/test.sh: node not found; browser tests skipped" >&2
else
  browser_rc=0
  node tests/browser/run.mjs target/debug/janus || browser_rc=$?
  if [[ $browser_rc -eq 3 && "${CI:-}" != true ]]; then
    echo "scripts/test.sh: chromium or playwright-core missing; browser tests skipped" >&2
  elif [[ $browser_rc -ne 0 ]]; then
    echo "scripts/test.sh: browser tests failed (screenshots and demo.log in target/browser-artifacts/)" >&2
    exit "$browser_rc"
  fi
fi

step "shellcheck scripts/setup.sh"
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck scripts/setup.sh
else
  echo "scripts/test.sh: shellcheck not found; skipped" >&2
fi

step "chart tests (helm lint/template, kubernetes-validate, policies)"
.tools/venv/bin/pytest -q tests/chart

step "production binary without the simulator (--no-default-features, as the Dockerfile builds it)"
# Last: this replaces target/debug/janus (the demo build the browser and end-to-end tests run) with the
# build that leaves out the `demo` feature; the next `cargo test` links the demo build back.
cargo build -p janus --no-default-features --locked
scripts/check-no-sim-binary.sh target/debug/janus
