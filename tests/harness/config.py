"""Adapt an Envoy YAML config (as a dict) for a test run.

Filters are found by walking the whole tree, so HTTP filters and upstream
filters declared inside clusters (typed_extension_protocol_options ->
envoy.extensions.upstreams.http.v3.HttpProtocolOptions -> http_filters) are
handled alike. Every helper edits the dict in place and returns what it changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
LOOPBACK = "127.0.0.1"


def load(path: str | os.PathLike) -> dict:
    return yaml.safe_load(Path(path).read_text())


def parse(text: str) -> dict:
    return yaml.safe_load(text)


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def walk_dicts(node: Any) -> Iterator[dict]:
    """Every dict in the tree, parents before children."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_dicts(item)


def _socket_address(address: str, port: int) -> dict:
    return {"socket_address": {"address": address, "port_value": port}}


def set_admin_port(config: dict, port: int = 0) -> dict:
    """Admin on 127.0.0.1:port (0 lets Envoy pick; EnvoyProcess reads the real port back)."""
    admin = config.setdefault("admin", {})
    admin["address"] = _socket_address(LOOPBACK, port)
    return admin


def _named(items: list[dict], name: str | None, kind: str) -> dict:
    if not items:
        raise KeyError(f"the config has no {kind}s")
    if name is None:
        return items[0]
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(f"no {kind} named {name!r}; have {[i.get('name') for i in items]}")


def listeners(config: dict) -> list[dict]:
    return config.get("static_resources", {}).get("listeners", [])


def clusters(config: dict) -> list[dict]:
    return config.get("static_resources", {}).get("clusters", [])


def set_listener_port(config: dict, port: int = 0, name: str | None = None) -> dict:
    """Bind a listener (by name, default the first) to 127.0.0.1:port."""
    listener = _named(listeners(config), name, "listener")
    listener["address"] = _socket_address(LOOPBACK, port)
    # Envoy's default (SO_REUSEPORT) lets a second process bind a busy port
    # silently, so a test could talk to a stranger's Envoy and pass.
    listener["enable_reuse_port"] = False
    return listener


def point_cluster(config: dict, name: str, port: int, host: str = LOOPBACK, plaintext: bool = True) -> dict:
    """Send a cluster's traffic to host:port, a mock provider.

    plaintext drops the cluster's TLS transport socket, since the mocks speak cleartext HTTP/1.1.
    """
    cluster = _named(clusters(config), name, "cluster")
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    cluster["load_assignment"] = {
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}],
    }
    if plaintext:
        cluster.pop("transport_socket", None)
        cluster.pop("transport_socket_matches", None)
    return cluster


def _local_code(node: dict) -> dict | None:
    """node["vm_config"]["code"]["local"] when it names a module file."""
    try:
        local = node["vm_config"]["code"]["local"]
    except (KeyError, TypeError):
        return None
    return local if isinstance(local, dict) and "filename" in local else None


def wasm_plugins(config: dict, plugin: str | None = None) -> list[dict]:
    """Wasm plugin configs (dicts with vm_config.code.local.filename), optionally by name or root_id."""
    return [
        node
        for node in walk_dicts(config)
        if _local_code(node) is not None and (plugin is None or plugin in (node.get("name"), node.get("root_id")))
    ]


def set_wasm_filename(config: dict, filename: str | os.PathLike) -> int:
    """Point every Wasm plugin at the module under test; returns how many were changed."""
    plugins = wasm_plugins(config)
    for node in plugins:
        _local_code(node)["filename"] = str(filename)
    return len(plugins)


def get_plugin_config(config: dict, plugin: str | None = None) -> Any:
    """The JSON configuration of the one matching Wasm plugin, parsed (None when it has none)."""
    matches = wasm_plugins(config, plugin)
    if len(matches) != 1:
        raise ValueError(f"expected exactly one Wasm plugin matching {plugin!r}, found {len(matches)}")
    configuration = matches[0].get("configuration")
    if configuration is None:
        return None
    value = configuration.get("value", "") if isinstance(configuration, dict) else configuration
    return json.loads(value) if value else None


def set_plugin_config(config: dict, value: Any, plugin: str | None = None) -> int:
    """Set the matching Wasm plugins' configuration; a non-str value is JSON-encoded."""
    matches = wasm_plugins(config, plugin)
    if not matches:
        raise ValueError(f"no Wasm plugin matching {plugin!r}")
    text = value if isinstance(value, str) else json.dumps(value)
    for node in matches:
        node["configuration"] = {"@type": STRING_VALUE_TYPE, "value": text}
    return len(matches)


def set_access_log_path(config: dict, path: str | os.PathLike) -> int:
    """Point every file access logger at `path`; returns how many there were."""
    loggers = [
        node["typed_config"]
        for node in walk_dicts(config)
        if node.get("name") == "envoy.access_loggers.file" and "typed_config" in node
    ]
    for logger in loggers:
        logger["path"] = str(path)
    return len(loggers)


def set_stats_flush_interval(config: dict, seconds: float) -> None:
    """How often histograms are merged into what the admin endpoint shows (Envoy's default: 5 s)."""
    config["stats_flush_interval"] = f"{seconds}s"
