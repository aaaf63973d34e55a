"""janus.web.apiTokens and janus.web.cliSessionTtlSeconds (issue 18): the values reach the `web` section
of config.yaml as the binary reads them (janus_api::config::ApiTokensConfig, camelCase, numbers as
numbers), and the schema and the template refuse what the binary would refuse at start-up."""
import pytest

from chartlib import config_of

from test_values import render_error


def web_config(renderer, values):
    return config_of(renderer.docs(values))["web"]


def test_defaults_match_the_binary(renderer, values_yaml):
    """The chart's defaults are janus_api::config's defaults (90/30/20 days and tokens, 12 h CLI sessions)."""
    web = values_yaml["janus"]["web"]
    assert web == {"apiTokens": {"enabled": True, "maxLifetimeDays": 90, "defaultLifetimeDays": 30,
                                 "maxPerUser": 20},
                   "cliSessionTtlSeconds": 43200}
    cfg = web_config(renderer, {})
    assert cfg["apiTokens"] == web["apiTokens"]
    assert cfg["cliSessionTtlSeconds"] == 43200


@pytest.mark.parametrize("mode", ["local", "oidc", "proxy"])
def test_set_values_reach_the_configmap_in_every_auth_mode(mode, renderer):
    values = {"janus": {"web": {"apiTokens": {"enabled": False, "maxLifetimeDays": 7,
                                               "defaultLifetimeDays": 7, "maxPerUser": 3},
                                "cliSessionTtlSeconds": 3600}}}
    if mode == "oidc":
        values.update({"oidc": {"enabled": True, "issuerUrl": "https://idp.example.com", "clientId": "janus",
                                "existingSecret": "janus-oidc"},
                       "webui": {"baseUrl": "https://janus.example.com"}})
    if mode == "proxy":
        values.update({"webui": {"authEnabled": True, "baseUrl": "https://janus.example.com"},
                       "oauth2Proxy": {"existingSecret": "o", "emailDomains": ["example.com"]}})
    cfg = web_config(renderer, values)
    assert cfg["authMode"] == mode
    assert cfg["apiTokens"] == {"enabled": False, "maxLifetimeDays": 7, "defaultLifetimeDays": 7,
                                "maxPerUser": 3}
    assert cfg["cliSessionTtlSeconds"] == 3600
    assert all(type(v) is int for k, v in cfg["apiTokens"].items() if k != "enabled")


def test_a_partial_override_keeps_the_other_defaults(renderer):
    cfg = web_config(renderer, {"janus": {"web": {"apiTokens": {"maxPerUser": 5}}}})
    assert cfg["apiTokens"] == {"enabled": True, "maxLifetimeDays": 90, "defaultLifetimeDays": 30,
                                "maxPerUser": 5}


SCHEMA_REJECTS = {
    "maxLifetimeDays zero": ({"maxLifetimeDays": 0}, "/janus/web/apiTokens/maxLifetimeDays"),
    "maxLifetimeDays above ten years": ({"maxLifetimeDays": 3651}, "/janus/web/apiTokens/maxLifetimeDays"),
    "defaultLifetimeDays zero": ({"defaultLifetimeDays": 0}, "/janus/web/apiTokens/defaultLifetimeDays"),
    "maxPerUser zero": ({"maxPerUser": 0}, "/janus/web/apiTokens/maxPerUser"),
    "maxLifetimeDays as string": ({"maxLifetimeDays": "90"}, "/janus/web/apiTokens/maxLifetimeDays"),
    "enabled as string": ({"enabled": "yes"}, "/janus/web/apiTokens/enabled"),
    "unknown key": ({"maxLifetime": 9}, "additional properties 'maxLifetime'"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_REJECTS))
def test_schema_refuses_bad_token_values(name, renderer):
    tokens, where = SCHEMA_REJECTS[name]
    err = render_error(renderer, {"janus": {"web": {"apiTokens": tokens}}})
    assert where in err, err


@pytest.mark.parametrize("ttl", [59, 2592001, "43200"])
def test_schema_refuses_bad_cli_session_ttl(ttl, renderer):
    err = render_error(renderer, {"janus": {"web": {"cliSessionTtlSeconds": ttl}}})
    assert "/janus/web/cliSessionTtlSeconds" in err, err


def test_default_lifetime_above_the_maximum_is_refused(renderer):
    """The relation the schema cannot state, with the values named (the binary refuses it at start-up)."""
    err = render_error(renderer, {"janus": {"web": {"apiTokens": {"maxLifetimeDays": 10,
                                                                   "defaultLifetimeDays": 30}}}})
    assert "janus.web.apiTokens.defaultLifetimeDays=30 must not exceed janus.web.apiTokens.maxLifetimeDays=10" \
        in err, err
    # equal is fine
    cfg = web_config(renderer, {"janus": {"web": {"apiTokens": {"maxLifetimeDays": 10,
                                                                 "defaultLifetimeDays": 10}}}})
    assert cfg["apiTokens"]["defaultLifetimeDays"] == 10


def test_unknown_web_key_is_refused(renderer):
    err = render_error(renderer, {"janus": {"web": {"apiToken": {}}}})
    assert "additional properties 'apiToken'" in err, err
