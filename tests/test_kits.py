"""The deployment kits against the real Envoy, the real filter and the metric catalogue.

- envoy/production.yaml: validates with (and only with) its provider keys in the
  environment, its optional TLS block validates, it keeps the demo's wiring, and a
  running copy in front of the mock providers puts each provider's key on that
  provider's attempts only, keeps its ops views local and exposes only
  /stats/prometheus and /ready on the metrics port.
- envoy/live.yaml (`make run` with provider keys): in front of the mock providers it
  speaks each provider's own API with the key from the environment.
- The alternative credential wiring (Envoy's credential_injector as a
  cluster-level upstream filter): what replaces what, and which order works.
- envoy/istio/: manifest shapes and cross references; the EnvoyFilter patches
  applied the way istiod applies them to the listener, routes and clusters istiod
  builds from gateway.yaml and provider-egress.yaml (ECDS served from files as
  istiod serves it over ADS, the remote module replaced by the local build as
  istio-agent does, the ConfigMap's bootstrap passed with --config-yaml as
  istio-agent does): it validates, serves, fails over and tags the metrics.
- observability/: every metric, label and label value the dashboard and the
  alert rules use exists (src/telemetry/mod.rs), and is really exported with those
  labels by a running gateway.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.gateway import DEMO_KEY, DEMO_YAML, REPO, WASM, add_cluster, chat_body, demo_plugin_config, gateway_config
from tests.harness import EnvoyProcess, envoy_binary, free_port, validate
from tests.harness import config as envoy_config
from tests.mocks import MockProviders

PRODUCTION_YAML = REPO / "envoy" / "production.yaml"
LIVE_YAML = REPO / "envoy" / "live.yaml"
ISTIO_DIR = REPO / "envoy" / "istio"
DASHBOARD = REPO / "observability" / "grafana-dashboard.json"
ALERTS = REPO / "observability" / "prometheus-alerts.yaml"
TELEMETRY_RS = REPO / "src" / "telemetry" / "mod.rs"
FAILURE_RS = REPO / "src" / "failure.rs"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "envoy.filters.http.router"
CODEC = {
    "name": "envoy.filters.http.upstream_codec",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"},
}
PROVIDER_MOCKS = ("openai", "anthropic", "gemini", "bedrock")
# A virtual key the tests add to the shipped configs (theirs belong to keys nobody knows).
KIT_KEY = "sk-kit-test-key"
KIT_LIMITED_KEY = "sk-kit-limited-key"
TIMEOUT_S = 15


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secrets_for(names: list[str]) -> dict[str, str]:
    """A distinct, recognisable dummy secret per environment variable."""
    values = {name: "kit-" + name.lower().replace("_", "-") + "-0123456789" for name in names}
    if "AWS_ACCESS_KEY_ID" in values:
        values["AWS_ACCESS_KEY_ID"] = "AKIAKITTEST0000000001"
    return values


def host_env_keys(config: dict) -> list[str]:
    """The environment variables every Wasm VM of a config receives (they must agree)."""
    found = {
        tuple(node["environment_variables"].get("host_env_keys", []))
        for node in envoy_config.walk_dicts(config)
        if "environment_variables" in node and "runtime" in node
    }
    assert len(found) == 1, f"Wasm VMs disagree on host_env_keys: {found}"
    return list(found.pop())


def plugin_env_names(plugin: dict) -> set[str]:
    """Every environment variable a Signalbox plugin configuration reads."""
    names = set()
    for provider in plugin["providers"].values():
        names |= {value for key, value in provider.items() if key.endswith("_env")}
        names |= {key["env"] for key in provider.get("api_keys", []) if "env" in key}
    return names


def post(url: str, body: dict, key: str | None = KIT_KEY, headers: dict | None = None) -> requests.Response:
    sent = {"x-signalbox-explain": "1", **(headers or {})}
    if key:
        sent["authorization"] = f"Bearer {key}"
    return requests.post(url + "/v1/chat/completions", json=body, headers=sent, timeout=TIMEOUT_S)


# --- envoy/production.yaml: static checks and validation ------------------------------------


def production_config() -> dict:
    config = envoy_config.load(PRODUCTION_YAML)
    envoy_config.set_wasm_filename(config, WASM)
    return config


def http_filters(listener: dict) -> list[dict]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def test_production_reads_exactly_the_keys_it_hands_to_the_vm():
    config = production_config()
    plugin = envoy_config.get_plugin_config(config, "signalbox")
    assert plugin == envoy_config.get_plugin_config(config, "signalbox_upstream")
    assert plugin_env_names(plugin) == set(host_env_keys(config))
    # No secret is written into the file.
    for provider in plugin["providers"].values():
        assert not {"api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"} & set(provider)
        assert all("key" not in key for key in provider.get("api_keys", []))


def test_production_validates_with_its_keys_in_the_environment(monkeypatch):
    config = production_config()
    for name, value in secrets_for(host_env_keys(config)).items():
        monkeypatch.setenv(name, value)
    ok, output = validate(config)
    assert ok, output[-3000:]


def test_production_refuses_to_load_without_a_provider_key(monkeypatch):
    config = production_config()
    for name, value in secrets_for(host_env_keys(config)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GEMINI_API_KEY")
    ok, output = validate(config)
    assert not ok
    assert "providers.gemini.api_key_env" in output, output[-3000:]


def test_production_optional_downstream_tls_block_validates(tmp_path, monkeypatch):
    text = PRODUCTION_YAML.read_text()
    begin, end = text.index("# BEGIN downstream-tls"), text.index("# END downstream-tls")
    block = text[begin:end].splitlines()
    # The YAML lines of the block are commented at the filter chain's key indent.
    enabled = [line.replace("      # ", "      ", 1) if line.startswith("      # ") else line for line in block]
    assert any(line.strip().startswith("transport_socket:") for line in enabled), "no commented transport_socket"
    (tmp_path / "sds.yaml").write_text(yaml.safe_dump({"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": "signalbox-server-cert",
        "tls_certificate": {"certificate_chain": {"filename": str(tmp_path / "tls.crt")},
                            "private_key": {"filename": str(tmp_path / "tls.key")}},
    }]}))
    config = envoy_config.parse(
        (text[:begin] + "\n".join(enabled) + "\n" + text[end:]).replace("/etc/signalbox/tls", str(tmp_path)))
    chain = envoy_config.listeners(config)[0]["filter_chains"][0]
    assert chain["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    envoy_config.set_wasm_filename(config, WASM)
    for name, value in secrets_for(host_env_keys(config)).items():
        monkeypatch.setenv(name, value)
    ok, output = validate(config)
    assert ok, output[-3000:]


def test_production_keeps_the_demo_wiring_and_adds_production_settings():
    demo, prod = envoy_config.load(DEMO_YAML), envoy_config.load(PRODUCTION_YAML)
    assert prod["stats_config"] == demo["stats_config"]
    assert prod["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"

    def json_log(config: dict) -> dict:
        formats = (node.get("log_format", {}).get("json_format") for node in envoy_config.walk_dicts(config))
        return next(found for found in formats if found)

    assert json_log(demo).items() <= json_log(prod).items()
    assert prod["overload_manager"]["resource_monitors"], "no overload manager"
    monitors = {monitor["name"] for monitor in prod["overload_manager"]["resource_monitors"]}
    assert "envoy.resource_monitors.global_downstream_max_connections" in monitors

    gateway = envoy_config.listeners(prod)[0]
    assert gateway["per_connection_buffer_limit_bytes"] > 4 * 1024 * 1024
    names = [f["name"] for f in http_filters(gateway)]
    assert names[-2:] == ["envoy.filters.http.wasm", ROUTER]
    wasm = http_filters(gateway)[-2]["typed_config"]["config"]
    assert wasm["allow_on_headers_stop_iteration"] is True
    router = http_filters(gateway)[-1]["typed_config"]
    upstream = router["upstream_http_filters"]
    assert upstream[0]["typed_config"]["config"]["root_id"] == "signalbox_upstream"
    assert upstream[0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert upstream[-1]["name"] == "envoy.filters.http.upstream_codec"
    assert not router.get("suppress_envoy_headers")

    vhost = gateway["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
    assert vhost["include_request_attempt_count"] is True
    route = vhost["routes"][0]["route"]
    demo_route = next(n for n in envoy_config.walk_dicts(demo) if "retry_policy" in n)
    assert route["retry_policy"] == demo_route["retry_policy"]
    plugin = envoy_config.get_plugin_config(prod, "signalbox")
    per_try_ms = float(route["retry_policy"]["per_try_timeout"].rstrip("s")) * 1000
    assert per_try_ms == plugin["resilience"]["per_try_timeout_ms"]
    matcher = next(n["exact_match_map"]["map"] for n in envoy_config.walk_dicts(route) if "exact_match_map" in n)
    provider_clusters = {provider["cluster"] for provider in plugin["providers"].values()}
    assert set(matcher) == provider_clusters
    assert {entry["action"]["typed_config"]["cluster"] for entry in matcher.values()} == provider_clusters

    clusters = {cluster["name"]: cluster for cluster in envoy_config.clusters(prod)}
    for name in provider_clusters:
        cluster = clusters[name]
        host = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert host["port_value"] == 443
        tls = cluster["transport_socket"]["typed_config"]
        assert tls["sni"] == host["address"]
        validation = tls["common_tls_context"]["validation_context"]
        assert validation["trusted_ca"]["filename"]
        assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": host["address"]}}]
        assert cluster["circuit_breakers"]["thresholds"][0]["max_retries"] >= 1000
        # A cluster-level upstream filter chain would replace the router's (Signalbox) chain.
        assert "http_filters" not in json.dumps(cluster.get("typed_extension_protocol_options", {}))
    bedrock = plugin["providers"]["bedrock"]
    bedrock_host = f"bedrock-runtime.{bedrock['region']}.amazonaws.com"
    assert clusters["bedrock"]["transport_socket"]["typed_config"]["sni"] == bedrock_host


# --- envoy/production.yaml running in front of the mock providers ---------------------------


@dataclass
class ProductionRun:
    envoy: EnvoyProcess
    mocks: MockProviders
    secrets: dict[str, str]
    metrics_url: str

    @property
    def url(self) -> str:
        return self.envoy.listener_url("signalbox")


def production_test_config(mocks: MockProviders) -> dict:
    config = production_config()
    admin_port = free_port()
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    admin = next(cluster for cluster in envoy_config.clusters(config) if cluster["name"] == "admin")
    endpoint = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"]["socket_address"]["port_value"] = admin_port
    envoy_config.set_listener_port(config, 0, "signalbox")
    envoy_config.set_listener_port(config, 0, "metrics")
    for name in PROVIDER_MOCKS:
        envoy_config.point_cluster(config, name, mocks.ports[name])
    plugin = envoy_config.get_plugin_config(config, "signalbox")
    governance = plugin["governance"]
    # One request a minute, two a day, an alert at the first: rejections and soft alerts on demand.
    governance["tenants"]["kit-limited"] = {
        "limits": {"rpm": 1}, "quotas": [{"window": "day", "requests": 2}], "alert_at": 0.5}
    governance["keys"] += [
        {"name": "kit-test", "tenant": "search", "sha256": sha256(KIT_KEY)},
        {"name": "kit-limited", "tenant": "kit-limited", "sha256": sha256(KIT_LIMITED_KEY)},
    ]
    plugin["observability"]["gauge_interval_ms"] = 200
    envoy_config.set_plugin_config(config, plugin)
    config["stats_flush_interval"] = "0.2s"  # histograms reach the admin output quickly
    return config


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env, MockProviders() as mocks:
        mocks.start(PROVIDER_MOCKS)
        config = production_test_config(mocks)
        secrets = secrets_for(host_env_keys(config))
        for name, value in secrets.items():
            env.setenv(name, value)
        envoy = EnvoyProcess(config, workdir=tmp_path_factory.mktemp("production"))
        envoy.start()
        try:
            yield ProductionRun(envoy, mocks, secrets, envoy.listener_url("metrics"))
        finally:
            envoy.stop()


PROVIDER_CALLS = {
    # model -> (mock, credential header, its expected value from the secrets)
    "gpt-4o-mini": ("openai", "authorization", lambda s: f"Bearer {s['OPENAI_API_KEY']}"),
    "claude-haiku": ("anthropic", "x-api-key", lambda s: s["ANTHROPIC_API_KEY"]),
    "gemini-flash": ("gemini", "x-goog-api-key", lambda s: s["GEMINI_API_KEY"]),
}


def test_production_puts_each_providers_key_on_its_own_attempts_only(production):
    mocks, secrets = production.mocks, production.secrets
    mocks.clear()
    for model, (mock, header, expected) in PROVIDER_CALLS.items():
        response = post(production.url, chat_body("hi", model=model))
        assert response.status_code == 200, response.text
        received = mocks.requests(mock)[-1]
        assert received.header(header) == expected(secrets), (model, received.headers)
    response = post(production.url, chat_body("hi", model="nova-pro"))
    assert response.status_code == 200, response.text
    signed = mocks.requests("bedrock")[-1].header("authorization")
    assert signed.startswith(f"AWS4-HMAC-SHA256 Credential={secrets['AWS_ACCESS_KEY_ID']}/")
    assert "/us-east-1/bedrock/aws4_request" in signed

    # A failover moves the request to another provider: each attempt carries its own key.
    mocks.set_script("anthropic", [{"status": 503}])
    response = post(production.url, chat_body("hi", model="claude-sonnet"))
    assert response.status_code == 200, response.text
    assert response.headers["x-signalbox-attempts"] == "claude-sonnet:503,gpt-4o:200"
    assert mocks.requests("anthropic")[-1].header("x-api-key") == secrets["ANTHROPIC_API_KEY"]
    assert mocks.requests("openai")[-1].header("authorization") == f"Bearer {secrets['OPENAI_API_KEY']}"

    owner = {
        "OPENAI_API_KEY": "openai", "ANTHROPIC_API_KEY": "anthropic", "GEMINI_API_KEY": "gemini",
        "AWS_ACCESS_KEY_ID": "bedrock", "AWS_SECRET_ACCESS_KEY": None,  # signs, never sent
    }
    for mock in PROVIDER_MOCKS:
        sent = json.dumps([request.headers for request in mocks.requests(mock)])
        assert KIT_KEY not in sent, f"the client's key reached {mock}"
        for name, value in secrets.items():
            if owner[name] != mock:
                assert value not in sent, f"{name} reached {mock}"
    log = production.envoy.log_text()
    for value in [*secrets.values(), KIT_KEY]:
        assert value not in log


def get_from(url: str, path: str, source: str = "127.0.0.1") -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_production_ops_views_answer_only_to_localhost_with_an_admin_key(production):
    for path in ("/signalbox/health", "/signalbox/spend"):
        status, _ = get_from(production.url, path, source="127.0.0.2")
        assert status == 403, path  # Envoy's RBAC: not from loopback
        status, body = get_from(production.url, path)
        assert status == 401, path  # the kit ships no admin key: closed until one is configured
        assert json.loads(body)["error"]["code"] == "invalid_api_key"


def test_production_metrics_port_serves_only_prometheus_and_readiness(production):
    status, body = get_from(production.metrics_url, "/ready")
    assert status == 200 and "LIVE" in body
    status, body = get_from(production.metrics_url, "/stats/prometheus")
    assert status == 200 and "# TYPE" in body
    for path in ("/clusters", "/config_dump", "/stats", "/quitquitquit", "/"):
        assert get_from(production.metrics_url, path)[0] == 404, path
    response = requests.post(production.metrics_url + "/stats/prometheus", timeout=TIMEOUT_S)
    assert response.status_code == 404


# --- envoy/live.yaml: what `make run` uses with real keys ------------------------------------


def test_live_config_speaks_each_providers_own_api_with_the_environments_key(mocks, tmp_path, monkeypatch):
    config = envoy_config.load(LIVE_YAML)
    envoy_config.set_wasm_filename(config, WASM)
    envoy_config.set_admin_port(config, 0)
    envoy_config.set_listener_port(config, 0, "signalbox")
    calls = {"openai": ("gpt-4o-mini", "gpt-4o-mini", "/v1/chat/completions", "authorization", "Bearer {}"),
             "anthropic": ("claude-haiku", "claude-3-5-haiku-latest", "/v1/messages", "x-api-key", "{}")}
    secrets = secrets_for(host_env_keys(config))
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    for name in calls:
        envoy_config.point_cluster(config, name, mocks.ports[name])
    with EnvoyProcess(config, workdir=tmp_path) as envoy:
        url = envoy.listener_url("signalbox")
        for mock, (model, provider_id, path, header, value) in calls.items():
            mocks.clear()
            response = post(url, chat_body("hi", model=model), key=DEMO_KEY)
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["role"] == "assistant"
            received = mocks.requests(mock)[-1]
            assert received.path == path
            assert received.json["model"] == provider_id
            assert received.json["messages"][-1]["content"] in ("hi", [{"type": "text", "text": "hi"}])
            key_variable = f"{mock.upper()}_API_KEY"
            assert received.header(header) == value.format(secrets[key_variable]), received.headers
        assert mocks.requests("anthropic")[-1].header("anthropic-version")


# --- the alternative: credential_injector as a cluster-level upstream filter ----------------


def injector(secret_name: str, sds_path: Path, header: str, prefix: str | None = None) -> dict:
    generic = {
        "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
        "credential": {"name": secret_name, "sds_config": {"path_config_source": {"path": str(sds_path)}}},
        "header": header,
    }
    if prefix:
        generic["header_value_prefix"] = prefix
    return {
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True,
            "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": generic},
        },
    }


def test_cluster_level_upstream_filters_replace_the_router_chain_and_injection_must_follow_signalbox(mocks, envoy, tmp_path):
    """Evidence for the credential decision in envoy/production.yaml."""
    secrets = {"openai": "sk-injected-openai", "anthropic": "sk-ant-injected", "gemini": "gm-injected"}
    sds = {}
    for name, value in secrets.items():
        sds[name] = tmp_path / f"{name}-key.yaml"
        sds[name].write_text(yaml.safe_dump({"resources": [{
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": f"{name}-key", "generic_secret": {"secret": {"inline_string": value}}}]}))
    plugin = demo_plugin_config()
    # No key in the filter: whatever reaches a provider was injected by Envoy.
    plugin["providers"] = {
        "openai": {"cluster": "openai"},
        "anthropic": {"kind": "anthropic", "cluster": "anthropic"},
        "gemini": {"kind": "gemini", "cluster": "gemini"},
    }
    plugin["models"]["gpt-4o-mini"]["id"] = "gpt-4o-mini-2024-07-18"
    plugin["models"]["gemini-flash"] = {"provider": "gemini", "id": "gemini-2.5-flash"}
    config = gateway_config(mocks, plugin, tweak=lambda c: add_cluster(c, "gemini"))
    config["node"] = {"id": "kits", "cluster": "kits"}  # file-based SDS needs a node identity
    router = next(n for n in envoy_config.walk_dicts(config) if n.get("name") == ROUTER)
    signalbox_upstream = router["typed_config"]["upstream_http_filters"][0]
    chains = {
        # Only the injector: does the router's Signalbox upstream filter still run?
        "openai": [injector("openai-key", sds["openai"], "authorization", "Bearer "), CODEC],
        # Signalbox first, then the injector: the shipped alternative.
        "anthropic": [copy.deepcopy(signalbox_upstream), injector("anthropic-key", sds["anthropic"], "x-api-key"), CODEC],
        # The injector first: Signalbox strips every credential header of each attempt.
        "gemini": [injector("gemini-key", sds["gemini"], "x-goog-api-key"), copy.deepcopy(signalbox_upstream), CODEC],
    }
    for cluster in envoy_config.clusters(config):
        cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "http_filters": chains[cluster["name"]],
        }}
    gateway = envoy(config)
    url = gateway.listener_url()
    for model in ("gpt-4o-mini", "claude-haiku", "gemini-flash"):
        post(url, chat_body("hi", model=model), key=DEMO_KEY)
    stats = gateway.stats()

    # Cluster chain replaces the router's: the request reached OpenAI unrewritten
    # (model name, not its id) and no Signalbox attempt was recorded for it.
    openai = mocks.requests("openai")[-1]
    assert openai.json["model"] == "gpt-4o-mini"
    assert openai.header("authorization") == "Bearer sk-injected-openai"
    assert not [name for name in stats if "signalbox_attempts_total;deployment=.=gpt-4o-mini;" in name]

    # Signalbox, then the injector: translated for Anthropic, carrying the injected key.
    anthropic = mocks.requests("anthropic")[-1]
    assert anthropic.path == "/v1/messages" and anthropic.json["model"] == "claude-3-5-haiku-latest"
    assert anthropic.header("x-api-key") == "sk-ant-injected"
    assert anthropic.header("authorization") is None
    # Custom stats of a cluster-level Wasm filter keep their plain name (no cluster.<name>. prefix).
    assert any(name.startswith("wasmcustom.signalbox_attempts_total;deployment=.=claude-haiku;") for name in stats)

    # The injector before Signalbox: translated, but the injected key was stripped again.
    gemini = mocks.requests("gemini")[-1]
    assert ":generateContent" in gemini.path
    assert gemini.header("x-goog-api-key") is None


# --- envoy/istio/ -----------------------------------------------------------------------------


def istio_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(ISTIO_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def one(kind: str) -> dict:
    found = [doc for _, doc in istio_docs() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def every(kind: str) -> list[dict]:
    return [doc for _, doc in istio_docs() if doc["kind"] == kind]


API_VERSIONS = {
    "EnvoyFilter": {"networking.istio.io/v1alpha3"},
    "ServiceEntry": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
    "DestinationRule": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
    "Gateway": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
    "VirtualService": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
    "AuthorizationPolicy": {"security.istio.io/v1", "security.istio.io/v1beta1"},
    "Deployment": {"apps/v1"},
    "Service": {"v1"},
    "ServiceAccount": {"v1"},
    "ConfigMap": {"v1"},
    "Namespace": {"v1"},
}
APPLY_TO = {"LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION", "VIRTUAL_HOST",
            "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "LISTENER_FILTER"}
OPERATIONS = {"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE", "MERGE_AND_REPLACE_LIST"}
CONTEXTS = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}


def istio_plugin_configs() -> list[dict]:
    envoyfilter = one("EnvoyFilter")
    return [
        patch["patch"]["value"]["typed_config"]["config"]
        for patch in envoyfilter["spec"]["configPatches"]
        if patch["applyTo"] == "EXTENSION_CONFIG"
    ]


def test_istio_manifests_have_the_right_kinds_and_fields():
    docs = istio_docs()
    assert {name for name, _ in docs} >= {"envoyfilter.yaml", "provider-egress.yaml", "gateway.yaml"}
    assert (ISTIO_DIR / "README.md").is_file()
    for name, doc in docs:
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{name}: unexpected kind {kind}"
        assert doc.get("apiVersion") in API_VERSIONS[kind], f"{name}: {kind} with apiVersion {doc.get('apiVersion')}"
        assert doc["metadata"].get("name"), f"{name}: {kind} without a name"
        if kind != "Namespace":
            assert doc["metadata"].get("namespace") == "ai-gateway", f"{name}: {kind} {doc['metadata']['name']}"
    # Istio bootstrap files must not look like Envoy bootstraps to tests/test_config.py.
    for path in ISTIO_DIR.glob("*.yaml"):
        assert "static_resources" not in path.read_text()

    envoyfilter = one("EnvoyFilter")
    spec = envoyfilter["spec"]
    assert spec["workloadSelector"]["labels"]
    for index, patch in enumerate(spec["configPatches"]):
        assert patch["applyTo"] in APPLY_TO, index
        assert patch["patch"]["operation"] in OPERATIONS, index
        assert "value" in patch["patch"], index
        if "match" in patch:
            assert patch["match"].get("context", "ANY") in CONTEXTS, index

    for entry in every("ServiceEntry"):
        assert entry["spec"]["hosts"] and entry["spec"]["resolution"] in {"DNS", "DNS_ROUND_ROBIN"}
        assert entry["spec"].get("location") == "MESH_EXTERNAL"
        for port in entry["spec"]["ports"]:
            assert {"number", "name", "protocol"} <= set(port)
    rules = {rule["spec"]["host"]: rule for rule in every("DestinationRule")}
    for entry in every("ServiceEntry"):
        (host,) = entry["spec"]["hosts"]
        rule = rules[host]["spec"]["trafficPolicy"]
        assert rule["connectionPool"]["http"]["maxRetries"] >= 1000
        for port in entry["spec"]["ports"]:
            assert port["protocol"] == "HTTP" and port["targetPort"] == 443
            tls = next(s["tls"] for s in rule["portLevelSettings"] if s["port"]["number"] == port["number"])
            assert tls["mode"] == "SIMPLE" and tls["sni"] == host and tls["subjectAltNames"] == [host]

    gateway, service = one("Gateway"), one("VirtualService")
    assert service["spec"]["gateways"] == [gateway["metadata"]["name"]]
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert gateway["spec"]["selector"].items() <= pod_labels.items()
    assert spec["workloadSelector"]["labels"].items() <= pod_labels.items()
    assert one("AuthorizationPolicy")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert one("Service")["spec"]["selector"].items() <= pod_labels.items()


def test_istio_envoyfilter_carries_complete_signalbox_filters_consistent_with_the_manifests():
    envoyfilter = one("EnvoyFilter")
    patches = envoyfilter["spec"]["configPatches"]
    router_role, upstream_role = istio_plugin_configs()
    assert (router_role["root_id"], upstream_role["root_id"]) == ("signalbox", "signalbox_upstream")
    for role in (router_role, upstream_role):
        # The reason this is an EnvoyFilter and not a WasmPlugin.
        assert role["allow_on_headers_stop_iteration"] is True
        assert role["failure_policy"] == "FAIL_CLOSED"
    assert router_role["vm_config"] == upstream_role["vm_config"], "both roles must share one VM"
    assert router_role["configuration"] == upstream_role["configuration"]
    uri = router_role["vm_config"]["code"]["remote"]["http_uri"]["uri"]
    assert uri.startswith(("oci://", "https://"))
    plugin = json.loads(router_role["configuration"]["value"])

    # Every ECDS reference names an extension config of this EnvoyFilter.
    names = {p["patch"]["value"]["name"] for p in patches if p["applyTo"] == "EXTENSION_CONFIG"}
    references = [n for n in envoy_config.walk_dicts(patches) if "config_discovery" in n]
    assert {ref["name"] for ref in references} == names
    for ref in references:
        assert ref["config_discovery"]["type_urls"] == [WASM_TYPE]

    # Keys: the VM reads exactly what the plugin needs, the pod gets exactly those from a Secret.
    env_names = set(router_role["vm_config"]["environment_variables"]["host_env_keys"])
    assert plugin_env_names(plugin) == env_names
    container = next(c for c in one("Deployment")["spec"]["template"]["spec"]["containers"] if c["name"] == "istio-proxy")
    assert {e["name"] for e in container["env"]} == env_names
    assert all(e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"])

    # Clusters: the plugin's, the route's and istiod's (from the ServiceEntries) are the same.
    istiod_clusters = {
        f"outbound|{port['number']}||{host}"
        for entry in every("ServiceEntry") for host in entry["spec"]["hosts"] for port in entry["spec"]["ports"]
    }
    assert {provider["cluster"] for provider in plugin["providers"].values()} == istiod_clusters
    route = next(p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_ROUTE")
    matcher = next(n["exact_match_map"]["map"] for n in envoy_config.walk_dicts(route) if "exact_match_map" in n)
    assert set(matcher) == istiod_clusters
    assert {entry["action"]["typed_config"]["cluster"] for entry in matcher.values()} == istiod_clusters
    production_route = next(n for n in envoy_config.walk_dicts(envoy_config.load(PRODUCTION_YAML)) if "retry_policy" in n)
    assert route["route"]["retry_policy"] == production_route["retry_policy"]
    per_try_ms = float(route["route"]["retry_policy"]["per_try_timeout"].rstrip("s")) * 1000
    assert per_try_ms == plugin["resilience"]["per_try_timeout_ms"]

    # Patches target the Gateway's port and the VirtualService's route.
    (server,) = one("Gateway")["spec"]["servers"]
    for patch in patches:
        match = patch.get("match", {})
        port = match.get("listener", match.get("routeConfiguration", {})).get("portNumber")
        if patch["applyTo"] != "EXTENSION_CONFIG":
            assert match["context"] == "GATEWAY" and port == server["port"]["number"], patch["applyTo"]
    route_patch = next(p for p in patches if p["applyTo"] == "HTTP_ROUTE")
    anchor = route_patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
    assert anchor in {route["name"] for route in one("VirtualService")["spec"]["http"]}

    # Stats tags: the bootstrap override the Deployment names, with production.yaml's tags.
    custom = json.loads(istio_custom_bootstrap())
    assert custom["stats_config"] == envoy_config.load(PRODUCTION_YAML)["stats_config"]


# The gateway istiod would build from gateway.yaml and provider-egress.yaml (only what
# the patches touch), the EnvoyFilter applied to it, and what istio-agent does.


def istio_gateway_skeleton(cluster_ports: dict[str, int]) -> dict:
    (server,) = one("Gateway")["spec"]["servers"]
    port = server["port"]["number"]
    fallback = one("VirtualService")["spec"]["http"][0]
    clusters = []
    for entry in every("ServiceEntry"):
        for host in entry["spec"]["hosts"]:
            for service_port in entry["spec"]["ports"]:
                name = f"outbound|{service_port['number']}||{host}"
                clusters.append({
                    "name": name, "type": "STATIC", "connect_timeout": "2s",
                    "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": {"socket_address": {
                            "address": "127.0.0.1", "port_value": cluster_ports[entry["metadata"]["name"]]}}}}]}]},
                })
    return {
        "node": {"id": "router~10.0.0.1~signalbox-gateway.ai-gateway~ai-gateway.svc.cluster.local",
                 "cluster": "signalbox-gateway.ai-gateway"},
        "stats_config": {"use_all_default_tags": False},
        "static_resources": {
            "listeners": [{
                "name": f"0.0.0.0_{port}",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": HCM, "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": f"outbound_0.0.0.0_{port}",
                    "use_remote_address": True,
                    "route_config": {"name": f"http.{port}", "virtual_hosts": [{
                        "name": f"*:{port}", "domains": ["*"],
                        "routes": [{"name": fallback["name"], "match": {"prefix": "/"}, "direct_response": {
                            "status": fallback["directResponse"]["status"],
                            "body": {"inline_string": fallback["directResponse"]["body"]["string"]}}}],
                    }]},
                    "http_filters": [{"name": ROUTER, "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                }}]}],
            }],
            "clusters": clusters,
        },
    }


def proto_merge(target: dict, patch: dict) -> None:
    """Proto merge of JSON forms: messages merge, repeated fields append, scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            proto_merge(target[key], value)
        elif isinstance(value, list) and isinstance(target.get(key), list):
            target[key].extend(copy.deepcopy(value))
        else:
            target[key] = copy.deepcopy(value)


def apply_envoyfilter(bootstrap: dict, envoyfilter: dict) -> dict[str, dict]:
    """Applies each patch where istiod would; returns the ECDS extension configs by name."""
    (listener,) = envoy_config.listeners(bootstrap)
    port = int(listener["name"].rsplit("_", 1)[1])
    hcm = listener["filter_chains"][0]["filters"][0]
    filters = hcm["typed_config"]["http_filters"]
    route_config = hcm["typed_config"]["route_config"]
    extensions = {}
    for index, patch in enumerate(envoyfilter["spec"]["configPatches"]):
        apply_to, match, operation = patch["applyTo"], patch.get("match", {}), patch["patch"]["operation"]
        value = copy.deepcopy(patch["patch"]["value"])
        where = f"patch {index} ({apply_to})"
        if apply_to == "EXTENSION_CONFIG":
            assert operation == "ADD", where
            extensions[value["name"]] = value
            continue
        assert match.get("context") == "GATEWAY", where
        if apply_to == "LISTENER":
            assert match["listener"]["portNumber"] == port, where
            assert operation == "MERGE", where
            proto_merge(listener, value)
        elif apply_to == "HTTP_FILTER":
            chain = match["listener"]["filterChain"]["filter"]
            assert match["listener"]["portNumber"] == port and chain["name"] == HCM, where
            position = next(i for i, f in enumerate(filters) if f["name"] == chain["subFilter"]["name"])
            if operation == "INSERT_BEFORE":
                filters.insert(position, value)
            elif operation == "MERGE":
                assert filters[position]["typed_config"]["@type"] == value["typed_config"]["@type"], where
                proto_merge(filters[position], value)
            else:
                pytest.fail(f"{where}: {operation} is not emulated")
        elif apply_to == "VIRTUAL_HOST":
            assert match["routeConfiguration"]["portNumber"] == port and operation == "MERGE", where
            for vhost in route_config["virtual_hosts"]:
                proto_merge(vhost, value)
        elif apply_to == "HTTP_ROUTE":
            rc = match["routeConfiguration"]
            assert rc["portNumber"] == port and operation == "INSERT_BEFORE", where
            routes = route_config["virtual_hosts"][0]["routes"]
            position = next(i for i, r in enumerate(routes) if r.get("name") == rc["vhost"]["route"]["name"])
            routes.insert(position, value)
        else:
            pytest.fail(f"{where}: not emulated")
    return extensions


def istio_gateway_config(tmp_path: Path, cluster_ports: dict[str, int], add_key: bool, inline: bool = False) -> dict:
    """The patched gateway; ECDS resources as files next to it (istiod serves them over ADS).

    inline puts each extension config in place of its reference instead (`--mode
    validate` does not load ECDS, but does load inline Wasm filters and their
    plugin configuration).
    """
    bootstrap = istio_gateway_skeleton(cluster_ports)
    extensions = apply_envoyfilter(bootstrap, one("EnvoyFilter"))
    files = {}
    for name, extension in extensions.items():
        config = extension["typed_config"]["config"]
        # What istio-agent does: the module is fetched and handed over as a local file.
        config["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
        if add_key:
            plugin = json.loads(config["configuration"]["value"])
            plugin["governance"]["keys"].append({"name": "kit-test", "tenant": "search", "sha256": sha256(KIT_KEY)})
            config["configuration"]["value"] = json.dumps(plugin)
        files[name] = tmp_path / ("ecds-" + re.sub(r"[^a-z0-9.-]", "_", name) + ".yaml")
        files[name].write_text(yaml.safe_dump({"resources": [
            {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **extension}]}))
    references = [n for n in envoy_config.walk_dicts(bootstrap) if "config_discovery" in n]
    assert {ref["name"] for ref in references} == set(files)
    for ref in references:
        source = ref["config_discovery"]["config_source"]
        assert source.pop("ads") == {}
        source["path_config_source"] = {"path": str(files[ref["name"]])}
        if inline:
            del ref["config_discovery"]
            ref["typed_config"] = copy.deepcopy(extensions[ref["name"]]["typed_config"])
    return bootstrap


def istio_custom_bootstrap() -> str:
    """The bootstrap override the gateway Deployment names (a ConfigMap's custom_bootstrap.json)."""
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    name = annotations["sidecar.istio.io/bootstrapOverride"]
    (config_map,) = [cm for cm in every("ConfigMap") if cm["metadata"]["name"] == name]
    return config_map["data"]["custom_bootstrap.json"]


@pytest.mark.parametrize("extensions", ["ecds", "inline"])
def test_istio_envoyfilter_patches_validate_in_the_gateway_istiod_builds(extensions, tmp_path, monkeypatch):
    istio_names = [entry["metadata"]["name"] for entry in every("ServiceEntry")]
    ports = {name: 9 for name in istio_names}  # never connected to
    bootstrap = istio_gateway_config(tmp_path, ports, add_key=False, inline=extensions == "inline")
    envoy_config.set_admin_port(bootstrap, 0)
    plugin_env = istio_plugin_configs()[0]["vm_config"]["environment_variables"]["host_env_keys"]
    for name, value in secrets_for(plugin_env).items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gateway.yaml"
    path.write_text(envoy_config.dump(bootstrap))
    # istio-agent starts Envoy with the ConfigMap's file as --config-yaml.
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--config-yaml", istio_custom_bootstrap(),
         "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_istio_patched_gateway_serves_fails_over_and_tags_metrics(mocks, tmp_path, monkeypatch):
    plugin_env = istio_plugin_configs()[0]["vm_config"]["environment_variables"]["host_env_keys"]
    secrets = secrets_for(plugin_env)
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    bootstrap = istio_gateway_config(tmp_path, mocks.ports, add_key=True)
    envoy = EnvoyProcess(bootstrap, workdir=tmp_path / "envoy", extra_args=("--config-yaml", istio_custom_bootstrap()))
    envoy.start()
    try:
        url = envoy.listener_url()
        response = post(url, chat_body("hi", model="gemini-flash"))
        assert response.status_code == 200, response.text
        assert mocks.requests("gemini")[-1].header("x-goog-api-key") == secrets["GEMINI_API_KEY"]
        mocks.set_script("anthropic", [{"status": 429}])
        response = post(url, chat_body("hi", model="claude-sonnet"))
        assert response.status_code == 200, response.text
        assert response.headers["x-signalbox-attempts"] == "claude-sonnet:429,gpt-4o:200"
        assert mocks.requests("openai")[-1].header("authorization") == f"Bearer {secrets['OPENAI_API_KEY']}"
        assert requests.get(url + "/nothing-here", timeout=TIMEOUT_S).status_code == 404
        series = [line for line in envoy.prometheus().splitlines() if line.startswith("signalbox_requests_total")]
        assert any(line.startswith('signalbox_requests_total{tenant="search"') for line in series), series
        assert not [line for line in series if line.startswith("signalbox_requests_total_")]
    finally:
        envoy.stop()


# --- observability/ ---------------------------------------------------------------------------

TARGET_LABELS = {"instance", "job", "namespace", "pod"}
# Labels of each family, as src/telemetry emits them (checked against LABEL_NAMES below,
# and against a running gateway's /stats/prometheus by the last test).
FAMILY_LABELS = {
    "signalbox_requests_total": {"tenant", "tier", "provider", "model", "route", "outcome"},
    "signalbox_attempts_total": {"deployment", "provider", "model", "result"},
    "signalbox_failovers_total": {"provider", "model", "result"},
    "signalbox_tokens_total": {"tenant", "provider", "model", "kind"},
    "signalbox_cost_micro_usd_total": {"tenant", "provider", "model"},
    "signalbox_rejections_total": {"tenant", "reason"},
    "signalbox_soft_alerts_total": {"tenant", "window"},
    "signalbox_config_loads_total": {"result"},
    "signalbox_quota_used": {"tenant", "window", "resource"},
    "signalbox_quota_limit": {"tenant", "window", "resource"},
    "signalbox_deployment_health_percent": {"deployment", "provider", "model"},
    "signalbox_deployment_circuit_state": {"deployment", "provider", "model"},
    "signalbox_deployment_in_flight": {"deployment", "provider", "model"},
    "signalbox_filter_duration_us": {"phase"},
    "signalbox_first_token_ms": {"provider", "model"},
    "signalbox_upstream_duration_ms": {"provider", "model"},
    "signalbox_request_duration_ms": {"provider", "model"},
    "signalbox_store_calls_total": {"op", "result"},
    "signalbox_store_duration_ms": {"op"},
    "signalbox_store_fallbacks_total": {"tenant", "result"},
    "signalbox_guardrail_actions_total": {"tenant", "kind", "result"},
    "signalbox_pii_findings_total": {"tenant", "kind"},
    "signalbox_cache_requests_total": {"tenant", "result"},
    "signalbox_cache_saved_micro_usd_total": {"tenant", "provider", "model"},
    "signalbox_cache_bytes": set(),
    "signalbox_cache_entries": set(),
    "signalbox_cache_embeddings_total": {"result"},
    "signalbox_cascade_assessments_total": {"tier", "provider", "model", "result"},
    "signalbox_cascade_escalations_total": {"tier", "reason"},
    "signalbox_canary_moves_total": {"tier", "provider", "model", "result"},
    "signalbox_canary_share_percent": {"tier", "provider", "model"},
    "signalbox_feedback_total": {"tier", "provider", "model", "kind", "result"},
    "signalbox_feedback_rating_milli_total": {"tier", "provider", "model", "kind"},
    "signalbox_shadow_total": {"tier", "kind", "result"},
    "signalbox_shadow_agreement_milli_total": {"tier", "kind"},
    "signalbox_shadow_judge_failures_total": {"provider", "model", "reason"},
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def rust_source_names() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """Family names, LABEL_NAMES and the fixed label values, read from the Rust source."""
    source = TELEMETRY_RS.read_text()
    families = set(re.findall(r'Family::\w+ => "(signalbox_[a-z_]+)"', source))
    labels_block = re.search(r"pub const LABEL_NAMES: \[&str; \d+\] = \[(.*?)\];", source, re.S).group(1)
    labels = set(re.findall(r'"([a-z_]+)"', labels_block))
    failure_kinds = set(re.findall(r'FailureKind::\w+ => "([a-z_]+)"', FAILURE_RS.read_text()))
    values = {
        "outcome": set(re.findall(r'Outcome::\w+ => "([a-z_]+)"', source)),
        "window": set(re.findall(r'Period::\w+ => "([a-z_]+)"', source)),
        "reason": set(re.findall(r'=> "((?:tenant|user|day|month)_[a-z]+|busy)"', source)),
        "result": {"ok", "rejected", "escalated", "accepted", "kept", "advanced", "promoted", "rolled_back", "positive", "negative", "agree", "disagree", "failed"} | failure_kinds,
        "route": {"none", "primary", "fallback", "cache", "cascade"},
        "kind": {"input", "cached_input", "output"},
        "resource": {"requests", "tokens", "cost_micro_usd"},
        "phase": {"route", "prepare", "translate"},
    }
    return families, labels, values


def family_of(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in FAMILY_LABELS:
            return name[: -len(suffix)]
    return name


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append((f"variable {variable['name']}", variable["definition"]))
    return exprs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def all_exprs() -> list[tuple[str, str]]:
    return dashboard_exprs() + [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def strip_grafana(expr: str) -> str:
    return re.sub(r"\$__\w+", "5m", expr)


def grouping_labels(expr: str) -> set[str]:
    found = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        found |= {label.strip() for label in group.split(",") if label.strip()}
    for group in re.findall(r"label_values\(\s*signalbox_[a-z_]+\s*,\s*([a-z_]+)\s*\)", expr):
        found.add(group)
    return found


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, operator, value)]) for every metric name in the expression."""
    found = []
    for match in re.finditer(r"\b(signalbox_[a-z_]+)\b(\s*\{([^}]*)\})?", expr):
        matchers = re.findall(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', match.group(3) or "")
        found.append((match.group(1), matchers))
    return found


def test_telemetry_catalogue_in_this_test_matches_the_rust_source():
    families, labels, values = rust_source_names()
    assert set(FAMILY_LABELS) == families
    assert set().union(*FAMILY_LABELS.values()) == labels
    assert values["outcome"] >= {"ok", "unavailable", "internal_error"} and values["window"] == {"day", "month"}
    assert "tenant_rate" in values["reason"] and "rate_limited" in values["result"]


def test_dashboard_and_alerts_use_only_exported_metrics_labels_and_values():
    families, labels, values = rust_source_names()
    problems = []
    for where, raw in all_exprs():
        expr = strip_grafana(raw)
        used = selectors(expr)
        if not used:
            problems.append(f"{where}: no signalbox metric")
        metrics = {family_of(metric) for metric, _ in used}
        for metric in metrics - families:
            problems.append(f"{where}: unknown metric {metric}")
        available = set().union(*(FAMILY_LABELS.get(m, set()) for m in metrics)) | TARGET_LABELS
        if any(metric.endswith("_bucket") for metric, _ in used):
            available.add("le")
        for label in grouping_labels(expr) - available:
            problems.append(f"{where}: groups by {label}, which none of {sorted(metrics)} has")
        for metric, matchers in used:
            for label, operator, value in matchers:
                if label not in FAMILY_LABELS.get(family_of(metric), set()) | TARGET_LABELS:
                    problems.append(f"{where}: {metric} has no label {label}")
                elif label in values and "$" not in value:
                    alternatives = value.split("|") if operator in ("=~", "!~") else [value]
                    for alternative in alternatives:
                        if alternative not in values[label] and alternative != ".*":
                            problems.append(f"{where}: {label}={alternative!r} is never exported")
    assert not problems, "\n".join(problems)


def test_counters_are_rated_and_histograms_are_quantiles():
    problems = []
    for where, raw in all_exprs():
        expr = strip_grafana(raw)
        if "label_values" in expr:
            continue
        counters = re.findall(r"\bsignalbox_[a-z_]+_total\b", expr)
        rated = re.findall(r"\b(?:rate|increase)\(\s*signalbox_[a-z_]+_total\b", expr)
        if len(counters) != len(rated):
            problems.append(f"{where}: a counter outside rate()/increase()")
        for _ in re.findall(r"_bucket\b", expr):
            if "histogram_quantile(" not in expr or not re.search(r"by \((?:[a-z_]+, )*le\b", expr):
                problems.append(f"{where}: buckets without histogram_quantile(... by (le ...))")
        for gauge in re.findall(r"\b(?:rate|increase)\(\s*(signalbox_(?:quota|deployment)_[a-z_]+)", expr):
            problems.append(f"{where}: rate() of gauge {gauge}")
        if expr.count("(") != expr.count(")"):
            problems.append(f"{where}: unbalanced parentheses")
    assert not problems, "\n".join(problems)


def test_dashboard_covers_the_gateway_and_uses_a_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    exprs = [strip_grafana(expr) for _, expr in dashboard_exprs()]

    def some(*patterns: str) -> bool:
        return any(all(re.search(p, e) for p in patterns) for e in exprs)

    wanted = {
        "traffic by tier": (r"by \(tier\)", r"signalbox_requests_total"),
        "traffic by model": (r"by \(provider, model\)", r"signalbox_requests_total"),
        "cost by tenant": (r"by \(tenant", r"signalbox_cost_micro_usd_total"),
        "failover rate": (r"signalbox_failovers_total", r"/", r"signalbox_requests_total"),
        "deployment health": (r"signalbox_deployment_health_percent",),
        "circuit state": (r"signalbox_deployment_circuit_state",),
        "TTFT percentiles": (r"histogram_quantile", r"signalbox_first_token_ms_bucket"),
        "latency percentiles": (r"histogram_quantile", r"signalbox_request_duration_ms_bucket"),
        "gateway overhead": (r"histogram_quantile", r"signalbox_filter_duration_us_bucket", r"phase"),
        "rejections": (r"signalbox_rejections_total", r"reason"),
        "budget usage ratio": (r"signalbox_quota_used", r"/", r"signalbox_quota_limit"),
    }
    missing = [name for name, patterns in wanted.items() if not some(*patterns)]
    assert not missing, missing


def test_alert_rules_are_complete_and_well_formed():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert len({group["name"] for group in groups}) == len(groups)
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), name
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        for label in re.findall(r"\$labels\.([a-z_]+)", text):
            assert label in grouping_labels(rule["expr"]), f"{name}: annotation uses {label}, which the expression drops"

    def rule_using(*patterns: str) -> list[str]:
        return [r["alert"] for r in rules if all(re.search(p, r["expr"]) for p in patterns)]

    assert rule_using(r"signalbox_quota_used", r"signalbox_quota_limit", r"> 0\.\d"), "budget nearly exhausted"
    assert rule_using(r"signalbox_deployment_circuit_state", r"== 2"), "provider circuit open"
    assert rule_using(r"signalbox_failovers_total", r"signalbox_requests_total"), "failover rate high"
    assert rule_using(r'outcome=~"', r"signalbox_requests_total"), "error rate high"


def scrape(text: str) -> dict[str, set[str]]:
    """Metric name -> label names seen in a /stats/prometheus text."""
    seen: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"(signalbox_[a-z_]+)(?:\{(.*)\})? ", line)
        if match:
            seen.setdefault(match.group(1), set()).update(re.findall(r'([a-z_]+)="', match.group(2) or ""))
    return seen


def test_every_series_the_dashboard_and_alerts_query_is_exported_by_a_running_gateway(production):
    # Traffic that makes every family appear: served, failed over, refused, over budget.
    assert post(production.url, chat_body("hi", model="gpt-4o-mini")).status_code == 200
    production.mocks.set_script("anthropic", [{"status": 503}])
    assert post(production.url, chat_body("hi", model="claude-sonnet")).status_code == 200
    assert post(production.url, chat_body("hi"), key="sk-unknown").status_code == 401
    assert post(production.url, chat_body("hi"), key=KIT_LIMITED_KEY).status_code == 200
    assert post(production.url, chat_body("hi"), key=KIT_LIMITED_KEY).status_code == 429

    wanted = {family_of(metric) for _, expr in all_exprs() for metric, _ in selectors(strip_grafana(expr))}
    histograms = {"signalbox_filter_duration_us", "signalbox_first_token_ms", "signalbox_upstream_duration_ms",
                  "signalbox_request_duration_ms"}
    deadline = time.monotonic() + 10
    while True:
        status, text = get_from(production.metrics_url, "/stats/prometheus")
        assert status == 200
        seen = scrape(text)
        exported = {family_of(name) for name in seen}
        missing = wanted - exported
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not missing, f"never exported: {sorted(missing)}"
    for family in histograms & wanted:
        assert family + "_bucket" in seen and "le" in seen[family + "_bucket"], family
    for family in wanted:
        exported_labels = set().union(*(labels for name, labels in seen.items() if family_of(name) == family)) - {"le"}
        assert exported_labels == FAMILY_LABELS[family], family
