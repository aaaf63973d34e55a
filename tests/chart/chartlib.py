"""Shared helpers for the Helm chart tests.

The tests drive the real helm binary installed by scripts/install-test-tools.sh
(.tools/bin/helm) and run under .tools/venv (kubernetes-validate, PyYAML):

    scripts/install-test-tools.sh && .tools/venv/bin/pytest tests/chart
"""
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "k8s-janus"
HELM = Path(os.environ.get("HELM", REPO / ".tools" / "bin" / "helm"))
RELEASE = "k8s-janus"
NAMESPACE = "k8s-janus"
# CI lays shared/ beside the clone; in a session it sits beside the work tree too.
SPEC = REPO.parent / "shared" / "spec" / "k8s-janus-helm-README.md"

# Kubernetes versions the manifests are validated against: the oldest and the
# newest that kubernetes-validate has schemas for (the chart supports >= 1.24,
# kubernetes-validate starts at 1.25).
KUBE_OLDEST = "1.25.0"


def kube_newest():
    from kubernetes_validate.utils import latest_version

    return latest_version()


PG = {"enabled": True, "host": "pg.example.com", "existingSecret": "janus-db"}

# The values matrix: every case must lint, render and validate.
CASES = {
    "defaults": {},
    "remote": {"remote": {"enabled": True}},
    "remote-legacy-token": {"remote": {"enabled": True, "legacyTokenSecret": True}},
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "janus.example.com",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            "tls": [{"secretName": "janus-tls", "hosts": ["janus.example.com"]}],
        },
        "webui": {"baseUrl": "https://janus.example.com"},
    },
    "postgresql-externalsecrets": {
        "postgresql": {"enabled": True, "host": "pg.example.com", "sslMode": "require"},
        "externalSecrets": {
            "enabled": True,
            "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
            "remoteKey": "janus/db",
            "remoteProperty": "password",
        },
        "networkPolicy": {"postgresqlCIDRs": ["10.20.0.0/16"]},
    },
    "postgresql-existing-secret": {"postgresql": PG},
    "auth-enabled": {
        "webui": {"authEnabled": True, "baseUrl": "https://janus.example.com"},
        "oauth2Proxy": {
            "existingSecret": "oauth2-proxy",
            "emailDomains": ["example.com"],
            "oidcIssuerUrl": "https://idp.example.com",
            "extraArgs": ["--whitelist-domain=.example.com"],
        },
        "janus": {"adminGroups": ["platform-admins"]},
    },
    "oidc": {
        "oidc": {
            "enabled": True,
            "issuerUrl": "https://idp.example.com/realms/main",
            "clientId": "k8s-janus",
            "existingSecret": "janus-oidc",
            "allowedDomains": ["example.com"],
            "adminGroups": ["platform-admins"],
        },
        "webui": {"baseUrl": "https://janus.example.com"},
        "networkPolicy": {"oidcIssuerCIDRs": ["203.0.113.0/24"]},
    },
    "replicas3-postgresql": {"replicaCount": 3, "postgresql": PG, "pdb": {"minAvailable": 2}},
    # the controller needs no database: standbys with SQLite
    "controller-replicas-sqlite": {"controller": {"replicaCount": 2}},
    "split-replicas-postgresql": {"replicaCount": 2, "controller": {"replicaCount": 1},
                                  "webui": {"replicaCount": 4}, "postgresql": PG},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"},
                               "alertLabels": {"team": "platform"}, "for": "5m"},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Security"}},
        },
        "networkPolicy": {"prometheusNamespace": "monitoring"},
    },
    "kubeconfig-sync": {
        "kubeconfigSync": {"enabled": True, "argocdNamespace": "argocd"},
        "clusters": [
            {"name": "central", "displayName": "Central"},
            {"name": "prod-eu", "displayName": "Production EU"},
            {"name": "staging", "displayName": "Staging", "secretName": "staging-kc"},
        ],
    },
    # approval policies (issue 15): every kind of policy field through lint, strict validation and config.yaml
    "policies": {
        "janus": {"policies": [
            {"name": "team-owned",
             "match": {"namespaceSelector": {"matchExpressions": [{"key": "example.com/team", "operator": "Exists"}]}},
             "approvers": {"groups": ["platform-admins"], "namespaceOwners": True}},
            {"name": "production", "match": {"clusters": ["prod-*"]},
             "approvers": {"groups": ["sre-leads"], "emails": ["cto@example.com"]}, "approvalsRequired": 2,
             "maxTtlSeconds": 3600, "approvalTtlOptions": [1800, 3600], "pendingExpirySeconds": 14400,
             "reason": {"pattern": "\\b(INC|OPS)-[0-9]+\\b", "description": "a ticket id such as OPS-1234"},
             "breakGlass": {"groups": ["oncall"], "maxTtlSeconds": 1800}},
            {"name": "staging-oncall", "match": {"clusters": ["staging"], "roles": ["exec"]},
             "approvers": {"groups": ["platform-admins"]},
             "autoApprove": {"groups": ["oncall"], "maxTtlSeconds": 1800,
                             "windows": [{"start": "18:00", "end": "08:00"},
                                         {"days": ["Sat", "Sun"], "start": "08:00", "end": "18:00"}]}},
        ]},
    },
    # issue 16: access roles with a debug image allow-list (custom ClusterRoles: test_policy.test_custom_roles)
    "roles": {
        "janus": {"roles": [
            {"name": "exec", "displayName": "Shell", "clusterRole": "janus-pod-exec", "terminal": "shell"},
            {"name": "logs", "clusterRole": "janus-pod-logs", "terminal": "logs"},
            {"name": "debug", "displayName": "Debug", "description": "netshoot or busybox",
             "clusterRole": "janus-pod-debug", "terminal": "debug",
             "debugImages": ["busybox:1.36", "nicolaka/netshoot:*"]},
        ]},
    },
    # issue 17: every kind of sink, secrets from an ExternalSecret, a CA ConfigMap, narrowed egress.
    "notifications": {
        "webui": {"baseUrl": "https://janus.example.com"},
        "externalSecrets": {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"}},
        "networkPolicy": {"notificationCIDRs": ["203.0.113.0/24"]},
        "notifications": {
            "slack": [{"name": "access", "urlEnv": "JANUS_SLACK_URL",
                       "routes": [{"clusters": ["prod"], "channel": "#prod-access"}]}],
            "teams": [{"name": "teams", "urlEnv": "JANUS_TEAMS_URL", "events": ["request.created"]}],
            "email": [{"name": "mail", "host": "smtp.example.com", "username": "janus",
                       "passwordEnv": "JANUS_SMTP_PASSWORD", "from": "janus@example.com"}],
            "webhook": [{"name": "hook", "urlEnv": "JANUS_HOOK_URL", "hmacKeyEnv": "JANUS_HOOK_KEY",
                         "headers": [{"name": "X-Tenant", "value": "platform"}]}],
            "syslog": [{"name": "siem", "host": "siem.example.com", "caFile": "/etc/janus-notifications-ca/ca.crt"}],
            "caConfigMap": "corp-ca",
            "env": [{"name": n, "remoteKey": "janus/notifications", "remoteProperty": n.lower()}
                    for n in ("JANUS_SLACK_URL", "JANUS_TEAMS_URL", "JANUS_SMTP_PASSWORD", "JANUS_HOOK_URL",
                              "JANUS_HOOK_KEY")],
            "externalSecret": {"enabled": True},
        },
    },
    "kitchen-sink": {
        "namespace": {"create": True},
        "service": {"type": "NodePort", "port": 8080, "annotations": {"a": "b"}},
        "image": {"tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "janus@p.iam"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "podAnnotations": {"example.com/note": "x"},
        "podLabels": {"team": "platform"},
        "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "persistence": {"storageClass": "fast", "size": "5Gi"},
        "networkPolicy": {
            "prometheusNamespace": "monitoring",
            "apiServerCIDRs": ["10.0.0.1/32"],
            "remoteClusterCIDRs": ["192.0.2.0/24"],
            "externalWebCIDRs": ["198.51.100.0/24"],
        },
        "janus": {"adminEmails": ["ops+admin@example.com"], "allowSelfApproval": True},
        "kubeconfigSync": {"enabled": True, "resources": {"limits": {"memory": "64Mi"}}},
    },
}


def replicas(values: dict, component: str) -> int:
    """The replicas the chart should render for `component` ("controller" or "web")."""
    own = values.get("webui" if component == "web" else "controller", {}).get("replicaCount")
    return own if own is not None else values.get("replicaCount", 1)


def helm(*args, check=True):
    if not HELM.exists():
        pytest.fail(f"{HELM} not found: run scripts/install-test-tools.sh first", pytrace=False)
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}", pytrace=False)
    return proc


def values_file(tmp_dir: Path, values: dict) -> Path:
    path = tmp_dir / f"values-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    return path


class Renderer:
    """helm template with caching: the matrix is rendered once per session."""

    def __init__(self, tmp_dir: Path):
        self.tmp = tmp_dir
        self.cache = {}

    def run(self, values: dict, kube_version: str | None = None, *extra, check=True):
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                "-f", str(values_file(self.tmp, values))]
        if kube_version:
            args += ["--kube-version", kube_version]
        return helm(*args, *extra, check=check)

    def docs(self, values: dict, kube_version: str | None = None):
        key = (json.dumps(values, sort_keys=True), kube_version)
        if key not in self.cache:
            out = self.run(values, kube_version).stdout
            self.cache[key] = [d for d in yaml.safe_load_all(out) if d]
        return self.cache[key]

    def case(self, name: str, kube_version: str | None = None):
        return self.docs(CASES[name], kube_version)


# ---------------------------------------------------------------- helpers for tests

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}


def pod_spec(doc):
    """The pod spec of a workload object, or None."""
    kind = doc.get("kind")
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in POD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def pod_labels(doc):
    if doc.get("kind") == "Pod":
        return doc["metadata"]["labels"]
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def config_of(docs):
    cm = one(docs, "ConfigMap", f"{RELEASE}-config")
    return yaml.safe_load(cm["data"]["config.yaml"])
