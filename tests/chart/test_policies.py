"""janus.policies (issue 15): the values, their schema, the ConfigMap rendering, and the worked
examples of the chart README, which must render exactly as documented."""
import copy
import re

import pytest
import yaml

from chartlib import CHART, config_of

README = CHART / "README.md"


def readme_examples():
    """The ```yaml blocks of the README's "Approval policies" section, parsed."""
    text = README.read_text()
    section = text.split("## Approval policies", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def test_default_is_no_policy(renderer, values_yaml):
    assert values_yaml["janus"]["policies"] == []
    assert config_of(renderer.docs({}))["policies"] == []


EXAMPLE_POLICIES = ["team-owned", "production", "staging-oncall", "logs-auto", "contractors"]


def test_readme_has_the_four_worked_examples():
    """Three approval examples, and the roles example (issue 16: logs-only auto-approval, contractors)."""
    assert len(readme_examples()) == 4
    names = [p["name"] for ex in readme_examples() for p in ex["janus"]["policies"]]
    assert names == EXAMPLE_POLICIES


@pytest.mark.parametrize("index", range(4))
def test_readme_examples_render_as_written(index, renderer):
    """Each example passes values.schema.json and reaches config.yaml unchanged, numbers as numbers."""
    values = readme_examples()[index]
    cfg = config_of(renderer.docs(values))
    assert cfg["policies"] == values["janus"]["policies"]


def test_all_examples_together_keep_their_order(renderer):
    policies = [p for ex in readme_examples() for p in ex["janus"]["policies"]]
    cfg = config_of(renderer.docs({"janus": {"policies": policies}}))
    assert [p["name"] for p in cfg["policies"]] == EXAMPLE_POLICIES
    # strings that look like other YAML types stay strings
    oncall = cfg["policies"][2]["autoApprove"]["windows"]
    assert oncall[0] == {"start": "18:00", "end": "08:00"}


def policy(**fields):
    return {"janus": {"policies": [{"name": "p", **fields}]}}


SCHEMA_REJECTS = {
    "no name": ({"janus": {"policies": [{"approvalsRequired": 2}]}}, "name"),
    "reserved name": (policy(name="default"), "/janus/policies/0/name"),
    "unknown key": (policy(approver={"emails": ["a@example.com"]}), "additional properties 'approver'"),
    "unknown match key": (policy(match={"cluster": ["prod"]}), "additional properties 'cluster'"),
    "quorum zero": (policy(approvalsRequired=0), "/janus/policies/0/approvalsRequired"),
    "quorum above the CRD's approvals list": (policy(approvalsRequired=51), "/janus/policies/0/approvalsRequired"),
    "quorum as string": (policy(approvalsRequired="2"), "/janus/policies/0/approvalsRequired"),
    "ttl above 7 days": (policy(maxTtlSeconds=700000), "/janus/policies/0/maxTtlSeconds"),
    "approver email": (policy(approvers={"emails": ["alice"]}), "/janus/policies/0/approvers/emails/0"),
    "namespaceOwners as string": (policy(approvers={"namespaceOwners": "yes"}),
                                  "/janus/policies/0/approvers/namespaceOwners"),
    "selector operator": (policy(match={"namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "Equals", "values": ["a"]}]}}),
        "/janus/policies/0/match/namespaceSelector/matchExpressions/0/operator"),
    "reason without pattern": (policy(reason={"description": "a ticket"}), "pattern"),
    "window hour": (policy(autoApprove={"windows": [{"start": "25:00", "end": "08:00"}]}),
                    "/janus/policies/0/autoApprove/windows/0/start"),
    "window without end": (policy(autoApprove={"windows": [{"start": "18:00"}]}), "end"),
    "window day": (policy(autoApprove={"windows": [{"days": ["Monday"], "start": "18:00", "end": "08:00"}]}),
                   "/janus/policies/0/autoApprove/windows/0/days/0"),
    "break-glass ttl": (policy(breakGlass={"groups": ["oncall"], "maxTtlSeconds": 0}),
                        "/janus/policies/0/breakGlass/maxTtlSeconds"),
    "policies not a list": ({"janus": {"policies": {"name": "p"}}}, "/janus/policies"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_REJECTS))
def test_schema_rejects(name, renderer):
    values, where = SCHEMA_REJECTS[name]
    proc = renderer.run(values, check=False)
    assert proc.returncode != 0, f"rendered although the schema must refuse it: {values}"
    assert "schema" in proc.stderr.lower() or "at '" in proc.stderr, proc.stderr
    assert where in proc.stderr, proc.stderr


def test_schema_accepts_every_field(renderer):
    """A policy using every field the binary knows (crates/janus-api/src/policy.rs) renders."""
    full = {
        "name": "everything",
        "description": "all fields",
        "match": {
            "clusters": ["prod-*"], "namespaces": ["team-*"],
            "namespaceSelector": {"matchLabels": {"tier": "prod"},
                                  "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]},
                                                       {"key": "legacy", "operator": "DoesNotExist"}]},
            "requesterEmails": ["*@example.com"], "requesterGroups": ["dev"], "roles": ["exec"],
        },
        "approvers": {"emails": ["lead@example.com"], "groups": ["leads"], "namespaceOwners": True},
        "approvalsRequired": 2,
        "maxTtlSeconds": 3600,
        "approvalTtlOptions": [1800, 3600],
        "pendingExpirySeconds": 0,
        "reason": {"pattern": "OPS-[0-9]+", "description": "a ticket id"},
        "autoApprove": {"groups": ["oncall"], "emails": ["bot@example.com"], "maxTtlSeconds": 900,
                        "windows": [{"days": ["Sat", "Sun"], "start": "08:00", "end": "24:00"}]},
        "breakGlass": {"groups": ["oncall"], "emails": ["cto@example.com"], "maxTtlSeconds": 1800},
    }
    cfg = config_of(renderer.docs({"janus": {"policies": [copy.deepcopy(full)]}}))
    assert cfg["policies"] == [full]
