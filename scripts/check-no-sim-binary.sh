#!/usr/bin/env bash
# Checks that a `janus` binary built without the `demo` feature (as the Dockerfile builds the production
# image) carries no simulator: kubesim runs host processes for simulated pods and must not ship.
#
#   cargo build -p janus --no-default-features --locked
#   scripts/check-no-sim-binary.sh [target/debug/janus]
#
# Asserts, failing loudly on the first violation:
#   1. `janus demo` is a command-line error (clap: unrecognized subcommand, exit 2);
#   2. `janus --help` lists the product's commands but not `demo`;
#   3. the binary's symbols (nm) and its bytes (strings, panic locations, debug info) never name kubesim;
#   4. the Dockerfile builds the image with --no-default-features.
# scripts/test.sh runs it after the tests that need the demo binary, on the debug build (a release build
# takes about 20 minutes here); the Dockerfile's release build uses the same feature set, and the script
# accepts any binary: scripts/check-no-sim-binary.sh target/release/janus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="${1:-target/debug/janus}"
fail() { printf 'check-no-sim-binary: FAIL: %s\n' "$*" >&2; exit 1; }
[[ -x "$bin" ]] || fail "$bin is not an executable (build it: cargo build -p janus --no-default-features --locked)"

# 1. No demo subcommand. `demo --help` first: on a binary that has the demo, a bare `janus demo` would
# start it and never return. The timeout guards against that too.
for args in "demo --help" "demo"; do
  rc=0
  # shellcheck disable=SC2086 # args is two fixed words
  err="$(timeout 20 "$bin" $args 2>&1 >/dev/null)" || rc=$?
  [[ $rc -eq 2 ]] || fail "\`$bin $args\` exited $rc, want 2 (a clap usage error): the demo subcommand is compiled in"
  grep -q "unrecognized subcommand 'demo'" <<<"$err" ||
    fail "\`$bin $args\` did not say \"unrecognized subcommand 'demo'\": $err"
done

# 2. --help: the real commands are there (so this is a working janus), demo is not.
help="$("$bin" --help)" || fail "\`$bin --help\` failed"
for cmd in controller web crd; do
  grep -Eq "^  $cmd( |$)" <<<"$help" || fail "\`$bin --help\` does not list '$cmd' (not a janus binary?): $help"
done
if grep -Eq '^  demo( |$)' <<<"$help"; then
  fail "\`$bin --help\` lists the demo subcommand"
fi

# 3. No kubesim code. nm must see symbols at all, or an empty scan would prove nothing.
command -v nm >/dev/null 2>&1 || fail "nm (binutils) is required"
symbols="$(nm --demangle "$bin" 2>/dev/null || true)"
grep -q 'janus_web' <<<"$symbols" || fail "nm finds no janus_web symbols in $bin (stripped?): cannot check it for kubesim"
if hits="$(grep -i 'kubesim' <<<"$symbols")"; then
  fail "$bin has $(wc -l <<<"$hits") kubesim symbols, e.g. $(head -n 3 <<<"$hits" | tr '\n' ' ')"
fi
# Strings and panic locations (crates/kubesim/src/...) survive stripping; symbols may not.
n="$(grep -a -c -i 'kubesim' "$bin" || true)"
[[ "$n" -eq 0 ]] || fail "$bin contains the bytes 'kubesim' ($n lines): $(grep -a -o -i '.\{0,40\}kubesim.\{0,40\}' "$bin" | head -n 3 | tr -c '[:print:]\n' '?')"

# 4. The production image is this variant.
grep -Eq 'cargo build --release --locked -p janus --no-default-features' Dockerfile ||
  fail "the Dockerfile does not build janus with --no-default-features"

echo "check-no-sim-binary: ok: $bin has no demo subcommand and no kubesim code; the Dockerfile builds this variant"
