"""The fleet ledger through two real Envoys and a real Redis behind webdis
(no mock of the store): caps hold across replicas and restarts, concurrent
mixed traffic stays within the documented bound, budgets fail closed and
rate limits fall back to the replica's share while Redis is down, and the
service comes back with Redis without restarting Envoy."""

from __future__ import annotations

import concurrent.futures
import json
import random
import time

import pytest
import requests

from tests.gateway import DEMO_KEY, Gateway, chat_body, demo_plugin_config, gateway_config, with_fleet_ledger
from tests.test_governance import digest

TINY_KEY = "sk-demo-tiny"
# Generous for a loaded test machine; the shipped default is 100 ms.
STORE_TIMEOUT_MS = 500


def replicas(envoy, mocks, fleet_store, plugin: dict | None = None, count: int = 2) -> list[Gateway]:
    """`count` Envoys with the same config, keeping governance in `fleet_store`."""
    config = with_fleet_ledger(
        gateway_config(mocks, plugin), fleet_store.webdis_port, replicas=count, timeout_ms=STORE_TIMEOUT_MS
    )
    return [Gateway(envoy(config), mocks, DEMO_KEY) for _ in range(count)]


def fleet_spend(gateway: Gateway) -> dict:
    return {tenant["tenant"]: tenant for tenant in gateway.view("/signalbox/spend")["tenants"]}


def wait_for(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


def settled(gateway: Gateway, tenant: str) -> dict | None:
    """The tenant's spend once no reservation is open (settlements are sent asynchronously).
    None while the view itself gets no answer from Redis in time (503: a Redis just resumed
    is still working through what queued while it hung)."""
    try:
        spend = fleet_spend(gateway)[tenant]
    except requests.HTTPError as error:
        if error.response is not None and error.response.status_code == 503:
            return None
        raise
    return spend if all(quota["reserved"]["requests"] == 0 for quota in spend["quotas"]) else None


def test_the_tiny_key_gets_five_requests_a_day_across_replicas_and_restarts(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store)
    statuses = []
    for index in range(10):
        gateway = (first, second)[index % 2]
        statuses.append(gateway.chat(chat_body("hi"), headers={"authorization": f"Bearer {TINY_KEY}"}).status_code)
    assert statuses.count(200) == 5, statuses
    assert set(statuses) == {200, 429}
    for gateway in (first, second):
        tiny = wait_for(lambda: settled(gateway, "tiny"))
        assert tiny["source"] == "fleet"
        assert tiny["quotas"][0]["used"]["requests"] == 5
    for gateway in (first, second):
        gateway.envoy.stop()
        gateway.envoy.start()
    for gateway in (first, second):
        refused = gateway.chat(chat_body("hi"), headers={"authorization": f"Bearer {TINY_KEY}"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"


BUDGET_USD = 0.05
TOKEN_CAP = 40_000
KEY = "sk-fleet-load-1"


def budgeted() -> dict:
    """The demo with one tenant on a small daily cost and token budget; its
    cheap model's answers use their whole allowance (the mock bills max_tokens × n)."""
    plugin = demo_plugin_config()
    # The mock's most output per answer when no max_tokens is sent.
    plugin["models"]["gpt-4o-mini"]["max_output_tokens"] = 4_096
    plugin["governance"]["tenants"]["load"] = {
        "allowed_models": ["gpt-4o-mini"],
        "quotas": [{"window": "day", "cost_usd": BUDGET_USD, "tokens": TOKEN_CAP}],
    }
    plugin["governance"]["keys"].append({"name": "load", "tenant": "load", "sha256": digest(KEY)})
    return plugin


def mixed_request(index: int) -> tuple[dict, dict, str]:
    """(body, headers, how to read it) for request `index` of the mixed load."""
    kind = ("whole", "n", "null", "stream", "abort", "reset")[index % 6]
    body = chat_body(f"request {index}: say something", model="gpt-4o-mini", max_tokens=300)
    headers = {"authorization": f"Bearer {KEY}", "connection": "close"}
    if kind == "n":
        body["n"] = 3
    if kind == "null":
        body["max_tokens"] = None
    if kind in ("stream", "abort", "reset"):
        body["stream"] = True
    fault = {"spend_allowance": True}
    if kind == "abort":
        fault["chunk_delay_ms"] = 20
    if kind == "reset":
        fault["reset_after_events"] = 3
    headers["x-mock-fault"] = json.dumps(fault)
    return body, headers, kind


def send_mixed(gateway: Gateway, index: int) -> int:
    body, headers, kind = mixed_request(index)
    try:
        response = requests.post(
            gateway.url + "/v1/chat/completions", json=body, headers=headers, stream=body.get("stream", False), timeout=20
        )
        if kind == "abort" and response.status_code == 200:
            lines = response.iter_lines()
            for _ in range(3):
                next(lines, None)
            response.close()
        else:
            b"".join(response.iter_content(None))
        return response.status_code
    except requests.exceptions.ChunkedEncodingError:
        return 200  # a provider reset mid-stream: the client saw it broken


def test_concurrent_mixed_traffic_on_two_replicas_stays_within_the_budget(envoy, mocks, fleet_store):
    first, second = replicas(envoy, mocks, fleet_store, budgeted())
    order = list(range(200))
    random.Random(11).shuffle(order)
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda index: send_mixed((first, second)[index % 2], index), order))
    admitted = statuses.count(200)
    assert admitted >= 1 and set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) > 0, "the budget was reached"

    spend = wait_for(lambda: settled(first, "load"))
    assert spend is not None, "every reservation is settled once idle"
    used = spend["quotas"][0]["used"]
    # The documented bound: admitted spend stays within each cap, up to the
    # prompt estimate's error (the mock counts a word a token; Signalbox's
    # estimate is above that for these prompts, so no error here).
    assert used["cost_usd"] <= BUDGET_USD + 1e-9, used
    assert used["tokens"] <= TOKEN_CAP, used
    ledger = spend["ledger"]["gpt-4o-mini"]
    assert ledger["estimated_requests"] > 0, "aborted and reset streams were billed on an estimate"
    other = fleet_spend(second)["load"]
    assert (other["quotas"][0]["used"], other["ledger"]) == (used, spend["ledger"]), "both replicas read one ledger"


def test_redis_down_budgets_fail_closed_rate_limits_fall_back_and_service_returns(envoy, mocks, fleet_store):
    plugin = demo_plugin_config()
    plugin["governance"]["tenants"]["rates"] = {"limits": {"rpm": 10}}
    plugin["governance"]["keys"].append({"name": "rates", "tenant": "rates", "sha256": digest("sk-rates-only-1")})
    first, second = replicas(envoy, mocks, fleet_store, plugin)
    assert first.chat(chat_body("hi")).status_code == 200
    fleet_store.stop_redis()
    started = time.monotonic()
    refused = first.chat(chat_body("hi"))
    elapsed = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "ledger_unavailable"
    assert refused.headers["retry-after"] == "1"
    assert elapsed < STORE_TIMEOUT_MS / 1000 + 0.5, f"answered within the store timeout, took {elapsed:.2f}s"
    assert mocks.requests("openai")[-1:] and len(mocks.requests()) == 1, "nothing spent without the ledger"
    # A tenant with rate limits only is counted locally, at 10 rpm ÷ 2 replicas.
    rates = {"authorization": "Bearer sk-rates-only-1", "connection": "close"}
    statuses = [first.chat(chat_body("hi"), headers=rates).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2, statuses
    metrics = first.envoy.admin_get("/stats?filter=signalbox_store")
    assert "signalbox_store_fallbacks_total;tenant=.=team;.;;result=.=refused;.;: 1" in metrics
    assert "signalbox_store_fallbacks_total;tenant=.=rates;.;;result=.=local;.;: 7" in metrics
    logged = [line for line in first.envoy.log_text().splitlines() if "fleet ledger unavailable" in line]
    assert 1 <= len(logged) <= 4, "one line per tenant and period, per worker"
    fleet_store.start_redis()
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status != 200:
        status = second.chat(chat_body("hi"), headers={"connection": "close"}).status_code
        time.sleep(0.2)
    assert status == 200, "service returns with Redis, without restarting Envoy"
    assert first.chat(chat_body("hi"), headers={"connection": "close"}).status_code == 200
    assert fleet_spend(first)["team"]["source"] == "fleet"


QUOTA_KEY = "sk-fleet-quota-1"
RATES_KEY = "sk-fleet-rates-1"


def one_replica_of_quota_and_rates_tenants(envoy, mocks, fleet_store) -> Gateway:
    """One Envoy; tenant `quota` has 3 requests a day (budgets fail closed by default),
    tenant `rates` only a rate limit (counted locally while the ledger is away)."""
    plugin = demo_plugin_config()
    tenants, keys = plugin["governance"]["tenants"], plugin["governance"]["keys"]
    tenants["quota"] = {"allowed_models": ["gpt-4o-mini"], "quotas": [{"window": "day", "requests": 3}]}
    keys.append({"name": "quota", "tenant": "quota", "sha256": digest(QUOTA_KEY)})
    tenants["rates"] = {"allowed_models": ["gpt-4o-mini"], "limits": {"rpm": 100}}
    keys.append({"name": "rates", "tenant": "rates", "sha256": digest(RATES_KEY)})
    (gateway,) = replicas(envoy, mocks, fleet_store, plugin, count=1)
    return gateway


def ask(gateway: Gateway, key: str) -> int:
    headers = {"authorization": f"Bearer {key}", "connection": "close"}
    return gateway.chat(chat_body("hi", model="gpt-4o-mini", max_tokens=5), headers=headers).status_code


def test_a_request_refused_while_redis_hangs_does_not_use_quota(envoy, mocks, fleet_store):
    """An admission that times out (Redis hung) is refused 503 and released with zero amounts.
    Its command still runs when Redis wakes, booking a reservation; the release, whichever
    reaches Redis first, leaves nothing used: it gives the reservation back, or its tombstone
    makes the late admission book nothing."""
    gateway = one_replica_of_quota_and_rates_tenants(envoy, mocks, fleet_store)
    assert ask(gateway, QUOTA_KEY) == 200  # 1 of 3 used
    fleet_store.pause_redis()
    try:
        refused = [ask(gateway, QUOTA_KEY) for _ in range(2)]
    finally:
        time.sleep(0.5)
        fleet_store.resume_redis()
    assert refused == [503, 503], refused  # fail closed: nothing served
    quota = wait_for(lambda: settled(gateway, "quota"))
    assert quota is not None, "the late admissions' reservations are released"
    assert quota["quotas"][0]["used"]["requests"] == 1, quota
    assert [ask(gateway, QUOTA_KEY) for _ in range(3)] == [200, 200, 429], "2 of 3 daily requests remain"


def test_spend_served_on_the_local_fallback_reaches_the_fleet_ledger_when_redis_returns(envoy, mocks, fleet_store):
    """While Redis is down a tenant whose rate limits fall back is served on this Envoy's
    counters; each such request is queued as a charge without reservation and reaches the
    fleet ledger once Redis is back, counted once."""
    gateway = one_replica_of_quota_and_rates_tenants(envoy, mocks, fleet_store)
    assert ask(gateway, RATES_KEY) == 200
    fleet_store.stop_redis()
    try:
        served = [ask(gateway, RATES_KEY) for _ in range(3)]
    finally:
        fleet_store.start_redis()
    assert served == [200, 200, 200], served

    def ledger() -> dict | None:
        try:
            entry = fleet_spend(gateway)["rates"]["ledger"].get("gpt-4o-mini", {})
        except Exception:  # noqa: BLE001 - webdis reconnecting
            return None
        return entry if entry.get("requests", 0) >= 4 else None

    assert (wait_for(ledger) or {}).get("requests") == 4, "4 requests served (and paid to the provider)"
    time.sleep(1)  # retried charges would land by now
    assert fleet_spend(gateway)["rates"]["ledger"]["gpt-4o-mini"]["requests"] == 4, "counted once"
