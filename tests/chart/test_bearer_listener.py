"""webui.bearerListener: in proxy mode the web also serves /api/v1 and /ws to janus_ API tokens on its own
port (`api`), which the oauth2-proxy sidecar does not guard; the Service and NetworkPolicy expose it as
documented. Off in local and OIDC mode (the CLI reaches the UI port there) and when disabled."""
from chartlib import CASES, RELEASE, find, one, pod_spec


def web_container(docs):
    spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-web"))
    return next(c for c in spec["containers"] if c["name"] == "web")


def proxy_values(**bearer):
    webui = {**CASES["auth-enabled"]["webui"]}
    if bearer:
        webui["bearerListener"] = bearer
    return {
        **CASES["auth-enabled"],
        "webui": webui,
        "ingress": {"enabled": True, "host": "janus.example.com"},
        "networkPolicy": {"enabled": True, "ingressControllerNamespace": "ingress-nginx"},
    }


def web_policy_ports(docs):
    pol = one(docs, "NetworkPolicy", f"{RELEASE}-web")
    return [sorted(p["port"] for p in rule["ports"]) for rule in pol["spec"]["ingress"] if "ports" in rule]


def test_proxy_mode_serves_the_bearer_listener_beside_the_sidecar(renderer):
    docs = renderer.docs(proxy_values())
    web = web_container(docs)
    args = web["args"]
    assert args[args.index("--bearer-listen") + 1] == "0.0.0.0:8081"
    # The UI itself stays on loopback, behind oauth2-proxy.
    assert args[args.index("--listen") + 1] == "127.0.0.1:8080"
    assert {"name": "api", "containerPort": 8081, "protocol": "TCP"} in web["ports"]
    svc = one(docs, "Service", f"{RELEASE}-web")
    api = next(p for p in svc["spec"]["ports"] if p["name"] == "api")
    assert (api["port"], api["targetPort"]) == (8081, "api")
    # Reachable from the namespace and the ingress controller, like the UI port.
    for ports in web_policy_ports(docs)[:2]:
        assert "api" in ports and "http" in ports, ports


def test_the_service_port_is_configurable(renderer):
    docs = renderer.docs(proxy_values(enabled=True, port=9443))
    svc = one(docs, "Service", f"{RELEASE}-web")
    assert next(p for p in svc["spec"]["ports"] if p["name"] == "api")["port"] == 9443


def test_off_when_disabled_or_not_proxy_mode(renderer):
    cases = [renderer.docs(proxy_values(enabled=False)), renderer.case("defaults"), renderer.case("oidc")]
    for docs in cases:
        web = web_container(docs)
        assert "--bearer-listen" not in web["args"]
        assert all(p["name"] != "api" for p in web.get("ports", []))
        svc = one(docs, "Service", f"{RELEASE}-web")
        assert all(p["name"] != "api" for p in svc["spec"]["ports"])
        for pol in find(docs, "NetworkPolicy", f"{RELEASE}-web"):
            for rule in pol["spec"]["ingress"]:
                assert all(p["port"] != "api" for p in rule.get("ports", []))


def test_the_schema_refuses_bad_values(renderer):
    for bad in ({"enabled": "yes"}, {"port": 0}, {"port": 70000}, {"unknown": 1}):
        proc = renderer.run(proxy_values(**bad), check=False)
        assert proc.returncode != 0, bad
