"""webui.trustedProxies: login limits count per client behind an ingress, never widening proxy-mode trust."""
from chartlib import CASES, config_of


def test_extra_proxies_are_trusted_in_local_and_oidc_mode(renderer):
    for base in ("defaults", "oidc"):
        values = {**CASES[base], "webui": {**CASES[base].get("webui", {}), "trustedProxies": ["10.42.0.0/16", "fd00::/8"]}}
        cfg = config_of(renderer.docs(values))
        assert cfg["web"]["trustedProxies"] == ["127.0.0.1/32", "10.42.0.0/16", "fd00::/8"], base


def test_proxy_mode_trusts_only_the_sidecar(renderer):
    values = {**CASES["auth-enabled"], "webui": {**CASES["auth-enabled"]["webui"], "trustedProxies": ["10.42.0.0/16"]}}
    cfg = config_of(renderer.docs(values))
    assert cfg["web"]["trustedProxies"] == ["127.0.0.1/32"]


def test_malformed_entries_are_refused(renderer):
    proc = renderer.run({"webui": {"trustedProxies": ["ingress-nginx"]}}, check=False)
    assert proc.returncode != 0
    assert "trustedProxies" in proc.stderr
