"""values.yaml against the spec, the chart README and values.schema.json, and
the values the chart refuses to render."""
import json
import re

import pytest
import yaml

from chartlib import CHART, SPEC, helm, values_file

IDENT = re.compile(r"^[A-Za-z0-9_]+$")


def flatten(values, prefix=""):
    """Rows of the README values table (same rule as scripts/gen-chart-readme.py)."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(IDENT.match(str(k)) for k in value):
            yield from flatten(value, path + ".")
        else:
            yield path, value


def same(a, b):
    """Equal with the same JSON types (False is not 0, 1 is not 1.0)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ---------------------------------------------------------------- refusals


def render_error(renderer, values):
    proc = renderer.run(values, check=False)
    assert proc.returncode != 0, f"rendered although it must not: {values}"
    return proc.stderr


def test_replicas_with_sqlite_fail_clearly(renderer):
    err = render_error(renderer, {"replicaCount": 3})
    assert "replicaCount=3 requires postgresql.enabled=true" in err
    assert "SQLite" in err and "single-writer" in err


def test_replicas_with_sqlite_fail_install(tmp_path):
    """The spec's install command refuses too. (`helm lint` cannot show this:
    Helm 4's lint mode logs `fail` at INFO level and passes.)"""
    proc = helm("install", "k8s-janus", str(CHART), "--namespace", "k8s-janus", "--dry-run=client",
                "-f", str(values_file(tmp_path, {"replicaCount": 2})), check=False)
    assert proc.returncode != 0
    assert "replicaCount=2 requires postgresql.enabled=true" in proc.stderr


def test_web_replicas_with_sqlite_fail_clearly(renderer):
    """The web's own count is checked, and named, against SQLite; the controller's is not."""
    err = render_error(renderer, {"webui": {"replicaCount": 2}})
    assert "webui.replicaCount=2 requires postgresql.enabled=true" in err
    err = render_error(renderer, {"replicaCount": 2, "controller": {"replicaCount": 1}})
    assert "replicaCount=2 requires postgresql.enabled=true" in err
    assert renderer.run({"replicaCount": 2, "webui": {"replicaCount": 1}}).returncode == 0


REFUSED = {
    "postgresql without host": ({"postgresql": {"enabled": True, "existingSecret": "x"}},
                                "requires postgresql.host"),
    "postgresql without password": ({"postgresql": {"enabled": True, "host": "pg"}},
                                    "postgresql.existingSecret, or externalSecrets.enabled"),
    "externalSecrets without postgresql": ({"externalSecrets": {"enabled": True}},
                                           "requires postgresql.enabled=true"),
    "externalSecrets without store": (
        {"postgresql": {"enabled": True, "host": "pg"}, "externalSecrets": {"enabled": True}},
        "externalSecrets.secretStoreRef.name"),
    "two auth modes": ({"webui": {"authEnabled": True, "baseUrl": "https://j.example.com"},
                        "oidc": {"enabled": True, "issuerUrl": "https://idp", "clientId": "c",
                                 "existingSecret": "s"},
                        "oauth2Proxy": {"existingSecret": "o", "emailDomains": ["x"]}},
                       "are exclusive"),
    "oidc without baseUrl": ({"oidc": {"enabled": True, "issuerUrl": "https://idp", "clientId": "c",
                                       "existingSecret": "s"}}, "requires webui.baseUrl"),
    "oidc without client": ({"oidc": {"enabled": True}, "webui": {"baseUrl": "https://j.example.com"}},
                            "oidc.clientId"),
    "proxy without secret": ({"webui": {"authEnabled": True}, "oauth2Proxy": {"emailDomains": ["x"]}},
                             "oauth2Proxy.existingSecret"),
    "proxy without domains": ({"webui": {"authEnabled": True}, "oauth2Proxy": {"existingSecret": "o"}},
                              "oauth2Proxy.emailDomains"),
    "proxy that stops stripping identity headers": (
        {"webui": {"authEnabled": True},
         "oauth2Proxy": {"existingSecret": "o", "emailDomains": ["x"],
                         "extraArgs": ["--skip-auth-strip-headers=false"]}},
        "must not contain --skip-auth-strip-headers=false"),
    "proxy that stops injecting identity headers": (
        {"webui": {"authEnabled": True},
         "oauth2Proxy": {"existingSecret": "o", "emailDomains": ["x"], "extraArgs": ["--pass-user-headers=false"]}},
        "must not contain --pass-user-headers=false"),
    "default ttl above max": ({"janus": {"defaultTtlSeconds": 30000}}, "must lie between"),
    "approval option below min": ({"janus": {"approvalTtlOptions": [300]}}, "must lie between"),
    "duplicate cluster": ({"clusters": [{"name": "a", "displayName": "A"}, {"name": "a", "displayName": "B"}]},
                          "appears twice"),
    "sync on remote": ({"remote": {"enabled": True}, "kubeconfigSync": {"enabled": True}},
                       "cannot be combined with remote.enabled"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_values(name, renderer):
    values, message = REFUSED[name]
    assert message in render_error(renderer, values)


SCHEMA_REJECTS = {
    "service type": ({"service": {"type": "Foo"}}, "/service/type"),
    "negative ttl": ({"janus": {"defaultTtlSeconds": -1}}, "/janus/defaultTtlSeconds"),
    "negative max ttl": ({"janus": {"maxTtlSeconds": -3600}}, "/janus/maxTtlSeconds"),
    "ttl as string": ({"janus": {"idleTimeoutSeconds": "900"}}, "/janus/idleTimeoutSeconds"),
    "pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "unknown top-level key": ({"replicas": 2}, "additional properties 'replicas'"),
    "unknown nested key": ({"janus": {"adminEmail": ["a@b.c"]}}, "additional properties 'adminEmail'"),
    "replicaCount zero": ({"replicaCount": 0}, "/replicaCount"),
    "controller replicaCount zero": ({"controller": {"replicaCount": 0}}, "/controller/replicaCount"),
    "webui replicaCount string": ({"webui": {"replicaCount": "2"}}, "/webui/replicaCount"),
    "prometheusRule for": ({"metrics": {"prometheusRule": {"for": "ten minutes"}}}, "/metrics/prometheusRule/for"),
    "no clusters": ({"clusters": []}, "/clusters"),
    "cluster without displayName": ({"clusters": [{"name": "a"}]}, "displayName"),
    "bad cluster name": ({"clusters": [{"name": "Prod EU", "displayName": "x"}]}, "/clusters/0/name"),
    "service port": ({"service": {"port": 70000}}, "/service/port"),
    "admin email": ({"janus": {"adminEmails": ["not-an-email"]}}, "/janus/adminEmails/0"),
    "bool as string": ({"networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled"),
    "cidr": ({"networkPolicy": {"apiServerCIDRs": ["10.0.0.1"]}}, "/networkPolicy/apiServerCIDRs/0"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_REJECTS))
def test_schema_rejects(name, renderer):
    values, where = SCHEMA_REJECTS[name]
    err = render_error(renderer, values)
    assert "schema" in err.lower() or "at '" in err, err
    assert where in err, err


def test_schema_covers_every_value(values_yaml, schema):
    """Every key of values.yaml is typed by the schema, and every object is closed."""

    def walk(values, node, path):
        assert node.get("type") or all(n.get("type") for n in node.get("oneOf", [{}])), \
            f"{path}: no type"
        if isinstance(values, dict) and node["type"] == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: additionalProperties"
            for key, value in values.items():
                assert key in node["properties"], f"{path}.{key} missing from values.schema.json"
                walk(value, node["properties"][key], f"{path}.{key}")

    assert schema["additionalProperties"] is False
    walk(values_yaml, schema, "")
    assert schema["properties"]["service"]["properties"]["type"]["enum"] == [
        "ClusterIP", "NodePort", "LoadBalancer"]
    assert set(schema["properties"]["image"]["properties"]["pullPolicy"]["enum"]) == {
        "Always", "IfNotPresent", "Never"}
    for key in ("defaultTtlSeconds", "minTtlSeconds", "maxTtlSeconds", "idleTimeoutSeconds"):
        ttl = schema["properties"]["janus"]["properties"][key]
        assert ttl["type"] == "integer" and ttl["minimum"] > 0 and ttl["maximum"], key


# ---------------------------------------------------------------- README


def readme_rows():
    text = (CHART / "README.md").read_text()
    table = text.split("<!-- values-table:start -->", 1)[1].split("<!-- values-table:end -->", 1)[0]
    rows = {}
    for line in table.strip().splitlines()[2:]:
        m = re.match(r"^\| `([^`]+)` \| `(.*)` \| (.*) \|$", line)
        assert m, f"malformed README values row: {line}"
        assert m.group(1) not in rows, f"duplicate README row {m.group(1)}"
        assert m.group(3).strip(), f"README row {m.group(1)} has no description"
        rows[m.group(1)] = json.loads(m.group(2))
    return rows


def test_readme_values_table_matches_values_yaml(values_yaml):
    rows = readme_rows()
    flat = dict(flatten(values_yaml))
    assert list(rows) == list(flat), "README rows differ from values.yaml keys (run scripts/gen-chart-readme.py)"
    for key, default in flat.items():
        assert same(rows[key], default), f"README default of {key}: {rows[key]!r} != {default!r}"


# ---------------------------------------------------------------- the spec


def spec_rows():
    rows = []
    for line in SPEC.read_text().splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*(.*?)\s*\|$", line)
        if m:
            rows.append((m.group(1), m.group(3)))
    return rows


def lookup(values, path):
    node = values
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"{path} is not in values.yaml"
        node = node[part]
    return node


def test_every_spec_parameter_has_the_spec_default(values_yaml, schema):
    if not SPEC.exists():
        pytest.skip(f"spec not found at {SPEC} (shared/ is laid beside the repository in CI)")
    rows = spec_rows()
    assert len(rows) >= 20, "could not parse the spec's tables"
    readme = readme_rows()
    for param, default in rows:
        if "[]." in param:
            # clusters[].name: a field of every list entry
            list_path, field = param.split("[].")
            entries = lookup(values_yaml, list_path)
            item_schema = schema["properties"][list_path]["items"]
            assert field in item_schema["properties"], f"{param} missing from the schema"
            if default == "required":
                assert field in item_schema.get("required", []), f"{param} must be required"
                assert all(field in e for e in entries), f"{param} missing from values.yaml entries"
            continue
        value = lookup(values_yaml, param)
        assert any(k == param or k.startswith(param + ".") for k in readme), f"{param} not in README"
        m = re.fullmatch(r"`(.*)`", default)
        if m:  # a literal default; otherwise prose such as "see values.yaml"
            want = yaml.safe_load(m.group(1))
            assert same(value, want), f"{param}: values.yaml has {value!r}, the spec says {want!r}"
