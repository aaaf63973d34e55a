"""Every case of the values matrix lints with `helm lint --strict`, renders with
`helm template`, and validates with kubernetes-validate in strict mode against
the oldest and the newest Kubernetes version it has schemas for."""
import pytest
import yaml
from kubernetes_validate import utils as kv

from chartlib import CASES, CHART, KUBE_OLDEST, helm, kube_newest, values_file

# Kinds of other projects' CRDs: kubernetes-validate has no schema for them.
# They are still rendered and checked by the policy tests.
NO_SCHEMA_KINDS = {
    ("external-secrets.io/v1beta1", "ExternalSecret"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_strict(case, tmp_path):
    proc = helm("lint", "--strict", str(CHART), "--namespace", "k8s-janus",
                "-f", str(values_file(tmp_path, CASES[case])), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("version", ["oldest", "newest"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_strict(case, version, renderer):
    kube = KUBE_OLDEST if version == "oldest" else kube_newest()
    docs = renderer.case(case, kube)
    assert docs, "nothing rendered"
    errors, unknown = [], []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, kube, strict=True)
        except kv.SchemaNotFoundError:
            unknown.append((doc["apiVersion"], doc["kind"]))
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{name}: {path}: {e.message}")
    assert not errors, f"kubernetes-validate --strict {kube}:\n" + "\n".join(errors)
    assert set(unknown) <= NO_SCHEMA_KINDS, f"no schema for {set(unknown) - NO_SCHEMA_KINDS}"


def test_kube_version_constraint(renderer):
    """Chart.yaml kubeVersion >=1.24: older clusters are refused, 1.24 works."""
    proc = renderer.run({}, "1.23.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr
    assert renderer.run({}, "1.24.0").returncode == 0


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "k8s-janus"
    assert chart["kubeVersion"] == ">=1.24.0-0"
    assert chart["appVersion"] == "0.1.0"
