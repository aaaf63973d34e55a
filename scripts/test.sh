#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh          formatting, lints, Rust unit + end-to-end tests (kubesim, real kubectl),
#                            Helm chart tests (real helm, kubernetes-validate)
#
# It installs what the tests need by itself (scripts/install-test-tools.sh: helm and a Python venv
# under .tools/). It needs: a Rust toolchain (cargo), python3, and kubectl on the PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

for tool in cargo python3 kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "scripts/test.sh: '$tool' is required on the PATH" >&2; exit 2; }
done

step "installing test tools (helm, kubernetes-validate, pytest) into .tools/"
scripts/install-test-tools.sh
export PATH="$PWD/.tools/bin:$PATH"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit and end-to-end against kubesim)"
# kubectl-driven tests wait on subprocesses, not on the CPU: more threads than cores shortens the run.
cargo test --workspace --locked -- --test-threads="${JANUS_TEST_THREADS:-4}"

step "chart tests (helm lint/template, kubernetes-validate, policies)"
.tools/venv/bin/pytest -q tests/chart
