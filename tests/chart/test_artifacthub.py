"""Artifact Hub annotations of Chart.yaml stay true
(https://artifacthub.io/docs/topics/annotations/helm/): the images are the
ones the chart renders, the CRD is files/crd.yaml, the example validates
against the CRD's schema, and the flags match the chart version."""
import jsonschema
import pytest
import yaml

from chartlib import CHART, RELEASE, find, pod_spec

CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANN = CHART_YAML.get("annotations", {})


def listed(key):
    assert key in ANN, f"Chart.yaml lacks annotation {key}"
    value = yaml.safe_load(ANN[key])
    assert isinstance(value, list) and value, key
    return value


def test_plain_annotations():
    assert ANN["artifacthub.io/license"] == "Apache-2.0"
    assert "Apache-2.0" in (CHART.parents[1] / "Cargo.toml").read_text()
    # a pre-release exactly when the chart version is a semver pre-release
    assert ANN["artifacthub.io/prerelease"] == ("true" if "-" in CHART_YAML["version"] else "false")
    assert ANN["artifacthub.io/containsSecurityUpdates"] in ("true", "false")
    for link in listed("artifacthub.io/links"):
        assert set(link) == {"name", "url"} and link["url"].startswith("https://"), link
    for change in listed("artifacthub.io/changes"):
        assert change["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}, change
        assert change["description"], change


def test_images_are_the_rendered_images(renderer):
    docs = renderer.docs({"webui": {"authEnabled": True, "baseUrl": "https://j.example.com"},
                          "oauth2Proxy": {"existingSecret": "p", "emailDomains": ["example.com"]}})
    rendered = {c["image"] for d in docs if pod_spec(d) for c in pod_spec(d)["containers"]}
    announced = {i["image"] for i in listed("artifacthub.io/images")}
    assert announced == rendered


def test_crds_are_the_chart_crd():
    crd = yaml.safe_load((CHART / "files" / "crd.yaml").read_text())
    served = {v["name"] for v in crd["spec"]["versions"] if v["served"]}
    for c in listed("artifacthub.io/crds"):
        assert c["kind"] == crd["spec"]["names"]["kind"]
        assert c["name"] == crd["metadata"]["name"]
        assert c["version"] in served
        assert c["displayName"] and c["description"]


def test_crd_examples_validate_against_the_crd():
    crd = yaml.safe_load((CHART / "files" / "crd.yaml").read_text())
    group = crd["spec"]["group"]
    for example in listed("artifacthub.io/crdsExamples"):
        version = example["apiVersion"].removeprefix(f"{group}/")
        assert example["apiVersion"] == f"{group}/{version}"
        assert example["kind"] == crd["spec"]["names"]["kind"]
        schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
        # x-kubernetes-* keywords are unknown to jsonschema and ignored; types, required and
        # bounds are checked.
        jsonschema.validate(example, schema)
        assert "status" not in example, "an example is what a user writes"


def test_release_changes_in_the_rendered_chart(renderer):
    """The changes list names what this chart version adds; each is really rendered."""
    changes = " ".join(c["description"] for c in listed("artifacthub.io/changes"))
    docs = renderer.docs({"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}})
    if "helm test" in changes:
        assert [d for d in find(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    if "PrometheusRule" in changes:
        assert find(docs, "PrometheusRule", RELEASE)
    if "Grafana" in changes:
        assert find(docs, "ConfigMap", f"{RELEASE}-dashboard")


@pytest.mark.parametrize("key", ["artifacthub.io/images", "artifacthub.io/crds", "artifacthub.io/crdsExamples",
                                 "artifacthub.io/links", "artifacthub.io/changes"])
def test_list_annotations_are_yaml_strings(key):
    """Artifact Hub reads these as strings holding YAML (a YAML list there is ignored)."""
    assert isinstance(ANN[key], str)
