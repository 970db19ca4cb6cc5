#!/usr/bin/env python3
"""`make run`: Envoy with the Signalbox filter on 127.0.0.1:10000.

Without provider keys in the environment it starts the bundled mock providers
(tests/mocks) and uses envoy/demo.yaml, so routing can be seen at once. With
OPENAI_API_KEY and/or ANTHROPIC_API_KEY it uses envoy/live.yaml against the
real APIs, keeping only the providers whose key is present.

Runs until Ctrl-C; every child process is stopped on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import config as envoy_config  # noqa: E402

ENVOY = REPO / ".venv" / "bin" / "envoy"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "signalbox.wasm"
MOCK_PORTS = {"openai": 18001, "anthropic": 18002}
KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

EXAMPLES = """
Signalbox is routing on http://127.0.0.1:10000 ({mode}). Try:

  # a simple prompt goes to the cheap tier
  curl -s -i http://127.0.0.1:10000/v1/chat/completions -H 'authorization: Bearer sk-demo-team' -H 'x-signalbox-explain: 1' \\
    -d '{{"model":"auto","messages":[{{"role":"user","content":"What is the capital of France?"}}]}}'

  # code, math or multi-step analysis goes to the strong tier
  curl -s -i http://127.0.0.1:10000/v1/chat/completions -H 'authorization: Bearer sk-demo-team' -H 'x-signalbox-explain: 1' \\
    -d '{{"model":"auto","messages":[{{"role":"user","content":"Write a Python function that merges overlapping intervals and prove it runs in O(n log n)."}}]}}'

Look at the x-signalbox-* response headers. Virtual keys: sk-demo-team, sk-demo-tiny (5 requests a day).
Operator views (admin key sk-demo-admin):
  curl -s http://127.0.0.1:10000/signalbox/health -H 'authorization: Bearer sk-demo-admin'
  curl -s http://127.0.0.1:10000/signalbox/spend -H 'authorization: Bearer sk-demo-admin'
Envoy admin: http://127.0.0.1:9901  Stop: Ctrl-C
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


def main() -> int:
    if not WASM.exists():
        print(f"missing {WASM}: run `make build` first", file=sys.stderr)
        return 1
    available = {provider for provider, variable in KEY_VARIABLES.items() if os.environ.get(variable)}
    children: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="signalbox-demo-"))

    def stop(*_):
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        if available:
            config = envoy_config.load(REPO / "envoy" / "live.yaml")
            plugin = live_plugin_config(envoy_config.get_plugin_config(config, "signalbox"), available)
            envoy_config.set_plugin_config(config, plugin)
            mode = "real providers: " + ", ".join(sorted(available))
        else:
            config = envoy_config.load(REPO / "envoy" / "demo.yaml")
            listen = [arg for name, port in MOCK_PORTS.items() for arg in ("--listen", f"{name}={port}")]
            children.append(subprocess.Popen([sys.executable, "-m", "tests.mocks", *listen], cwd=REPO))
            mode = "bundled mock providers; set OPENAI_API_KEY / ANTHROPIC_API_KEY for real ones"
        envoy_config.set_wasm_filename(config, WASM)
        config_path = workdir / "envoy.yaml"
        config_path.write_text(envoy_config.dump(config))
        envoy = subprocess.Popen(
            [str(ENVOY), "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn",
             "--component-log-level", "wasm:info", "--concurrency", "2"],
            cwd=REPO,
        )
        children.append(envoy)
        time.sleep(1.5)
        if envoy.poll() is not None:
            print("Envoy did not start; see its log above.", file=sys.stderr)
            return 1
        print(EXAMPLES.format(mode=mode), flush=True)
        envoy.wait()
        return envoy.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
