"""The `helm test` hook: a Pod with the janus image (`janus probe`) that asks the
web UI and the controller, through their Services, whether they are ready.
Hardening and NetworkPolicy coverage of the Pod are also checked for every case by
test_policy.py (the hook is rendered by `helm template` like any workload)."""
import re
import subprocess
from urllib.parse import urlparse

import pytest

from chartlib import CASES, NAMESPACE, RELEASE, REPO, find, one, pod_spec

CENTRAL = sorted(c for c in CASES if not CASES[c].get("remote", {}).get("enabled"))


def hook_pods(docs):
    return [d for d in find(docs, "Pod") if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


def service_port(docs, name, port):
    """The Service `name` has `port`; returns its targetPort."""
    svc = one(docs, "Service", name)
    ports = [p for p in svc["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {name} has no port {port}"
    return svc, ports[0]["targetPort"]


@pytest.mark.parametrize("case", CENTRAL)
def test_hook_probes_web_and_controller_services(case, renderer):
    docs = renderer.case(case)
    pods = hook_pods(docs)
    assert len(pods) == 1, case
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = pod_spec(pod)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec, "needs no ServiceAccount of its own"
    (c,) = spec["containers"]
    assert c["command"] == ["janus"] and c["args"][0] == "probe"
    urls = [a for a in c["args"] if a.startswith("http://")]
    proxy = CASES[case].get("webui", {}).get("authEnabled", False)
    paths = {}
    for url in urls:
        u = urlparse(url)
        name, ns, svc_suffix = u.hostname.split(".", 2)
        assert (ns, svc_suffix) == (NAMESPACE, "svc"), url
        svc, target = service_port(docs, name, u.port)
        # the Service leads to a container port of that name on the selected pods
        selected = [d for d in find(docs, "Deployment")
                    if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                           for k, v in svc["spec"]["selector"].items())]
        assert selected, f"{url}: Service {name} selects no Deployment"
        for d in selected:
            names = {p["name"] for ct in pod_spec(d)["containers"] for p in ct.get("ports", [])}
            assert target in names, f"{url}: {d['metadata']['name']} has no port {target}"
        paths[name] = (u.path, [d["metadata"]["name"] for d in selected])
    assert paths[f"{RELEASE}-web"] == ("/ping" if proxy else "/readyz", [f"{RELEASE}-web"])
    assert paths[f"{RELEASE}-controller"] == ("/readyz", [f"{RELEASE}-controller"])
    # retries cover a fresh install's start-up
    attempts = int(c["args"][c["args"].index("--attempts") + 1])
    assert attempts >= 6


def test_hook_follows_the_service_port(renderer):
    docs = renderer.case("kitchen-sink")   # service.port 8080
    (pod,) = hook_pods(docs)
    assert f"http://{RELEASE}-web.{NAMESPACE}.svc:8080/readyz" in pod_spec(pod)["containers"][0]["args"]


def test_no_hook_in_remote_mode(renderer):
    assert hook_pods(renderer.case("remote")) == []


@pytest.mark.parametrize("case", CENTRAL)
def test_hook_network_policy(case, renderer):
    docs = renderer.case(case)
    pols = {np["metadata"]["name"]: np["spec"] for np in find(docs, "NetworkPolicy")}
    spec = pols[f"{RELEASE}-test"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("ingress"), "nothing connects to the test pod"
    dns, release = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert release["to"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "k8s-janus", "app.kubernetes.io/instance": RELEASE}}}]
    assert [p["port"] for p in release["ports"]] == ["http", "metrics"]
    # and the targets admit it: same-namespace pods on those ports
    for component, port in (("web", "http"), ("controller", "metrics")):
        rules = pols[f"{RELEASE}-{component}"]["ingress"]
        assert any({"podSelector": {}} in r["from"] and port in [p["port"] for p in r["ports"]] for r in rules), \
            f"{case}: {component} does not admit the test pod on {port}"


def test_probe_flags_exist_in_the_binary(renderer):
    """The flags the hook passes are flags of `janus probe` (the binary's own --help)."""
    janus = REPO / "target" / "debug" / "janus"
    if not janus.exists():
        pytest.skip("target/debug/janus not built (cargo build -p janus)")
    help_text = subprocess.run([str(janus), "probe", "--help"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    (pod,) = hook_pods(renderer.case("defaults"))
    for flag in (a for a in pod_spec(pod)["containers"][0]["args"] if a.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", help_text), f"janus probe has no {flag}"
