"""Policy tests over every manifest of every case of the values matrix: the
chart's security promises (spec "Security" section, issue 7) as checks."""
import os
import subprocess

import pytest
import yaml

from chartlib import (CASES, CHART, NAMESPACE, PG, POD_KINDS, RELEASE, REPO, config_of, find, helm, one,
                      pod_labels, pod_spec, replicas, values_file)

PODEXEC = "janus-pod-exec"
PODLOGS = "janus-pod-logs"
PODDEBUG = "janus-pod-debug"
# The ClusterRoles of the default janus.roles (exec, logs, debug), in that order.
ROLE_CLUSTER_ROLES = [PODEXEC, PODLOGS, PODDEBUG]
RBAC_KINDS = {"Role", "ClusterRole"}
CENTRAL_CASES = sorted(c for c in CASES if not CASES[c].get("remote", {}).get("enabled"))
REMOTE_CASES = sorted(c for c in CASES if CASES[c].get("remote", {}).get("enabled"))


@pytest.fixture(params=sorted(CASES))
def case_docs(request, renderer):
    return request.param, renderer.case(request.param)


def workloads(docs):
    return [d for d in docs if d["kind"] in POD_KINDS]


def rules_of(doc):
    """Rules as a set of (apiGroup, resource, verb, resourceName-or-None)."""
    out = set()
    for rule in doc.get("rules") or []:
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in rule.get("resourceNames") or [None]:
                        out.add((group, res, verb, name))
    return out


def expand(spec):
    """{(group, resource): verbs} (+ optional resourceName) -> rule tuples."""
    out = set()
    for key, verbs in spec.items():
        group, res, *name = key
        for verb in verbs.split():
            out.add((group, res, verb, name[0] if name else None))
    return out


# ---------------------------------------------------------------- pods


def test_every_pod_is_restricted(case_docs):
    case, docs = case_docs
    for doc in workloads(docs):
        where = f"{case}: {doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("runAsUser") == 65532, where
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), f"{where}: {flag}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, cw
            assert sc.get("runAsUser", psc.get("runAsUser")) == 65532, cw
            assert sc.get("readOnlyRootFilesystem") is True, cw
            assert sc.get("allowPrivilegeEscalation") is False, cw
            assert sc.get("privileged") is not True, cw
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cw
            assert not sc.get("capabilities", {}).get("add"), cw
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", cw
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{cw}: /tmp must be an emptyDir"
            for port in c.get("ports", []):
                assert "hostPort" not in port, cw


def test_service_account_tokens_only_where_used(case_docs):
    case, docs = case_docs
    for sa in find(docs, "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, f"{case}: {sa['metadata']['name']}"
    api_users = {"controller", "web", "kubeconfig-sync"}
    for doc in workloads(docs):
        component = pod_labels(doc)["app.kubernetes.io/component"]
        mount = pod_spec(doc).get("automountServiceAccountToken")
        assert mount is (component in api_users), f"{case}: {doc['metadata']['name']} automount={mount}"


def test_images_and_commands(case_docs):
    case, docs = case_docs
    tag = CASES[case].get("image", {}).get("tag", "0.1.0")
    for doc in workloads(docs):
        janus = pod_spec(doc)["containers"][0]
        assert janus["image"] == f"opsmode/k8s-janus:{tag}", case
        assert janus["command"] == ["janus"]
        if pod_labels(doc)["app.kubernetes.io/component"] == "test":
            assert janus["args"][0] == "probe", case   # the helm test hook: no config, no API
            continue
        assert janus["args"][1:3] == ["--config", "/etc/janus/config.yaml"]


def test_every_object_is_labelled(case_docs):
    case, docs = case_docs
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/managed-by", "app.kubernetes.io/name",
                    "app.kubernetes.io/instance", "app.kubernetes.io/component"):
            assert labels.get(key), f"{case}: {doc['kind']}/{doc['metadata']['name']} lacks {key}"
    for doc in workloads(docs):
        assert pod_labels(doc).get("app.kubernetes.io/component")


# ---------------------------------------------------------------- RBAC


def test_no_rbac_wildcards(case_docs):
    case, docs = case_docs
    for doc in docs:
        if doc["kind"] not in RBAC_KINDS:
            continue
        assert "aggregationRule" not in doc
        for rule in doc.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                for item in rule.get(field) or []:
                    assert "*" not in item, f"{case}: {doc['metadata']['name']} {field} {item!r}"


def test_bind_only_the_roles_cluster_roles_and_no_escalation(case_docs):
    case, docs = case_docs
    for doc in docs:
        if doc["kind"] not in RBAC_KINDS:
            continue
        for rule in doc.get("rules") or []:
            verbs = set(rule.get("verbs", []))
            assert not verbs & {"escalate", "impersonate"}, f"{case}: {doc['metadata']['name']}"
            if "bind" in verbs:
                assert rule.get("resourceNames") == ROLE_CLUSTER_ROLES, f"{case}: {doc['metadata']['name']}"
                assert rule["resources"] == ["clusterroles"]
                assert rule["apiGroups"] == ["rbac.authorization.k8s.io"]


def test_bindings_reference_only_chart_roles(case_docs):
    """No binding to cluster-admin, edit or any role the chart does not ship."""
    case, docs = case_docs
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs
             if d["kind"] in RBAC_KINDS}
    for b in docs:
        if b["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], ref["name"], ns) in roles, f"{case}: {b['metadata']['name']} -> {ref}"


def test_secrets_only_in_janus_namespace(case_docs):
    case, docs = case_docs
    for doc in docs:
        if doc["kind"] not in RBAC_KINDS or not any(r[1] == "secrets" for r in rules_of(doc)):
            continue
        name = doc["metadata"]["name"]
        assert doc["kind"] == "Role", f"{case}: ClusterRole {name} grants secrets"
        ns = doc["metadata"]["namespace"]
        if ns != NAMESPACE:
            # only kubeconfig-sync, reading ArgoCD's cluster Secrets
            assert name.endswith("-kubeconfig-sync"), f"{case}: {name} in {ns}"
            assert rules_of(doc) == expand({("", "secrets"): "get list"})


def test_pod_exec_role_is_exactly_the_design(case_docs):
    case, docs = case_docs
    role = one(docs, "ClusterRole", PODEXEC)
    assert rules_of(role) == expand({
        ("", "pods"): "get list",
        ("", "pods/exec"): "create get",
        ("", "pods/log"): "get",
        ("", "events"): "list",
    })


def test_pod_logs_and_debug_roles_are_exactly_the_design(case_docs):
    """logs: read-only, no exec; debug: ephemeral containers and attach, never pods/exec."""
    case, docs = case_docs
    assert rules_of(one(docs, "ClusterRole", PODLOGS)) == expand({
        ("", "pods"): "get list",
        ("", "pods/log"): "get",
        ("", "events"): "list",
    })
    assert rules_of(one(docs, "ClusterRole", PODDEBUG)) == expand({
        ("", "pods"): "get list",
        ("", "pods/ephemeralcontainers"): "patch",
        ("", "pods/attach"): "create get",
        ("", "pods/log"): "get",
        ("", "events"): "list",
    })


CONTROLLER_CLUSTER = expand({
    ("k8s-janus.opsmode.io", "accessrequests"): "get list watch patch delete",
    ("k8s-janus.opsmode.io", "accessrequests/status"): "patch",
    ("", "serviceaccounts"): "get list create delete",
    ("", "serviceaccounts/token"): "create",
    ("rbac.authorization.k8s.io", "rolebindings"): "get list create delete",
    ("rbac.authorization.k8s.io", "clusterroles", PODEXEC): "get bind",
    ("rbac.authorization.k8s.io", "clusterroles", PODLOGS): "get bind",
    ("rbac.authorization.k8s.io", "clusterroles", PODDEBUG): "get bind",
    ("rbac.authorization.k8s.io", "roles"): "get list create update delete",
    ("", "pods"): "list watch",
    ("apps", "deployments"): "get",
    ("apps", "statefulsets"): "get",
    ("apps", "daemonsets"): "get",
    ("", "namespaces"): "get",
    ("events.k8s.io", "events"): "create patch",
})
CONTROLLER_NS = expand({
    ("", "secrets"): "get list watch create update delete",
    ("coordination.k8s.io", "leases"): "get watch create update",
})
WEB_CLUSTER = expand({
    ("k8s-janus.opsmode.io", "accessrequests"): "get list watch create patch",
    ("", "namespaces"): "list",
    ("", "pods"): "list",
    ("apps", "deployments"): "list",
    ("apps", "statefulsets"): "list",
    ("apps", "daemonsets"): "list",
    ("rbac.authorization.k8s.io", "clusterroles", PODEXEC): "get",
})
WEB_NS = expand({("", "secrets"): "get list"})
AGENT = expand({
    ("", "serviceaccounts"): "get list create delete",
    ("", "serviceaccounts/token"): "create",
    ("rbac.authorization.k8s.io", "rolebindings"): "get list create delete",
    ("rbac.authorization.k8s.io", "roles"): "get list create update delete",
    ("", "pods"): "list watch",
    ("apps", "deployments"): "get list",
    ("apps", "statefulsets"): "get list",
    ("apps", "daemonsets"): "get list",
    ("rbac.authorization.k8s.io", "clusterroles", PODEXEC): "get bind",
    ("rbac.authorization.k8s.io", "clusterroles", PODLOGS): "get bind",
    ("rbac.authorization.k8s.io", "clusterroles", PODDEBUG): "get bind",
    ("", "namespaces"): "get list",
})


@pytest.mark.parametrize("case", CENTRAL_CASES)
def test_central_rbac_is_exact(case, renderer):
    docs = renderer.case(case)
    assert rules_of(one(docs, "ClusterRole", f"{RELEASE}-controller")) == CONTROLLER_CLUSTER
    assert rules_of(one(docs, "Role", f"{RELEASE}-controller")) == CONTROLLER_NS
    assert rules_of(one(docs, "ClusterRole", f"{RELEASE}-web")) == WEB_CLUSTER
    assert rules_of(one(docs, "Role", f"{RELEASE}-web")) == WEB_NS
    # each ServiceAccount is bound to its own roles only
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for component in ("controller", "web"):
            b = one(docs, kind, f"{RELEASE}-{component}")
            assert b["roleRef"]["name"] == f"{RELEASE}-{component}"
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-{component}",
                                      "namespace": NAMESPACE}]
    # …and the controller to every role's ClusterRole (no `escalate`: it holds what it writes)
    assert controller_role_bindings(docs) == {"exec": PODEXEC, "logs": PODLOGS, "debug": PODDEBUG}
    web_bindings = [b for b in find(docs, "ClusterRoleBinding")
                    if any(s["name"] == f"{RELEASE}-web" for s in b["subjects"])]
    assert [b["metadata"]["name"] for b in web_bindings] == [f"{RELEASE}-web"]


def controller_role_bindings(docs):
    """{role name: ClusterRole} of the controller's `<release>-controller-role-<name>` bindings."""
    prefix = f"{RELEASE}-controller-role-"
    out = {}
    for b in find(docs, "ClusterRoleBinding"):
        name = b["metadata"]["name"]
        if name.startswith(prefix):
            assert b["roleRef"]["kind"] == "ClusterRole"
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-controller",
                                      "namespace": NAMESPACE}]
            out[name.removeprefix(prefix)] = b["roleRef"]["name"]
    return out


CUSTOM_ROLES = [
    {"name": "exec", "clusterRole": PODEXEC, "terminal": "shell"},
    {"name": "audit", "displayName": "Audit", "description": "Read configmaps.",
     "clusterRole": "acme-audit", "terminal": "logs"},
    {"name": "netshoot", "clusterRole": PODDEBUG, "terminal": "debug",
     "debugImages": ["nicolaka/netshoot:*"]},
    {"name": "busybox", "clusterRole": PODDEBUG, "terminal": "debug", "debugImages": ["busybox:1.36"]},
]


def test_custom_roles(renderer):
    """An operator's own role: only the binding is rendered (the ClusterRole is theirs); a
    shipped ClusterRole no role names is not rendered; two roles sharing one ClusterRole bind it
    once in `bind` and get a binding each; the ConfigMap carries the roles as written."""
    for remote in (False, True):
        docs = renderer.docs({"janus": {"roles": CUSTOM_ROLES}, "remote": {"enabled": remote}})
        shipped = sorted(d["metadata"]["name"] for d in find(docs, "ClusterRole")
                         if d["metadata"]["name"].startswith("janus-pod-"))
        assert shipped == [PODDEBUG, PODEXEC], remote
        assert not find(docs, "ClusterRole", "acme-audit")
        owner = "k8s-janus-agent" if remote else f"{RELEASE}-controller"
        want = expand({
            ("rbac.authorization.k8s.io", "clusterroles", PODEXEC): "get bind",
            ("rbac.authorization.k8s.io", "clusterroles", "acme-audit"): "get bind",
            ("rbac.authorization.k8s.io", "clusterroles", PODDEBUG): "get bind",
        })
        rules = rules_of(one(docs, "ClusterRole", owner))
        assert {r for r in rules if r[1] == "clusterroles"} == want, remote
        [bind] = [r for r in one(docs, "ClusterRole", owner)["rules"] if "bind" in r["verbs"]]
        assert bind["resourceNames"] == [PODEXEC, "acme-audit", PODDEBUG]
        prefix = f"{owner}-role-"
        bindings = {b["metadata"]["name"].removeprefix(prefix): b["roleRef"]["name"]
                    for b in find(docs, "ClusterRoleBinding") if b["metadata"]["name"].startswith(prefix)}
        assert bindings == {"exec": PODEXEC, "audit": "acme-audit", "netshoot": PODDEBUG,
                            "busybox": PODDEBUG}, remote
        if not remote:
            assert config_of(docs)["roles"] == CUSTOM_ROLES


def test_roles_are_validated(renderer):
    def fails(roles):
        proc = renderer.run({"janus": {"roles": roles}}, None, check=False)
        assert proc.returncode != 0, roles
        return proc.stderr

    assert "appears twice" in fails([{"name": "exec", "clusterRole": PODEXEC, "terminal": "shell"}] * 2)
    assert "only a role with terminal: debug" in fails(
        [{"name": "exec", "clusterRole": PODEXEC, "terminal": "shell", "debugImages": ["busybox"]}])
    # the schema: name pattern, terminal enum, a ClusterRole name, no role at all, a bare '*'
    assert "/janus/roles" in fails([{"name": "Exec", "clusterRole": PODEXEC, "terminal": "shell"}])
    assert "/janus/roles" in fails([{"name": "exec", "clusterRole": PODEXEC, "terminal": "bash"}])
    assert "/janus/roles" in fails([{"name": "exec", "clusterRole": "cluster admin", "terminal": "shell"}])
    assert "/janus/roles" in fails([])
    assert "/janus/roles" in fails([{"name": "d", "clusterRole": PODDEBUG, "terminal": "debug",
                                    "debugImages": ["*"]}])


@pytest.mark.parametrize("cluster_role", ["cluster-admin", "admin", "edit", "system:aggregate-to-edit"])
def test_roles_may_not_name_kubernetes_aggregated_roles(renderer, cluster_role):
    """As validate_roles (issue 16 security review): the chart binds the controller and the agent to
    every role's ClusterRole, so cluster-admin, admin, edit and system:* are refused, in both modes and
    by the chart's own check with validate_roles's message (the schema's name pattern refuses `system:`
    first), also with the schema skipped."""
    roles = [{"name": "exec", "clusterRole": PODEXEC, "terminal": "shell"},
             {"name": "ops", "clusterRole": cluster_role, "terminal": "shell"}]
    want = (f'janus.roles[1].clusterRole: "{cluster_role}" is refused: k8s-janus binds the controller '
            "(and every agent) to each role's ClusterRole cluster-wide")
    for remote in (False, True):
        values = {"janus": {"roles": roles}, "remote": {"enabled": remote}}
        for extra in ([], ["--skip-schema-validation"]):
            proc = renderer.run(values, None, *extra, check=False)
            assert proc.returncode != 0, (remote, extra)
            if not extra and cluster_role.startswith("system:"):
                assert "/janus/roles/1/clusterRole" in proc.stderr, proc.stderr
            else:
                assert want in proc.stderr, proc.stderr
    # a ClusterRole that merely contains those words is the operator's own
    roles[1]["clusterRole"] = f"acme-{cluster_role.replace(':', '-')}"
    renderer.docs({"janus": {"roles": roles}})


def test_debug_image_prefixes_end_in_slash_or_colon(renderer):
    """As validate_roles: a prefix entry's `*` follows `/` or `:`, so `busybox*` (which would match
    busybox.evil.io/x) is refused and `busybox:*`, `registry.example.com/debug/*` are accepted."""
    def roles(*images):
        return {"janus": {"roles": [{"name": "debug", "clusterRole": PODDEBUG, "terminal": "debug",
                                     "debugImages": list(images)}]}}

    renderer.docs(roles("busybox:*", "registry.example.com/debug/*", "busybox:1.36"))
    for bad in ("busybox*", "registry.example.com/debug*", "*", "busybox:*x"):
        proc = renderer.run(roles(bad), None, check=False)
        assert proc.returncode != 0 and "/janus/roles/0/debugImages/0" in proc.stderr, (bad, proc.stderr)


# ---------------------------------------------------------------- remote agent


@pytest.mark.parametrize("case", REMOTE_CASES)
def test_remote_renders_only_the_agent(case, renderer):
    docs = renderer.case(case)
    got = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    want = [("ClusterRole", "janus-pod-exec"), ("ClusterRole", "janus-pod-logs"), ("ClusterRole", "janus-pod-debug"),
            ("ClusterRole", "k8s-janus-agent"), ("ClusterRoleBinding", "k8s-janus-agent"),
            ("ServiceAccount", "k8s-janus-agent")]
    want += [("ClusterRoleBinding", f"k8s-janus-agent-role-{r}") for r in ("exec", "logs", "debug")]
    if CASES[case]["remote"].get("legacyTokenSecret"):
        want.append(("Secret", "k8s-janus-agent-token"))
    assert got == sorted(want)
    assert rules_of(one(docs, "ClusterRole", "k8s-janus-agent")) == AGENT
    binding = one(docs, "ClusterRoleBinding", "k8s-janus-agent")
    assert binding["roleRef"]["name"] == "k8s-janus-agent"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "k8s-janus-agent",
                                    "namespace": NAMESPACE}]


def test_remote_agent_name_is_configurable(renderer):
    docs = renderer.docs({"remote": {"enabled": True, "serviceAccountName": "janus-agent"}})
    assert one(docs, "ServiceAccount", "janus-agent")
    assert one(docs, "ClusterRoleBinding", "janus-agent")["subjects"][0]["name"] == "janus-agent"


def test_legacy_token_secret_is_opt_in(renderer):
    assert not find(renderer.case("remote"), "Secret")
    secret = one(renderer.case("remote-legacy-token"), "Secret", "k8s-janus-agent-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "k8s-janus-agent"


# ---------------------------------------------------------------- availability


def test_pdb_exactly_when_several_replicas(case_docs):
    """One PodDisruptionBudget per component with more than one replica; each component's
    replicas are its own count, or `replicaCount` when that is unset."""
    case, docs = case_docs
    values = CASES[case]
    remote = values.get("remote", {}).get("enabled", False)
    pdbs = find(docs, "PodDisruptionBudget")
    want = [] if remote else [f"{RELEASE}-{c}" for c in ("controller", "web") if replicas(values, c) > 1]
    assert sorted(p["metadata"]["name"] for p in pdbs) == want
    for p in pdbs:
        assert p["spec"]["minAvailable"] == values.get("pdb", {}).get("minAvailable", 1)
        component = p["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
    for d in find(docs, "Deployment"):
        component = d["metadata"]["name"].removeprefix(f"{RELEASE}-")
        assert d["spec"]["replicas"] == replicas(values, component), f"{case}: {component}"


def test_component_replica_counts(renderer):
    def counts(values):
        docs = renderer.docs(values)
        return {c: one(docs, "Deployment", f"{RELEASE}-{c}")["spec"]["replicas"] for c in ("controller", "web")}

    assert counts({}) == {"controller": 1, "web": 1}
    assert counts(CASES["controller-replicas-sqlite"]) == {"controller": 2, "web": 1}
    assert counts(CASES["split-replicas-postgresql"]) == {"controller": 1, "web": 4}
    # null means "the seed's replicaCount", for both
    assert counts({"replicaCount": 3, "postgresql": PG, "controller": {"replicaCount": None},
                   "webui": {"replicaCount": None}}) == {"controller": 3, "web": 3}
    # SQLite keeps the web at one pod that is never overlapped
    web = one(renderer.case("controller-replicas-sqlite"), "Deployment", f"{RELEASE}-web")
    assert web["spec"]["strategy"] == {"type": "Recreate"}


def test_sqlite_web_never_overlaps(renderer):
    web = one(renderer.case("defaults"), "Deployment", f"{RELEASE}-web")
    assert web["spec"]["strategy"] == {"type": "Recreate"}
    web = one(renderer.case("replicas3-postgresql"), "Deployment", f"{RELEASE}-web")
    assert "strategy" not in web["spec"]


# ---------------------------------------------------------------- CRD


@pytest.mark.parametrize("case", CENTRAL_CASES)
def test_crd(case, renderer):
    crd = one(renderer.case(case), "CustomResourceDefinition", "accessrequests.k8s-janus.opsmode.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = crd["spec"]
    assert spec["scope"] == "Cluster"
    assert spec["group"] == "k8s-janus.opsmode.io"
    assert spec["names"]["kind"] == "AccessRequest"
    assert spec["names"]["shortNames"] == ["ar"]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    cols = [c["name"] for c in version["additionalPrinterColumns"]]
    assert cols == ["Requester", "Cluster", "Namespaces", "Phase", "Expires", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Scheduled", "Approved", "Active", "Expired", "Denied",
                                       "Revoked", "Cancelled", "Failed"]
    # Issue 15: the approval-policy fields, each guarded by CEL rules (crates/janus-api/tests/cel_rules.rs).
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in ("requesterGroups", "startAt", "approvals", "breakGlass", "breakGlassReview"):
        assert field in spec_schema["properties"], field
    assert spec_schema["properties"]["approvals"]["maxItems"] == 50
    spec_rules = " ".join(r["rule"] for r in spec_schema["x-kubernetes-validations"])
    for field in ("requesterGroups", "approvals", "startAt", "breakGlass", "breakGlassReview"):
        assert f"oldSelf.{field}" in spec_rules, field


def test_crd_template_is_files_crd_yaml(renderer):
    """The template adds labels and the keep annotation, nothing else."""
    source = yaml.safe_load((CHART / "files" / "crd.yaml").read_text())
    rendered = one(renderer.case("defaults"), "CustomResourceDefinition",
                   "accessrequests.k8s-janus.opsmode.io")
    assert rendered["spec"] == source["spec"]
    assert rendered["apiVersion"] == source["apiVersion"]


def janus_binary():
    """$JANUS_BIN, else a built target/{release,debug}/janus."""
    candidates = [os.environ.get("JANUS_BIN")] + [REPO / "target" / p / "janus" for p in ("release", "debug")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return str(c)
    return None


def test_crd_is_what_janus_crd_prints():
    """files/crd.yaml is the generated CRD (regenerate: scripts/update-chart-crd.sh)."""
    binary = janus_binary()
    if binary is None:
        pytest.skip("no janus binary built (set JANUS_BIN or build target/*/janus)")
    printed = subprocess.run([binary, "crd"], capture_output=True, text=True, check=True).stdout
    chart = yaml.safe_load((CHART / "files" / "crd.yaml").read_text())
    assert chart == yaml.safe_load(printed), \
        f"charts/k8s-janus/files/crd.yaml differs from `{binary} crd`: run scripts/update-chart-crd.sh"


# ---------------------------------------------------------------- services and network


def test_web_service(renderer):
    svc = one(renderer.case("defaults"), "Service", f"{RELEASE}-web")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    # "Use an Ingress instead of LoadBalancer"
    assert one(renderer.case("ingress"), "Service", f"{RELEASE}-web")["spec"]["type"] == "ClusterIP"
    ing = one(renderer.case("ingress"), "Ingress", RELEASE)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "janus.example.com"
    assert not find(renderer.case("defaults"), "Ingress")
    # metrics are never on the exposed Service
    metrics = one(renderer.case("defaults"), "Service", f"{RELEASE}-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"


def policies_by_component(docs):
    out = {}
    for np in find(docs, "NetworkPolicy"):
        out[np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]] = np["spec"]
    return out


def test_networkpolicy_covers_every_pod(case_docs):
    case, docs = case_docs
    pols = policies_by_component(docs)
    for doc in workloads(docs):
        component = pod_labels(doc)["app.kubernetes.io/component"]
        assert component in pols, f"{case}: no NetworkPolicy for {component}"
        assert sorted(pols[component]["policyTypes"]) == ["Egress", "Ingress"]


def test_networkpolicy_rules(case_docs):
    case, docs = case_docs
    values = CASES[case]
    pols = policies_by_component(docs)
    ingress_ns = "ingress-nginx" if values.get("ingress", {}).get("enabled") else None
    prom_ns = values.get("networkPolicy", {}).get("prometheusNamespace")
    svc = find(docs, "Service", f"{RELEASE}-web")
    exposed = bool(svc) and svc[0]["spec"]["type"] in ("LoadBalancer", "NodePort")
    # The UI port, and in proxy mode the bearer-only API port beside the sidecar (webui.bearerListener).
    webui = values.get("webui", {})
    proxy_mode = webui.get("authEnabled") and not values.get("oidc", {}).get("enabled")
    public = ["http", "api"] if proxy_mode and webui.get("bearerListener", {}).get("enabled", True) else ["http"]
    for component, spec in pols.items():
        where = f"{case}: {component}"
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{where}: ingress rule without `from` admits everything"
            for peer in rule["from"]:
                if "podSelector" in peer:
                    assert peer == {"podSelector": {}}, where  # same namespace
                elif "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert ns in (ingress_ns, prom_ns), f"{where}: ingress from namespace {ns}"
                    if ns == ingress_ns and ns != prom_ns:
                        assert [p["port"] for p in rule["ports"]] == public, where
                else:
                    assert "ipBlock" in peer and component == "web" and exposed, where
                    assert [p["port"] for p in rule["ports"]] == public, where
        for rule in spec.get("egress", []):
            assert rule.get("ports"), f"{where}: egress rule without ports"
            ports = {p["port"] for p in rule["ports"]}
            if 53 in ports:
                assert rule["to"] == [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}}}], where
        egress_ports = {p["port"] for r in spec.get("egress", []) for p in r["ports"]}
        if component == "test":
            continue  # the helm test hook: checked by test_helm_test_hook_network_policy
        assert {53, 443, 6443} <= egress_ports, where
        pg = values.get("postgresql", {}).get("enabled")
        assert (5432 in egress_ports) == bool(pg and component == "web"), where


def test_networkpolicy_web_ingress_by_exposure(renderer):
    def ip_blocks(case):
        web = policies_by_component(renderer.case(case))["web"]
        return [p["ipBlock"]["cidr"] for r in web["ingress"] for p in r["from"] if "ipBlock" in p]

    assert ip_blocks("defaults") == ["0.0.0.0/0", "::/0"]   # the spec's LoadBalancer default
    assert ip_blocks("ingress") == []                       # only via the ingress controller
    assert ip_blocks("kitchen-sink") == ["198.51.100.0/24"]
    assert not find(renderer.docs({"networkPolicy": {"enabled": False}}), "NetworkPolicy")


def test_networkpolicy_cidrs(renderer):
    pols = policies_by_component(renderer.case("kitchen-sink"))
    cidrs = {p["ipBlock"]["cidr"] for r in pols["controller"]["egress"] for p in r.get("to", [])
             if "ipBlock" in p}
    assert cidrs == {"10.0.0.1/32", "192.0.2.0/24"}
    web = policies_by_component(renderer.case("oidc"))["web"]
    assert any(p.get("ipBlock", {}).get("cidr") == "203.0.113.0/24"
               for r in web["egress"] for p in r.get("to", []))
    web = policies_by_component(renderer.case("postgresql-externalsecrets"))["web"]
    assert any(p.get("ipBlock", {}).get("cidr") == "10.20.0.0/16"
               for r in web["egress"] for p in r.get("to", []))


# ---------------------------------------------------------------- namespace / PSS


def test_pss_restricted_namespace_labels(renderer, tmp_path):
    ns = one(renderer.case("kitchen-sink"), "Namespace", NAMESPACE)
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert not find(renderer.case("defaults"), "Namespace")


def test_notes(tmp_path):
    """NOTES: how to reach the UI, the bootstrap password, the PSS labels."""
    def notes(values):
        out = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                   "-f", str(values_file(tmp_path, values))).stdout
        return out.split("NOTES:", 1)[1]

    text = notes({})
    assert f"kubectl -n {NAMESPACE} get service {RELEASE}-web" in text
    assert (f"kubectl -n {NAMESPACE} get secret {RELEASE}-bootstrap-admin "
            "-o jsonpath='{.data.password}' | base64 -d") in text
    assert f"kubectl label namespace {NAMESPACE}" in text
    assert "pod-security.kubernetes.io/enforce=restricted" in text
    assert "https://janus.example.com/" in notes(CASES["ingress"])
    assert f"helm test {RELEASE} -n {NAMESPACE}" in text
    remote = notes(CASES["remote"])
    assert "create token k8s-janus-agent" in remote and "bootstrap" not in remote
    assert "helm test" not in remote   # the agent has no test hook


# ---------------------------------------------------------------- secrets and env


def env_names(container):
    return {e["name"] for e in container.get("env", [])}


@pytest.mark.parametrize("case", CENTRAL_CASES)
def test_secret_env_per_mode(case, renderer):
    docs = renderer.case(case)
    values = CASES[case]
    web = one(docs, "Deployment", f"{RELEASE}-web")
    container = pod_spec(web)["containers"][0]
    env = env_names(container)
    oidc = values.get("oidc", {}).get("enabled", False)
    proxy = values.get("webui", {}).get("authEnabled", False)
    pg = values.get("postgresql", {}).get("enabled", False)
    assert "JANUS_SESSION_KEY" in env
    assert ("JANUS_BOOTSTRAP_ADMIN_PASSWORD" in env) == (not oidc and not proxy)
    assert ("JANUS_OIDC_CLIENT_SECRET" in env) == oidc
    assert ("JANUS_DATABASE_PASSWORD" in env) == pg
    controller = pod_spec(one(docs, "Deployment", f"{RELEASE}-controller"))["containers"][0]
    # the controller gets no secret at all
    assert not env_names(controller) & {"JANUS_SESSION_KEY", "JANUS_BOOTSTRAP_ADMIN_PASSWORD",
                                        "JANUS_OIDC_CLIENT_SECRET", "JANUS_DATABASE_PASSWORD"}
    secrets = {s["metadata"]["name"] for s in find(docs, "Secret")}
    assert f"{RELEASE}-session" in secrets
    assert (f"{RELEASE}-bootstrap-admin" in secrets) == (not oidc and not proxy)
    # secret values are generated, never empty
    for s in find(docs, "Secret"):
        assert all(s["data"].values()), s["metadata"]["name"]


def test_postgresql_password_sources(renderer):
    docs = renderer.case("postgresql-externalsecrets")
    es = one(docs, "ExternalSecret", f"{RELEASE}-postgresql")
    assert es["spec"]["target"]["name"] == f"{RELEASE}-postgresql"
    assert es["spec"]["data"] == [{"secretKey": "password",
                                   "remoteRef": {"key": "janus/db", "property": "password"}}]
    assert es["spec"]["secretStoreRef"] == {"name": "vault", "kind": "ClusterSecretStore"}
    env = {e["name"]: e for e in pod_spec(one(docs, "Deployment", f"{RELEASE}-web"))["containers"][0]["env"]}
    assert env["JANUS_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-postgresql", "key": "password"}
    docs = renderer.case("postgresql-existing-secret")
    assert not find(docs, "ExternalSecret")
    env = {e["name"]: e for e in pod_spec(one(docs, "Deployment", f"{RELEASE}-web"))["containers"][0]["env"]}
    assert env["JANUS_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "janus-db", "key": "password"}
    # PostgreSQL: no SQLite volume, no PVC
    assert not find(docs, "PersistentVolumeClaim")


def test_sqlite_persistence(renderer):
    docs = renderer.case("defaults")
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in pvc["spec"]
    web = pod_spec(one(docs, "Deployment", f"{RELEASE}-web"))
    data = [v for v in web["volumes"] if v["name"] == "data"][0]
    assert data["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-data"
    assert {"name": "data", "mountPath": "/var/lib/janus"} in web["containers"][0]["volumeMounts"]
    # the controller never opens the database
    controller = pod_spec(one(docs, "Deployment", f"{RELEASE}-controller"))
    assert "data" not in {v["name"] for v in controller["volumes"]}
    docs = renderer.docs({"persistence": {"enabled": False}})
    assert not find(docs, "PersistentVolumeClaim")


def test_oauth2_proxy_sidecar(renderer):
    docs = renderer.case("auth-enabled")
    spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-web"))
    web, proxy = spec["containers"]
    assert proxy["name"] == "oauth2-proxy"
    args = web["args"]
    assert args[args.index("--listen") + 1] == "127.0.0.1:8080"
    assert "http" not in {p["name"] for p in web["ports"]}
    assert {"name": "http", "containerPort": 4180, "protocol": "TCP"} in proxy["ports"]
    assert "--upstream=http://127.0.0.1:8080" in proxy["args"]
    assert "--email-domain=example.com" in proxy["args"]
    assert "--whitelist-domain=.example.com" in proxy["args"]
    # identity headers: injected and stripped from clients (web.proxyHeaders defaults); no X-Auth-Request-*
    assert {"--reverse-proxy=true", "--pass-user-headers=true", "--skip-auth-strip-headers=true"} <= set(proxy["args"])
    assert not any(a.startswith("--set-xauthrequest") for a in proxy["args"])
    # without the proxy the UI listens on all addresses and is the Service target
    web = pod_spec(one(renderer.case("defaults"), "Deployment", f"{RELEASE}-web"))["containers"]
    assert len(web) == 1
    assert web[0]["args"][web[0]["args"].index("--listen") + 1] == "0.0.0.0:8080"
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in web[0]["ports"]


def test_probes(case_docs):
    case, docs = case_docs
    for d in find(docs, "Deployment"):
        c = pod_spec(d)["containers"][0]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_kubeconfig_sync_job(renderer):
    docs = renderer.case("kubeconfig-sync")
    job = one(docs, "Job", f"{RELEASE}-kubeconfig-sync")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,post-upgrade"
    c = pod_spec(job)["containers"][0]
    assert c["image"] == "opsmode/k8s-janus:0.1.0"
    assert c["args"] == ["kubeconfig-sync", "--config", "/etc/janus/config.yaml",
                         "--argocd-namespace", "argocd"]
    assert pod_spec(job)["serviceAccountName"] == f"{RELEASE}-kubeconfig-sync"
    roles = {r["metadata"]["namespace"]: rules_of(r)
             for r in find(docs, "Role", f"{RELEASE}-kubeconfig-sync")}
    assert roles == {
        "argocd": expand({("", "secrets"): "get list"}),
        NAMESPACE: expand({("", "secrets"): "get list create update patch"}),
    }
    for b in find(docs, "RoleBinding", f"{RELEASE}-kubeconfig-sync"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-kubeconfig-sync",
                                  "namespace": NAMESPACE}]
    assert not find(renderer.case("defaults"), "Job")


# ---------------------------------------------------------------- config.yaml

CONFIG_KEYS = {
    "namespace", "adminEmails", "adminGroups", "defaultTtlSeconds", "minTtlSeconds", "maxTtlSeconds",
    "idleTimeoutSeconds", "excludedNamespaces", "displayTimezone", "pendingExpirySeconds",
    "retentionSeconds", "approvalTtlOptions", "allowSelfApproval", "auditRetentionDays", "clusters",
    "web", "database", "policies", "notifications", "roles",
}


@pytest.mark.parametrize("case", CENTRAL_CASES)
def test_config_yaml_format(case, renderer, values_yaml):
    cfg = config_of(renderer.case(case))
    values = CASES[case]
    assert set(cfg) == CONFIG_KEYS
    assert cfg["namespace"] == NAMESPACE
    janus = {**values_yaml["janus"], **values.get("janus", {})}
    # notifications: from the chart's top-level `notifications` (tests/chart/test_notifications.py).
    for key in CONFIG_KEYS - {"namespace", "clusters", "web", "database", "notifications"}:
        assert cfg[key] == janus[key], key
    clusters = values.get("clusters", values_yaml["clusters"])
    assert cfg["clusters"] == clusters
    mode = ("oidc" if values.get("oidc", {}).get("enabled")
            else "proxy" if values.get("webui", {}).get("authEnabled") else "local")
    web_keys = {"baseUrl", "authMode", "trustedProxies", "apiTokens", "cliSessionTtlSeconds"} | (
        {"oidc"} if mode == "oidc" else set())
    assert set(cfg["web"]) == web_keys
    assert cfg["web"]["authMode"] == mode
    assert cfg["web"]["trustedProxies"] == ["127.0.0.1/32"]
    assert cfg["web"]["baseUrl"] == values.get("webui", {}).get("baseUrl", "")
    if mode == "oidc":
        assert cfg["web"]["oidc"] == {k: values["oidc"].get(k, values_yaml["oidc"][k]) for k in
                                      ("issuerUrl", "clientId", "allowedDomains", "adminGroups", "groupsClaim")}
    assert set(cfg["database"]) == {"url"}
    pg = values.get("postgresql", {})
    if pg.get("enabled"):
        mode_ = pg.get("sslMode", "prefer")
        assert cfg["database"]["url"] == f"postgres://janus@pg.example.com:5432/janus?sslmode={mode_}"
    else:
        assert cfg["database"]["url"] == "sqlite:///var/lib/janus/janus.db"
