"""Monitoring objects of the chart: the PrometheusRule (opt-in), the Grafana
dashboard ConfigMap (opt-in), and that both only use metrics the binaries
really export.

promtool is not available here, so the expressions are checked structurally
(balanced brackets, label matchers) and every `janus_*` series they name must be
one registered in crates/janus-controller/src/metrics.rs,
crates/janus-web/src/metrics.rs or crates/janus-api/src/build.rs (build_info). Those registrations are themselves pinned by
the crates' tests, which read the encoded /metrics output."""
import json
import re

import pytest
import yaml

from chartlib import CASES, CHART, NAMESPACE, RELEASE, REPO, find, one

CONTROLLER_METRICS = REPO / "crates" / "janus-controller" / "src" / "metrics.rs"
WEB_METRICS = REPO / "crates" / "janus-web" / "src" / "metrics.rs"
BUILD_INFO = REPO / "crates" / "janus-api" / "src" / "build.rs"
OPERATIONS = REPO / "docs" / "operations.md"
REGISTER = re.compile(r'(\w+)\.register\(\s*"([a-z_]+)"', re.S)
SERIES = re.compile(r"\bjanus_[a-z_]+\b")


def exported_metrics():
    """Metric families registered in the binaries, by their exposed name."""
    names = set()
    # controller: one registry with the prefix `janus`
    for _, name in REGISTER.findall(CONTROLLER_METRICS.read_text()):
        names.add(f"janus_{name}")
    # web: root registry `janus` (build_info) and its sub-registry `web`
    text = WEB_METRICS.read_text()
    assert 'Registry::with_prefix("janus")' in text and 'sub_registry_with_prefix("web")' in text
    for registry, name in REGISTER.findall(text):
        names.add(f"janus_{name}" if registry == "root" else f"janus_web_{name}")
    # build_info: defined once in janus_api::build, registered into both `janus` registries
    assert "janus_api::build::register_build_info(&mut registry)" in CONTROLLER_METRICS.read_text()
    assert "janus_api::build::register_build_info(&mut root)" in text
    for _, name in REGISTER.findall(BUILD_INFO.read_text()):
        names.add(f"janus_{name}")
    return names


def series_names():
    """Every name a query may use: counters get `_total`, histograms `_bucket/_count/_sum`."""
    out = set()
    for n in exported_metrics():
        out |= {n, f"{n}_total", f"{n}_bucket", f"{n}_count", f"{n}_sum"}
    return out


def check_expr(expr, where):
    """Structure checks standing in for promtool: brackets balance, matchers are well formed,
    and every janus_* series exists."""
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack.pop() == pairs[ch], f"{where}: unbalanced {ch} in {expr}"
    assert not stack, f"{where}: unclosed {stack} in {expr}"
    for matchers in re.findall(r"\{([^{}]*)\}", expr):
        for m in filter(None, (x.strip() for x in matchers.split(","))):
            assert re.fullmatch(r'[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"[^"]*"', m), f"{where}: matcher {m!r}"
    used = set(SERIES.findall(expr))
    assert used, f"{where}: no janus metric in {expr}"
    unknown = used - series_names()
    assert not unknown, f"{where}: {unknown} are not exported by the binaries"
    return used


def test_metric_registrations_are_found():
    names = exported_metrics()
    for want in ("janus_controller_reconcile_duration_seconds", "janus_controller_is_leader",
                 "janus_controller_cleanup_pending", "janus_build_info", "janus_web_database_up",
                 "janus_phase_transitions", "janus_requests"):
        assert want in names, f"{want} not found in the metrics sources: {sorted(names)}"


def test_every_metric_is_documented():
    ops = OPERATIONS.read_text()
    for name in sorted(exported_metrics()):
        assert name in ops, f"{name} is not described in docs/operations.md"


# ---------------------------------------------------------------- PrometheusRule

ALERTS = {
    "JanusGrantsFailing": ("warning", {"janus_phase_transitions_total"}),
    "JanusCleanupPending": ("critical", {"janus_controller_cleanup_pending"}),
    "JanusControllerLeaderMissing": ("critical", {"janus_controller_is_leader"}),
    "JanusDatabaseDown": ("critical", {"janus_web_database_up"}),
    "JanusNotificationsDeadLettered": ("warning", {"janus_web_notification_dead_lettered_total"}),
}


def anchors(markdown):
    """GitHub's heading anchors."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            out.add(re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_prometheus_rule_is_opt_in(renderer):
    assert not find(renderer.case("defaults"), "PrometheusRule")
    assert not find(renderer.case("kitchen-sink"), "PrometheusRule")   # the ServiceMonitor alone
    assert not find(renderer.docs({"remote": {"enabled": True}, "metrics": {"prometheusRule": {"enabled": True}}}),
                    "PrometheusRule")


def test_prometheus_rule_alerts(renderer):
    rule = one(renderer.case("monitoring"), "PrometheusRule", RELEASE)
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert sorted(r["alert"] for r in rules) == sorted(ALERTS)
    ops_anchors = anchors(OPERATIONS.read_text())
    for r in rules:
        where = r["alert"]
        severity, metrics = ALERTS[where]
        assert check_expr(r["expr"], where) == metrics
        # only this release's targets
        assert f'namespace="{NAMESPACE}"' in r["expr"], where
        assert r["for"] == "5m", where
        assert r["labels"] == {"severity": severity, "team": "platform"}, where
        ann = r["annotations"]
        assert ann["summary"] and len(ann["description"]) > 80, f"{where}: runbook-style description"
        url, _, anchor = ann["runbook_url"].partition("#")
        assert url.endswith("/docs/operations.md"), where
        assert anchor in ops_anchors, f"{where}: docs/operations.md has no section #{anchor}"
        # Prometheus' own templates survive Helm's
        assert "{{" not in ann["summary"]
        for templ in re.findall(r"\{\{.*?\}\}", ann["description"]):
            assert re.fullmatch(r"\{\{ \$(labels\.[a-z_]+|value)( \| humanize)? \}\}", templ), f"{where}: {templ}"
    leader = next(r for r in rules if r["alert"] == "JanusControllerLeaderMissing")
    assert "absent(janus_controller_is_leader" in leader["expr"], "no scraped controller must alert too"


def test_prometheus_rule_defaults(renderer):
    rule = one(renderer.docs({"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule", RELEASE)
    for r in (r for g in rule["spec"]["groups"] for r in g["rules"]):
        assert r["for"] == "10m"
        assert set(r["labels"]) == {"severity"}


# ---------------------------------------------------------------- Grafana dashboard

DASHBOARD = CHART / "files" / "grafana-dashboard.json"


def test_dashboard_is_opt_in(renderer):
    assert not find(renderer.case("defaults"), "ConfigMap", f"{RELEASE}-dashboard")
    assert not find(renderer.docs({"remote": {"enabled": True},
                                   "metrics": {"grafanaDashboard": {"enabled": True}}}), "ConfigMap")


def test_dashboard_configmap(renderer):
    cm = one(renderer.case("monitoring"), "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Security"}
    assert json.loads(cm["data"]["k8s-janus.json"]) == json.loads(DASHBOARD.read_text())
    cm = one(renderer.docs({"metrics": {"grafanaDashboard": {
        "enabled": True, "sidecarLabel": "dashboards", "sidecarLabelValue": "janus", "namespace": "monitoring"}}}),
        "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["dashboards"] == "janus"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


def test_dashboard_panels_use_real_metrics():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used = set()
    for p in dash["panels"]:
        assert p["title"] and p["gridPos"]["w"] > 0 and p["gridPos"]["h"] > 0, p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            used |= check_expr(t["expr"], f"panel {p['title']}")
            assert 'namespace="$namespace"' in t["expr"], f"panel {p['title']}: not scoped to $namespace"
    # the panels the alerts point at are on the board
    for want in ("janus_controller_is_leader", "janus_controller_cleanup_pending", "janus_web_database_up",
                 "janus_controller_reconcile_duration_seconds_bucket", "janus_build_info"):
        assert want in used, f"no panel on {want}"


@pytest.mark.parametrize("case", ["monitoring"])
def test_monitoring_case_renders_everything(case, renderer):
    docs = renderer.case(case)
    assert find(docs, "ServiceMonitor") and find(docs, "PrometheusRule")
    assert find(docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert CASES[case]["metrics"]["grafanaDashboard"]["enabled"]
