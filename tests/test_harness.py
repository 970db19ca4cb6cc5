"""Self-tests of the Envoy harness: real Envoy processes in front of the mock providers."""

from __future__ import annotations

import json
import os
import socket

import pytest
import requests

from tests.harness import EnvoyProcess, config, free_port, start_expecting_failure, validate

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Route me through Envoy please"}]}
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def router_config(upstream_port: int, route: dict | None = None) -> dict:
    """The smallest useful config: one listener, router to one cluster, all ports dynamic."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "ingress",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "route": {"cluster": "provider", "timeout": "5s", **(route or {})}}
                    ],
                }
            ]
        },
        "http_filters": [ROUTER],
    }
    cfg = {
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [{"name": "provider", "connect_timeout": "1s"}],
        }
    }
    config.set_admin_port(cfg)
    config.set_listener_port(cfg)
    config.point_cluster(cfg, "provider", upstream_port)
    return cfg


def test_request_reaches_mock_through_envoy(mocks, envoy):
    proxy = envoy(router_config(mocks.ports["openai"]))
    response = requests.post(proxy.listener_url() + "/v1/chat/completions", json=CHAT, timeout=10)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "[openai/gpt-4o] Route me through Envoy please"
    [recorded] = mocks.requests("openai")
    assert recorded.json == CHAT and recorded.header("x-request-id")
    assert proxy.stats()["cluster.provider.upstream_rq_200"] == 1
    assert "envoy_cluster_upstream_rq_total" in proxy.prometheus()
    assert "starting main dispatch loop" in proxy.log_text()


def test_stream_and_chunked_request_body_through_envoy(mocks, envoy):
    proxy = envoy(router_config(mocks.ports["anthropic"]))
    mocks.set_behavior("anthropic", {"split": "random"})
    body = json.dumps(
        {
            "model": "claude",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "stream through envoy"}],
        }
    ).encode()
    pieces = iter([body[:20], body[20:]])  # a generator body makes requests send it chunked
    response = requests.post(
        proxy.listener_url() + "/v1/messages", data=pieces, timeout=10, headers={"content-type": "application/json"}
    )
    deltas = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    text = "".join(d["delta"]["text"] for d in deltas if d["type"] == "content_block_delta")
    assert text == "[anthropic/claude] stream through envoy"
    [recorded] = mocks.requests("anthropic")
    assert recorded.header("transfer-encoding") == "chunked" and recorded.body == body


def test_envoy_retries_a_scripted_503(mocks, envoy):
    retry = {"retry_policy": {"retry_on": "5xx", "num_retries": 2}}
    proxy = envoy(router_config(mocks.ports["openai"], route=retry))
    mocks.set_script("openai", [{"status": 503}, None])
    response = requests.post(proxy.listener_url() + "/v1/chat/completions", json=CHAT, timeout=10)
    assert response.status_code == 200 and len(mocks.requests("openai")) == 2
    assert proxy.stats()["cluster.provider.upstream_rq_retry"] == 1


def test_envoy_turns_hang_and_reset_into_gateway_errors(mocks, envoy):
    proxy = envoy(router_config(mocks.ports["openai"], route={"timeout": "0.5s"}))
    mocks.set_script("openai", [{"hang": True}, {"reset": True}])
    url = proxy.listener_url() + "/v1/chat/completions"
    assert requests.post(url, json=CHAT, timeout=10).status_code == 504
    reset = requests.post(url, json=CHAT, timeout=10)
    assert reset.status_code == 503 and "reset" in reset.text
    assert requests.post(url, json=CHAT, timeout=10).status_code == 200


def test_validate_accepts_good_and_rejects_bad_config(tmp_path):
    good = router_config(9)
    ok, output = validate(good)
    assert ok, output
    bad = router_config(9)
    bad["static_resources"]["clusters"][0]["name"] = "elsewhere"
    ok, output = validate(bad)
    assert not ok and "unknown cluster 'provider'" in output
    path = tmp_path / "good.yaml"
    path.write_text(config.dump(good))
    assert validate(path)[0]


def test_failing_start_reports_exit_code_and_log():
    bad = router_config(9)
    bad["static_resources"]["clusters"][0]["name"] = "elsewhere"
    code, log = start_expecting_failure(bad)
    assert code != 0 and "unknown cluster 'provider'" in log


def test_envoy_is_gone_after_the_context_exits(mocks):
    cfg = router_config(mocks.ports["openai"])
    del cfg["admin"]  # EnvoyProcess adds an admin endpoint when a config has none
    port = free_port()
    config.set_listener_port(cfg, port, "main")
    with EnvoyProcess(cfg, concurrency=1) as proxy:
        pid = proxy.pid
        assert proxy.listener_port("main") == port
        assert proxy.running() and requests.get(proxy.listener_url() + "/v1/models", timeout=5).ok
    assert not proxy.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "caught ENVOY_SIGTERM" in proxy.log_text()


def test_a_busy_port_fails_the_second_envoy_loudly(mocks):
    first = router_config(mocks.ports["openai"])
    port = free_port()
    config.set_listener_port(first, port, "main")
    with EnvoyProcess(first, concurrency=1):
        second = router_config(mocks.ports["openai"])
        config.set_listener_port(second, port, "main")
        code, log = start_expecting_failure(second)
    assert code != 0
    assert "Address already in use" in log or "cannot bind" in log, log[-2000:]


WASM_CONFIG = """
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: signalbox
                root_id: signalbox
                vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: /old/signalbox.wasm}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"routes": []}'
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: openai
    type: LOGICAL_DNS
    load_assignment:
      cluster_name: openai
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: api.openai.com, port_value: 443}}}}]}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http_protocol_options: {}}
        http_filters:
        - name: envoy.filters.http.wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: signalbox-upstream
              vm_config: {runtime: envoy.wasm.runtime.v8, code: {local: {filename: /old/signalbox.wasm}}}
        - name: envoy.filters.http.upstream_codec
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec}
"""


def test_config_helpers_adapt_wasm_filters_listeners_and_clusters():
    cfg = config.parse(WASM_CONFIG)
    assert config.set_wasm_filename(cfg, "/repo/target/signalbox.wasm") == 2
    assert {p["vm_config"]["code"]["local"]["filename"] for p in config.wasm_plugins(cfg)} == {
        "/repo/target/signalbox.wasm"
    }
    assert config.get_plugin_config(cfg, "signalbox") == {"routes": []}
    assert config.get_plugin_config(cfg, "signalbox-upstream") is None
    with pytest.raises(ValueError):
        config.get_plugin_config(cfg)  # two plugins: ambiguous

    config.set_plugin_config(cfg, {"routes": [{"to": "openai"}]}, "signalbox")
    configuration = config.wasm_plugins(cfg, "signalbox")[0]["configuration"]
    assert configuration == {"@type": config.STRING_VALUE_TYPE, "value": '{"routes": [{"to": "openai"}]}'}
    assert config.set_plugin_config(cfg, '{"x": 1}') == 2

    config.set_admin_port(cfg, 0)
    listener = config.set_listener_port(cfg, 0, "ingress")
    assert listener["address"] == {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    cluster = config.point_cluster(cfg, "openai", 18001)
    assert cluster["type"] == "STATIC" and "transport_socket" not in cluster
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18001}
    assert (
        "http_filters"
        in cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    )
    with pytest.raises(KeyError, match="no cluster named"):
        config.point_cluster(cfg, "nope", 1)
    assert config.parse(config.dump(cfg)) == cfg
