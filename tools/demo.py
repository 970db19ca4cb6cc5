#!/usr/bin/env python3
"""`make run`: Envoy with the Signalbox filter on 127.0.0.1:10000.

Without provider keys in the environment it starts the bundled mock providers
(tests/mocks) and uses envoy/demo.yaml, so routing can be seen at once. With
OPENAI_API_KEY and/or ANTHROPIC_API_KEY it uses envoy/live.yaml against the
real APIs, keeping only the providers whose key is present.

`make run-fleet` (--fleet): the demo as a fleet — Redis with webdis in front
(127.0.0.1:6390 and :7390, data in .fleet/demo, so spend survives restarts),
the mock providers, and two Envoy replicas on 127.0.0.1:10000 and :10001
keeping every limit, quota and the cost ledger in that one ledger.

Runs until Ctrl-C; every child process is stopped on the way out.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.gateway import with_fleet_ledger  # noqa: E402
from tests.harness import config as envoy_config  # noqa: E402
from tools.fleet_store import FleetStore  # noqa: E402

ENVOY = REPO / ".venv" / "bin" / "envoy"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "signalbox.wasm"
MOCK_PORTS = {"openai": 18001, "anthropic": 18002}
# The fleet demo: its store, and its replicas as (listener, admin) ports.
REDIS_PORT = 6390
WEBDIS_PORT = 7390
FLEET_DATA = REPO / ".fleet" / "demo"
REPLICAS = [(10000, 9901), (10001, 9911)]
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

EXAMPLES = """
Signalbox is routing on http://127.0.0.1:10000 ({mode}). Try:

  # a simple prompt goes to the cheap tier
  curl -s -i http://127.0.0.1:10000/v1/chat/completions -H 'content-type: application/json' -H 'authorization: Bearer sk-demo-team' -H 'x-signalbox-explain: 1' \\
    -d '{{"model":"auto","messages":[{{"role":"user","content":"What is the capital of France?"}}]}}'

  # code, math or multi-step analysis goes to the strong tier
  curl -s -i http://127.0.0.1:10000/v1/chat/completions -H 'content-type: application/json' -H 'authorization: Bearer sk-demo-team' -H 'x-signalbox-explain: 1' \\
    -d '{{"model":"auto","messages":[{{"role":"user","content":"Write a Python function that merges overlapping intervals and prove it runs in O(n log n)."}}]}}'

Look at the x-signalbox-* response headers. Virtual keys: sk-demo-team, sk-demo-tiny (5 requests a day).
Operator views (admin key sk-demo-admin):
  curl -s http://127.0.0.1:10000/signalbox/health -H 'authorization: Bearer sk-demo-admin'
  curl -s http://127.0.0.1:10000/signalbox/spend -H 'authorization: Bearer sk-demo-admin'
Envoy admin: http://127.0.0.1:9901  Stop: Ctrl-C
"""

FLEET_EXAMPLES = """
Fleet demo: two Envoy replicas, http://127.0.0.1:10000 and http://127.0.0.1:10001, one ledger
(Redis 127.0.0.1:{redis} behind webdis 127.0.0.1:{webdis}; data in .fleet/demo). Try:

  # sk-demo-tiny may make five requests a day in all, whichever replica it asks
  for port in 10000 10001 10000 10001 10000 10001; do
    curl -s -o /dev/null -w "$port %{{http_code}}\\n" http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
      -H 'authorization: Bearer sk-demo-tiny' -d '{{"model":"auto","messages":[{{"role":"user","content":"hi"}}]}}'
  done
  # both replicas show the same spend, from the ledger
  curl -s http://127.0.0.1:10001/signalbox/spend -H 'authorization: Bearer sk-demo-admin'

Redis admin for this run: redis-cli -p {redis} --user admin --pass {password}
Stop: Ctrl-C
"""


def live_plugin_config(config: dict, available: set[str]) -> dict:
    """The live plugin config reduced to the providers whose key is set."""
    models = {name: dict(model) for name, model in config["models"].items() if model["provider"] in available}
    for model in models.values():
        if "fallbacks" in model:
            model["fallbacks"] = [name for name in model["fallbacks"] if name in models]
    tiers = []
    for tier in config["tiers"]:
        kept = [name for name in tier["models"] if name in models]
        if kept:
            tiers.append({**tier, "models": kept})
    tiers[-1].pop("max_score", None)
    tier_names = {tier["name"] for tier in tiers}

    def still_routable(rule: dict) -> bool:
        target = rule["then"]
        return target.get("model") in models or target.get("tier") in tier_names

    return {
        **config,
        "providers": {name: p for name, p in config["providers"].items() if name in available},
        "models": models,
        "tiers": tiers,
        "rules": [rule for rule in config.get("rules", []) if still_routable(rule)],
    }


def start_envoy(config: dict, workdir: Path, name: str) -> subprocess.Popen:
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(envoy_config.dump(config))
    return subprocess.Popen(
        [str(ENVOY), "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn",
         "--component-log-level", "wasm:info", "--concurrency", "2"],
        cwd=REPO,
    )


def start_mocks() -> subprocess.Popen:
    listen = [arg for name, port in MOCK_PORTS.items() for arg in ("--listen", f"{name}={port}")]
    return subprocess.Popen([sys.executable, "-m", "tests.mocks", *listen], cwd=REPO)


def wait_ready(admin_ports: list[int], envoys: list[subprocess.Popen], timeout: float = 90.0) -> bool:
    """Whether every Envoy answers its admin /ready in time (loading the Wasm module takes a few seconds)."""
    deadline = time.monotonic() + timeout
    waiting = set(admin_ports)
    while waiting and time.monotonic() < deadline:
        if any(envoy.poll() is not None for envoy in envoys):
            return False
        for port in list(waiting):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    if response.status == 200:
                        waiting.discard(port)
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.3)
    return not waiting


def fleet_replica(listen_port: int, admin_port: int) -> dict:
    """The demo config as one replica of the fleet demo."""
    config = envoy_config.load(REPO / "envoy" / "demo.yaml")
    envoy_config.set_listener_port(config, listen_port)
    envoy_config.set_admin_port(config, admin_port)
    envoy_config.set_wasm_filename(config, WASM)
    return with_fleet_ledger(config, WEBDIS_PORT, replicas=len(REPLICAS))


def main() -> int:
    if not WASM.exists():
        print(f"missing {WASM}: run `make build` first", file=sys.stderr)
        return 1
    fleet = "--fleet" in sys.argv[1:]
    available = set() if fleet else {p for p, variable in KEY_VARIABLES.items() if os.environ.get(variable)}
    children: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="signalbox-demo-"))
    store = FleetStore(workdir=FLEET_DATA, redis_port=REDIS_PORT, webdis_port=WEBDIS_PORT) if fleet else None

    def stop(*_):
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
        if store is not None:
            store.stop()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        if fleet:
            store.start()
            children.append(start_mocks())
            envoys = [start_envoy(fleet_replica(*ports), workdir, f"replica-{ports[0]}") for ports in REPLICAS]
            admin_ports = [admin for _, admin in REPLICAS]
            banner = FLEET_EXAMPLES.format(redis=REDIS_PORT, webdis=WEBDIS_PORT, password=store.admin_password)
        elif available:
            config = envoy_config.load(REPO / "envoy" / "live.yaml")
            plugin = live_plugin_config(envoy_config.get_plugin_config(config, "signalbox"), available)
            envoy_config.set_plugin_config(config, plugin)
            envoy_config.set_wasm_filename(config, WASM)
            envoys = [start_envoy(config, workdir, "envoy")]
            admin_ports = [9901]
            banner = EXAMPLES.format(mode="real providers: " + ", ".join(sorted(available)))
        else:
            config = envoy_config.load(REPO / "envoy" / "demo.yaml")
            envoy_config.set_wasm_filename(config, WASM)
            children.append(start_mocks())
            envoys = [start_envoy(config, workdir, "envoy")]
            admin_ports = [9901]
            banner = EXAMPLES.format(mode="bundled mock providers; set OPENAI_API_KEY / ANTHROPIC_API_KEY for real ones")
        children.extend(envoys)
        if not wait_ready(admin_ports, envoys):
            print("Envoy did not start; see its log above.", file=sys.stderr)
            return 1
        print(banner, flush=True)
        for envoy in envoys:
            envoy.wait()
        return max(envoy.returncode or 0 for envoy in envoys)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
