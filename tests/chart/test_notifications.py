"""notifications.* (issue 17): the values, their schema, the ConfigMap rendering, the Secret-backed
environment of the web pods (existing Secrets or an ExternalSecret), the NetworkPolicy egress, and the
README's Slack and email examples, which must render as documented."""
import re

import pytest
import yaml

from chartlib import CHART, RELEASE, config_of, find, one, pod_spec

README = CHART / "README.md"


def readme_examples():
    text = README.read_text()
    section = text.split("## Notifications", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def web_env(docs):
    web = one(docs, "Deployment", f"{RELEASE}-web")
    container = next(c for c in pod_spec(web)["containers"] if c["name"] == "web")
    return {e["name"]: e for e in container.get("env", [])}


def web_egress_ports(docs):
    np = one(docs, "NetworkPolicy", f"{RELEASE}-web")
    return [sorted(p["port"] for p in rule.get("ports", [])) for rule in np["spec"]["egress"]]


def test_defaults_send_nothing(renderer, values_yaml):
    n = values_yaml["notifications"]
    assert (n["expiringSoonSeconds"], n["timeoutSeconds"], n["deadLetterAfterSeconds"]) == (600, 10, 86400)
    docs = renderer.docs({})
    assert config_of(docs)["notifications"] == {
        "expiringSoonSeconds": 600, "timeoutSeconds": 10, "deadLetterAfterSeconds": 86400,
        "slack": [], "teams": [], "email": [], "webhook": [], "syslog": [],
    }
    assert not [k for k in web_env(docs) if k.startswith("JANUS_SLACK")]
    assert [443, 465, 587, 6514] not in web_egress_ports(docs), "no sink, no egress for sinks"


@pytest.mark.parametrize("index", range(2))
def test_readme_examples_render_as_written(index, renderer):
    values = readme_examples()[index]
    docs = renderer.docs(values)
    cfg = config_of(docs)["notifications"]
    for kind in ("slack", "email"):
        assert cfg[kind] == values["notifications"].get(kind, [])
    env = web_env(docs)
    for e in values["notifications"]["env"]:
        ref = env[e["name"]]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (e["secretName"], e["key"])


def test_the_readme_has_a_slack_and_an_email_example():
    kinds = [k for ex in readme_examples() for k in ex["notifications"] if k != "env"]
    assert kinds == ["slack", "email"]


def test_external_secret_fills_the_notification_variables(renderer):
    values = {
        "externalSecrets": {"secretStoreRef": {"name": "vault"}},
        "notifications": {
            "webhook": [{"name": "siem", "urlEnv": "JANUS_SIEM_URL", "hmacKeyEnv": "JANUS_SIEM_KEY"}],
            "syslog": [{"name": "qradar", "host": "qradar.example.com", "port": 1514}],
            "env": [
                {"name": "JANUS_SIEM_URL", "remoteKey": "janus/siem", "remoteProperty": "url"},
                {"name": "JANUS_SIEM_KEY", "remoteKey": "janus/siem", "remoteProperty": "hmac"},
            ],
            "externalSecret": {"enabled": True},
        },
    }
    docs = renderer.docs(values)
    es = one(docs, "ExternalSecret", f"{RELEASE}-notifications")
    assert es["spec"]["secretStoreRef"]["name"] == "vault"
    assert es["spec"]["target"]["name"] == f"{RELEASE}-notifications"
    assert [(d["secretKey"], d["remoteRef"]["key"], d["remoteRef"]["property"]) for d in es["spec"]["data"]] == [
        ("JANUS_SIEM_URL", "janus/siem", "url"), ("JANUS_SIEM_KEY", "janus/siem", "hmac")]
    env = web_env(docs)
    for name in ("JANUS_SIEM_URL", "JANUS_SIEM_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-notifications", "key": name}
    # The syslog sink's own port is opened next to the default ones.
    assert [443, 465, 587, 1514, 6514] in web_egress_ports(docs)
    # Without the operator, no ExternalSecret is rendered for notifications.
    values["notifications"]["externalSecret"]["enabled"] = False
    values["notifications"]["env"] = [{"name": "JANUS_SIEM_URL", "secretName": "s", "key": "url"},
                                      {"name": "JANUS_SIEM_KEY", "secretName": "s", "key": "hmac"}]
    assert not find(renderer.docs(values), "ExternalSecret", f"{RELEASE}-notifications")


@pytest.mark.parametrize("bad, why", [
    ({"slack": [{"name": "a"}]}, "urlEnv"),
    ({"slack": [{"name": "a", "urlEnv": "JANUS_X", "url": "https://hooks.slack.com/x"}]}, "url"),
    ({"email": [{"name": "m", "host": "h", "from": "a@b.c", "security": "ssl"}]}, "security"),
    ({"syslog": [{"name": "s", "host": "h", "port": 70000}]}, "port"),
    ({"webhook": [{"name": "w", "urlEnv": "bad-name", "hmacKeyEnv": "K"}]}, "urlEnv"),
    ({"env": [{"name": "JANUS_X", "value": "inline-secret"}]}, "value"),
])
def test_the_schema_refuses_bad_sinks(renderer, bad, why):
    proc = renderer.run({"notifications": bad}, check=False)
    assert proc.returncode != 0 and why in proc.stderr, proc.stderr


def test_an_env_entry_without_its_secret_is_an_error(renderer):
    proc = renderer.run({"notifications": {"env": [{"name": "JANUS_X"}]}}, check=False)
    assert proc.returncode != 0 and "notifications.env JANUS_X: secretName is required" in proc.stderr, proc.stderr


def test_a_ca_config_map_is_mounted_for_the_sinks(renderer):
    docs = renderer.docs({"notifications": {
        "caConfigMap": "corp-ca",
        "syslog": [{"name": "siem", "host": "siem.corp", "caFile": "/etc/janus-notifications-ca/ca.crt"}]}})
    web = one(docs, "Deployment", f"{RELEASE}-web")
    spec = pod_spec(web)
    assert {"name": "notifications-ca", "configMap": {"name": "corp-ca"}} in spec["volumes"]
    container = next(c for c in spec["containers"] if c["name"] == "web")
    assert {"name": "notifications-ca", "mountPath": "/etc/janus-notifications-ca", "readOnly": True} in container["volumeMounts"]
    assert config_of(docs)["notifications"]["syslog"][0]["caFile"] == "/etc/janus-notifications-ca/ca.crt"
    assert not [v for v in pod_spec(one(renderer.docs({}), "Deployment", f"{RELEASE}-web"))["volumes"]
                if v["name"] == "notifications-ca"]
