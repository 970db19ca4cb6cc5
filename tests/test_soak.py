"""A bounded fault soak through the real Envoy (two workers): 50 concurrent
clients, streamed and whole requests, two tenants, four providers whose mocks
answer 429 with retry-after, 5xx, hang, reset mid-stream or trickle bytes,
and clients that hang up at random. Afterwards Envoy must still be the same
process, without a panic in its log, serving on every worker; every answer a
client read to the end must have been a chat completion or a clean
OpenAI-style error; and once idle, nothing may stay held: no quota
reservation, no deployment in flight, no half-open trial slot, and every
circuit closes again within an open period once the faults stop.

SOAK_SECONDS (default 20; `make soak` uses 180) sets the load's length,
SOAK_CLIENTS (default 50) its concurrency. Every violation is reported
precisely (what, which deployment or tenant, the numbers).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from tests.gateway import ADMIN_KEY, add_cluster, retry_policy

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
SOAK_CLIENTS = int(os.environ.get("SOAK_CLIENTS", "50"))

# Attempts give up after this long without response headers (route and plugin agree).
PER_TRY_TIMEOUT_S = 2
MAX_ATTEMPTS = 3
OPEN_MS = 3000
# A client waits at most this long for a whole answer: every attempt timing
# out, plus slow bodies.
CLIENT_TIMEOUT_S = PER_TRY_TIMEOUT_S * MAX_ATTEMPTS + 10
# How often the chaos thread changes each mock's behavior.
CHAOS_PERIOD_S = 1.5
PROVIDERS = ("openai", "anthropic", "gemini", "bedrock")
MODELS = {f"m-{provider}": provider for provider in PROVIDERS}
TENANT_KEYS = {"alpha": "sk-soak-alpha", "beta": "sk-soak-beta"}

FAULTS = [
    None,
    None,
    {"status": 429, "retry_after": 1},
    {"status": 500},
    {"status": 503},
    {"hang": True},
    {"reset": True},
    {"reset_after_events": 3},
    {"chunk_delay_ms": 40, "split": "random"},
    {"first_token_delay_ms": 1500},
]
# Per-request faults (x-mock-fault) apply to every attempt of that request.
REQUEST_FAULTS = [{"split": "every-byte"}, {"reset_after_events": 2}, {"delay_ms": 300}]


def soak_config() -> dict:
    providers = {
        "openai": {"cluster": "openai", "api_key": "sk-soak-openai"},
        "anthropic": {"kind": "anthropic", "cluster": "anthropic", "api_key": "sk-soak-anthropic"},
        "gemini": {"kind": "gemini", "cluster": "gemini", "api_key": "soak-gemini"},
        "bedrock": {"kind": "bedrock", "cluster": "bedrock", "region": "us-east-1", "api_key": "soak-bedrock"},
    }
    others = lambda name: [other for other in MODELS if other != name]  # noqa: E731
    return {
        "explain": "always",
        "providers": providers,
        "models": {
            name: {"provider": provider, "id": f"{provider}-soak", "price": {"input": 1, "output": 2}, "fallbacks": others(name)}
            for name, provider in MODELS.items()
        },
        "tiers": [{"name": "all", "models": list(MODELS), "strategy": "weighted", "weights": {name: 1 for name in MODELS}}],
        "resilience": {
            "max_attempts": MAX_ATTEMPTS,
            "per_try_timeout_ms": PER_TRY_TIMEOUT_S * 1000,
            # Hangs are cut at the per-try timeout, which CLIENT_TIMEOUT_S is
            # derived from; time per output token is tested elsewhere
            # (test_health_attribution.py).
            "output_token_ms": 0,
            "breaker": {"consecutive_failures": 3, "open_ms": OPEN_MS, "half_open_trials": 1},
        },
        "governance": {
            "tenants": {
                tenant: {"quotas": [{"window": "day", "requests": 10_000_000, "tokens": 1_000_000_000}]}
                for tenant in TENANT_KEYS
            },
            "keys": [
                {"sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant, "name": f"{tenant}-key"}
                for tenant, key in TENANT_KEYS.items()
            ],
        },
    }


def soak_envoy(config: dict) -> None:
    retry_policy(config)["per_try_timeout"] = f"{PER_TRY_TIMEOUT_S}s"
    for name in ("gemini", "bedrock"):
        add_cluster(config, name)


def admin_get(gateway, path: str) -> dict:
    """GET of a /signalbox/ operator view, with the admin key."""
    response = requests.get(
        gateway.url + path, headers={"connection": "close", "authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


@dataclass
class Tally:
    """What the clients saw; `problems` are answers that broke the contract."""

    outcomes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str, problem: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if problem is not None and len(self.problems) < 50:
                self.problems.append(problem)


def is_openai_error(body: bytes) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def check_whole(status: int, body: bytes) -> str | None:
    """None for a chat completion (200) or a clean OpenAI error, else what is wrong."""
    if status == 200:
        try:
            answer = json.loads(body)
            assert answer["object"] == "chat.completion" and answer["choices"][0]["message"] is not None
        except (ValueError, KeyError, TypeError, IndexError, AssertionError):
            return f"200 that is not a chat completion: {body[:200]!r}"
        return None
    if 400 <= status < 600 and is_openai_error(body):
        return None
    return f"{status} that is not an OpenAI error: {body[:200]!r}"


def check_stream(status: int, content_type: str, body: bytes) -> str | None:
    """None for SSE chunks ending in [DONE] (an error event may come first) or a clean error."""
    if status != 200:
        return check_whole(status, body)
    if not content_type.startswith("text/event-stream"):
        return f"streamed 200 with content-type {content_type!r}"
    events = [line[len(b"data: "):] for line in body.split(b"\n") if line.startswith(b"data: ")]
    if not events or events[-1] != b"[DONE]":
        return f"stream without a final [DONE]: ...{body[-200:]!r}"
    for data in events[:-1]:
        try:
            event = json.loads(data)
        except ValueError:
            return f"stream event that is not JSON: {data[:200]!r}"
        if "error" not in event and event.get("object") != "chat.completion.chunk":
            return f"stream event that is neither a chunk nor an error: {data[:200]!r}"
    return None


def one_request(gateway, rng: random.Random, tally: Tally) -> None:
    tenant = rng.choice(list(TENANT_KEYS))
    stream = rng.random() < 0.5
    model = rng.choice(["auto", "auto", *MODELS])
    body = {"model": model, "messages": [{"role": "user", "content": f"soak {rng.random():.6f}: tell me a story"}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": rng.random() < 0.5}
    headers = {"authorization": f"Bearer {TENANT_KEYS[tenant]}", "content-type": "application/json", "connection": "close"}
    if rng.random() < 0.1:
        headers["x-mock-fault"] = json.dumps(rng.choice(REQUEST_FAULTS))
    abort_after = rng.choice([0, 10, 200, 2000]) if rng.random() < 0.15 else None
    host, port = gateway.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT_S)
    kind = "stream" if stream else "whole"
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        if abort_after == 0:
            hang_up(connection, rng)
            tally.count(f"{kind}: client hung up before the answer")
            return
        response = connection.getresponse()
        if abort_after is not None:
            response.read(abort_after)
            hang_up(connection, rng)
            tally.count(f"{kind}: client hung up after {abort_after} bytes")
            return
        data = response.read()
        check = check_stream if stream else check_whole
        problem = check(response.status, response.getheader("content-type", ""), data) if stream else check(response.status, data)
        outcome = f"{kind}: {response.status}" + ("" if problem is None else " (malformed)")
        tally.count(outcome, None if problem is None else f"{kind} {model} ({tenant}): {problem}")
    except (TimeoutError, socket.timeout):
        tally.count(f"{kind}: no answer within {CLIENT_TIMEOUT_S}s", f"{kind} {model} ({tenant}): wedged, no answer within {CLIENT_TIMEOUT_S}s")
    except (http.client.IncompleteRead, ConnectionError, http.client.HTTPException) as error:
        # Envoy cuts a client's stream when the provider's connection breaks
        # after the answer started: there is no status left to send.
        tally.count(f"{kind}: connection cut by the gateway ({type(error).__name__})")
    finally:
        connection.close()


def hang_up(connection: http.client.HTTPConnection, rng: random.Random) -> None:
    """Close the socket, half the time with a TCP reset instead of a FIN."""
    if connection.sock is not None and rng.random() < 0.5:
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def chaos(mocks, rng: random.Random, stop: threading.Event) -> None:
    """Each mock's behavior changes every CHAOS_PERIOD_S until `stop`."""
    while not stop.wait(CHAOS_PERIOD_S):
        for provider in PROVIDERS:
            mocks.set_behavior(provider, rng.choice(FAULTS))


def run_load(gateway, seconds: float, clients: int) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    chaos_thread = threading.Thread(target=chaos, args=(gateway.mocks, random.Random(7), stop), daemon=True)
    chaos_thread.start()

    def client(number: int) -> None:
        rng = random.Random(number)
        while time.monotonic() < deadline:
            one_request(gateway, rng, tally)

    threads = [threading.Thread(target=client, args=(number,), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + CLIENT_TIMEOUT_S + 30)
    stop.set()
    chaos_thread.join(timeout=10)
    for provider in PROVIDERS:
        gateway.mocks.reset_behavior(provider)
    assert not any(thread.is_alive() for thread in threads), "a client thread never finished"
    return tally


def idle_violations(gateway) -> list[str]:
    """What is still held once the gateway is idle: reservations, in-flight
    attempts, half-open trial slots, circuits that did not close."""
    found = []
    spend = admin_get(gateway, "/signalbox/spend")
    for report in spend["tenants"]:
        for quota in report.get("quotas", []):
            held = {unit: amount for unit, amount in quota.get("reserved", {}).items() if amount}
            if held:
                found.append(f"tenant {report['tenant']}: {quota.get('window')} quota still has reserved {held} (used {quota.get('used')})")
    for deployment in admin_get(gateway, "/signalbox/health")["deployments"]:
        name, circuit, availability = deployment["name"], deployment["circuit"], deployment["availability"]
        if deployment["in_flight"]:
            found.append(f"deployment {name}: in_flight = {deployment['in_flight']} with no request in flight")
        if availability == "trials_busy":
            found.append(f"deployment {name}: half-open trial slot still claimed (circuit {circuit}, availability {availability})")
        elif circuit != "closed":
            found.append(f"deployment {name}: circuit {circuit} ({availability}) after faults stopped and good requests were sent")
    return found


def recover(gateway) -> None:
    """Wait out the attempts of hung-up clients (every client itself has
    finished), then send good requests to every model, an open period apart,
    so open circuits get their trial."""
    time.sleep(PER_TRY_TIMEOUT_S * MAX_ATTEMPTS + 1)
    for _ in range(2):
        for model in MODELS:
            body = {"model": model, "messages": [{"role": "user", "content": "hello after the storm"}]}
            gateway.chat(body, headers={"connection": "close", "authorization": f"Bearer {TENANT_KEYS['alpha']}"})
        time.sleep(OPEN_MS / 1000)


PANIC = re.compile(r"panicked at|\[critical\]|wasm log.*(error|abort)|Wasm VM failed|Function: .* failed", re.I)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 4 * CLIENT_TIMEOUT_S + 180)
def test_faults_and_hangups_leave_the_gateway_serving_and_holding_nothing(start_gateway):
    gateway = start_gateway(soak_config(), tweak=soak_envoy)
    pid = gateway.envoy.pid
    tally = run_load(gateway, SOAK_SECONDS, SOAK_CLIENTS)
    recover(gateway)

    print(f"\nsoak: {SOAK_CLIENTS} clients for {SOAK_SECONDS:.0f}s, {sum(tally.outcomes.values())} requests")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {count:6d}  {outcome}")
    assert gateway.envoy.running and gateway.envoy.pid == pid, "Envoy exited or restarted"
    panics = [line for line in gateway.envoy.log_text().splitlines() if PANIC.search(line)]
    assert not panics, "Envoy's log shows a panic or a failed VM:\n" + "\n".join(panics[:20])
    assert not tally.problems, "answers that broke the contract:\n" + "\n".join(tally.problems)
    # Every worker still serves every provider (fresh connections spread over the workers).
    for _ in range(4):
        for model in MODELS:
            body = {"model": model, "messages": [{"role": "user", "content": "still there?"}]}
            response = gateway.chat(body, headers={"connection": "close", "authorization": f"Bearer {TENANT_KEYS['beta']}"})
            assert response.status_code == 200, f"{model}: {response.status_code} {response.text[:300]}"

    leaks = idle_violations(gateway)
    print("idle state:", "nothing held" if not leaks else "\n  " + "\n  ".join(leaks))
    assert not leaks, "held after the soak:\n" + "\n".join(leaks)
