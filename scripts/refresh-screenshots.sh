#!/usr/bin/env bash
# Refreshes the README's screenshots from the browser tests: builds janus, runs tests/browser/run.mjs
# against `janus demo` (which saves every page it checks into target/browser-artifacts/), then copies a
# chosen few into docs/screenshots/. Commit the result.
#
#   scripts/refresh-screenshots.sh
#
# Needs what the browser tests need (scripts/install-test-tools.sh installs it): Debian's chromium and
# playwright-core in .tools/node.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# target/browser-artifacts/NAME.png -> docs/screenshots/NAME.png
SHOTS=(admin-dashboard request-form my-requests request-detail terminal-split recording)

cargo build -p janus
rm -f target/browser-artifacts/*.png
node tests/browser/run.mjs target/debug/janus

mkdir -p docs/screenshots
for s in "${SHOTS[@]}"; do
  cp "target/browser-artifacts/$s.png" "docs/screenshots/$s.png"
  printf '  docs/screenshots/%s.png (%s bytes)\n' "$s" "$(wc -c <"docs/screenshots/$s.png")"
done
echo "Screenshots refreshed; review them (git diff --stat docs/screenshots) and commit."
