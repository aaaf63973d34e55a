"""The chart's default excludedNamespaces: the system namespaces, the release namespace and ArgoCD's."""
from chartlib import config_of


def test_default_exclusions_cover_argocd(renderer, values_yaml, schema):
    # ArgoCD holds the credentials of every cluster it manages: a shell there reaches all of them.
    defaults = values_yaml["janus"]["excludedNamespaces"]
    for ns in ("kube-system", "kube-public", "kube-node-lease", "argocd"):
        assert ns in defaults, ns
    # What the controller and web read: the rendered config.yaml.
    assert "argocd" in config_of(renderer.case("defaults"))["excludedNamespaces"]
    item = schema["properties"]["janus"]["properties"]["excludedNamespaces"]["items"]
    assert all(len(ns) <= item["maxLength"] for ns in defaults)
