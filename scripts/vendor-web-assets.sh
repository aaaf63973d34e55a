#!/usr/bin/env bash
# Refreshes the third-party browser libraries vendored into the web UI (no CDN at run time).
# Pinned versions; run it to upgrade deliberately, then review the diff and commit.
#
#   scripts/vendor-web-assets.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

XTERM=5.5.0
FIT=0.10.0
dest=crates/janus-web/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "vendor-web-assets.sh: npm is required" >&2; exit 2; }
(cd "$work" && npm pack --silent "@xterm/xterm@$XTERM" "@xterm/addon-fit@$FIT" >/dev/null)
for f in "$work"/*.tgz; do
  d="${f%.tgz}"; mkdir -p "$d"; tar xzf "$f" -C "$d"
done
mkdir -p "$dest"
x="$work/xterm-xterm-$XTERM/package"
a="$work/xterm-addon-fit-$FIT/package"
# Source maps are left out: the UI serves what it needs, nothing more.
sed '/sourceMappingURL/d' "$x/lib/xterm.js" > "$dest/xterm.js"
cp "$x/css/xterm.css" "$dest/xterm.css"
sed '/sourceMappingURL/d' "$a/lib/addon-fit.js" > "$dest/addon-fit.js"
cp "$x/LICENSE" "$dest/LICENSE.xterm.txt"
cp "$a/LICENSE" "$dest/LICENSE.addon-fit.txt"
cat > "$dest/VERSIONS.txt" <<V
@xterm/xterm $XTERM (MIT, see LICENSE.xterm.txt)
@xterm/addon-fit $FIT (MIT, see LICENSE.addon-fit.txt)
Refreshed by scripts/vendor-web-assets.sh
V
echo "vendored into $dest:"; ls -l "$dest"
