"""Configuration against the real Envoy: every shipped YAML validates, and a bad
plugin configuration stops Envoy at load time with the field named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.gateway import REPO, WASM, Gateway, chat_body, demo_plugin_config, gateway_config
from tests.harness import config as envoy_config
from tests.harness import start_expecting_failure, validate

SHIPPED_YAML = sorted((REPO / "envoy").rglob("*.yaml"))


def envoy_yaml_files() -> list[Path]:
    """Envoy bootstrap configs (Istio manifests and the like are checked elsewhere)."""
    return [path for path in SHIPPED_YAML if "static_resources" in path.read_text()]


@pytest.mark.parametrize("path", envoy_yaml_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_shipped_envoy_config_validates(path, monkeypatch):
    config = envoy_config.load(path)
    # Provider keys the config reads from the environment get dummies.
    for node in envoy_config.walk_dicts(config):
        for name in node.get("host_env_keys", []):
            monkeypatch.setenv(name, f"dummy-{name.lower()}")
    envoy_config.set_wasm_filename(config, WASM)
    ok, output = validate(config)
    assert ok, output


BAD_CONFIGS = {
    "tiers[1].max_score": lambda c: c["tiers"][1].update(max_score=0.1),
    "tiers[0].models[0]": lambda c: c["tiers"][0].update(models=["no-such-model"]),
    "models.gpt-4o.provider": lambda c: c["models"]["gpt-4o"].update(provider="nobody"),
    "rules[0].when.last_user": lambda c: c["rules"][0]["when"].update(last_user="(unclosed"),
    "providers.openai.api_key_env": lambda c: c["providers"].update(openai={"cluster": "openai", "api_key_env": "SIGNALBOX_TEST_UNSET"}),
    "classifier.weights.vibes": lambda c: c.update(classifier={"weights": {"vibes": 1.0}}),
    "modles": lambda c: c.update(modles={}),
    "observability.gauge_interval_ms": lambda c: c.update(observability={"gauge_interval_ms": 5}),
    "governance.tenants.team.quotas[2].window": lambda c: c["governance"]["tenants"]["team"]["quotas"].append(
        {"window": "day", "requests": 5}),
}


@pytest.mark.parametrize("field", sorted(BAD_CONFIGS))
def test_a_bad_plugin_config_stops_envoy_and_names_the_field(mocks, field):
    plugin = copy.deepcopy(demo_plugin_config())
    BAD_CONFIGS[field](plugin)
    exit_code, log = start_expecting_failure(gateway_config(mocks, plugin))
    assert exit_code != 0
    assert "invalid signalbox configuration" in log
    assert field in log, log[-3000:]


def test_a_plugin_config_that_is_not_json_stops_envoy(mocks):
    exit_code, log = start_expecting_failure(gateway_config(mocks, "{not json"))
    assert exit_code != 0
    assert "invalid signalbox configuration" in log


def test_secrets_never_reach_the_log(start_gateway):
    gateway = start_gateway()
    gateway.chat(chat_body("hi"))
    gateway.chat(chat_body("hi"), headers={"authorization": "Bearer sk-wrong-key"})
    log = gateway.envoy.log_text()
    for secret in ("sk-demo-openai", "sk-demo-anthropic", "sk-demo-team", "sk-wrong-key"):
        assert secret not in log


def test_keys_can_come_from_the_environment(mocks, envoy, monkeypatch):
    monkeypatch.setenv("SIGNALBOX_TEST_OPENAI_KEY", "sk-from-env")
    plugin = demo_plugin_config()
    plugin["providers"]["openai"] = {"cluster": "openai", "api_key_env": "SIGNALBOX_TEST_OPENAI_KEY"}
    config = gateway_config(mocks, plugin)
    for wasm in envoy_config.wasm_plugins(config):
        wasm["vm_config"]["environment_variables"] = {"host_env_keys": ["SIGNALBOX_TEST_OPENAI_KEY"]}
    gateway = Gateway(envoy(config), mocks, "sk-demo-team")
    response = gateway.chat(chat_body("hi"))
    assert response.status_code == 200
    assert gateway.last_request("openai").header("authorization") == "Bearer sk-from-env"
    assert "sk-from-env" not in gateway.envoy.log_text()
