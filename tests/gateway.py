"""A Signalbox gateway under test: the shipped demo Envoy config, pointed at
the mock providers on free ports, with the freshly built Wasm module."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.harness import EnvoyProcess
from tests.harness import config as envoy_config
from tests.mocks import MockProviders

REPO = Path(__file__).resolve().parent.parent
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "signalbox.wasm"
# The same filter built with the `test-clock` feature, for configs that set
# governance.test_clock_header (the shipped module refuses it).
TEST_CLOCK_WASM = REPO / "target" / "test-clock" / "wasm32-wasip1" / "release" / "signalbox.wasm"
DEMO_YAML = REPO / "envoy" / "demo.yaml"
REQUEST_TIMEOUT_S = 15
# The demo's virtual key (tenant "team"); sent by default to governed gateways.
DEMO_KEY = "sk-demo-team"
# The demo's admin key (health and spend views); test configs get it too.
ADMIN_KEY = "sk-demo-admin"
ADMIN_KEY_SHA256 = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()


def demo_plugin_config() -> dict:
    """The plugin configuration shipped in envoy/demo.yaml."""
    return envoy_config.get_plugin_config(envoy_config.load(DEMO_YAML), "signalbox")


def retry_policy(config: dict) -> dict:
    """The (first) route retry policy of an Envoy config, to tune in a test."""
    return next(node["retry_policy"] for node in envoy_config.walk_dicts(config) if "retry_policy" in node)


CLUSTER_ACTION = "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction"


def add_cluster(config: dict, name: str) -> None:
    """Adds a provider cluster (pointed at a mock later) and its entry in the route's matcher."""
    template = next(cluster for cluster in envoy_config.clusters(config))
    envoy_config.clusters(config).append({**copy.deepcopy(template), "name": name})
    matcher = next(node["exact_match_map"]["map"] for node in envoy_config.walk_dicts(config) if "exact_match_map" in node)
    matcher[name] = {"action": {"name": name, "typed_config": {"@type": CLUSTER_ACTION, "cluster": name}}}


LEDGER_CLUSTER = "signalbox_ledger"


def with_fleet_ledger(config: dict, webdis_port: int, replicas: int = 2, timeout_ms: int = 100) -> dict:
    """An Envoy config whose Signalbox keeps governance in the fleet ledger (webdis on `webdis_port`)."""
    template = next(cluster for cluster in envoy_config.clusters(config))
    ledger = {**copy.deepcopy(template), "name": LEDGER_CLUSTER}
    ledger.pop("circuit_breakers", None)
    envoy_config.clusters(config).append(ledger)
    envoy_config.point_cluster(config, LEDGER_CLUSTER, webdis_port)
    plugin = envoy_config.get_plugin_config(config, "signalbox")
    plugin.setdefault("governance", {})["store"] = {
        "cluster": LEDGER_CLUSTER,
        "replicas": replicas,
        "timeout_ms": timeout_ms,
    }
    envoy_config.set_plugin_config(config, plugin)
    return config


def gateway_config(mocks: MockProviders, plugin: dict | str | None = None, yaml_path: Path = DEMO_YAML, tweak=None) -> dict:
    """An Envoy config from `yaml_path` with its provider clusters on the mocks.

    tweak(config) may edit the loaded config first (retry policy, extra clusters).
    """
    config = envoy_config.load(yaml_path)
    if tweak is not None:
        tweak(config)
    envoy_config.set_admin_port(config, 0)
    envoy_config.set_listener_port(config, 0)
    for cluster in envoy_config.clusters(config):
        envoy_config.point_cluster(config, cluster["name"], mocks.ports[cluster["name"]])
    uses_test_clock = isinstance(plugin, dict) and "test_clock_header" in plugin.get("governance", {})
    envoy_config.set_wasm_filename(config, TEST_CLOCK_WASM if uses_test_clock else WASM)
    if isinstance(plugin, dict) and "admin_keys" not in plugin:
        plugin = {**plugin, "admin_keys": [{"name": "test-admin", "sha256": ADMIN_KEY_SHA256}]}
    if plugin is not None:
        envoy_config.set_plugin_config(config, plugin)
    return config


@dataclass
class Gateway:
    envoy: EnvoyProcess
    mocks: MockProviders
    # Virtual key sent when a request carries none (governed configs).
    key: str | None = None

    @property
    def url(self) -> str:
        return self.envoy.listener_url()

    def post(self, path: str, body: bytes | str | dict, headers: dict | None = None, **kwargs) -> requests.Response:
        data = json.dumps(body) if isinstance(body, dict) else body
        headers = dict(headers or {})
        if self.key and not {name.lower() for name in headers} & {"authorization", "x-api-key"}:
            headers["authorization"] = f"Bearer {self.key}"
        return requests.post(self.url + path, data=data, headers=headers, timeout=REQUEST_TIMEOUT_S, **kwargs)

    def chat(self, body: dict | bytes | str, headers: dict | None = None, **kwargs) -> requests.Response:
        return self.post("/v1/chat/completions", body, headers, **kwargs)

    def view(self, path: str, key: str = ADMIN_KEY) -> dict:
        """An operator view (`/signalbox/health`, `/signalbox/spend`) read with the admin key."""
        response = requests.get(
            self.url + path,
            headers={"authorization": f"Bearer {key}", "connection": "close"},
            timeout=REQUEST_TIMEOUT_S,
        )
        response.raise_for_status()
        return response.json()

    def last_request(self, provider: str):
        """What the provider mock received most recently."""
        received = self.mocks.requests(provider)
        assert received, f"{provider} received nothing"
        return received[-1]


def chat_body(text: str, model: str = "auto", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def with_plugin(plugin: dict, **changes) -> dict:
    """A deep copy of a plugin config with top-level fields replaced."""
    updated = copy.deepcopy(plugin)
    updated.update(changes)
    return updated
