"""Money that holds, through the real Envoy (two workers): every request that
reached a provider is billed what it consumed, on every path (complete,
client abort, provider reset, timeout); reservations are upper bounds
(`n`, `max_tokens: null`); a slow body is not cut and replayed elsewhere;
and the clock of quota periods cannot be moved by a client."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests

from tests.gateway import WASM, chat_body, retry_policy
from tests.harness import config as envoy_config
from tests.harness import start_expecting_failure
from tests.test_governance import CLOCK, governed, spend

KEY = "sk-billed-team-1"
AUTH = {"authorization": f"Bearer {KEY}"}
# Per-try timeout of the route and the plugin in the timeout tests.
PER_TRY_TIMEOUT_S = 1


def team(**tenant) -> dict:
    """One tenant "team" with `tenant`'s policy; cheap (openai) and strong (anthropic) models."""
    return governed({"team": tenant}, {KEY: ("team", "ann")})


def ledger(gateway, model: str) -> dict:
    return spend(gateway)["team"]["ledger"].get(model, {})


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def test_streams_the_client_closes_early_are_billed_what_was_relayed(start_gateway):
    gateway = start_gateway(team(quotas=[{"window": "day", "cost_usd": 5}]))
    gateway.mocks.set_behavior("openai", {"chunk_delay_ms": 150})
    body = chat_body("tell me a long story about a lighthouse keeper and the sea", model="cheap", stream=True)
    for _ in range(5):
        response = requests.post(
            gateway.url + "/v1/chat/completions", json=body, headers={**AUTH, "connection": "close"}, stream=True, timeout=10
        )
        assert response.status_code == 200
        lines = response.iter_lines()
        relayed = [next(lines) for _ in range(6)]
        assert any(b"content" in line for line in relayed)
        response.close()
    billed = wait_for(lambda: ledger(gateway, "cheap").get("requests") == 5 and ledger(gateway, "cheap"))
    assert billed["requests"] == 5, billed
    assert billed["estimated_requests"] == 5, "no usage came: prompt estimate plus relayed output"
    assert billed["output_tokens"] > 0 and billed["cost_usd"] > 0
    assert spend(gateway)["team"]["quotas"][0]["reserved"]["requests"] == 0


def test_a_provider_reset_mid_stream_is_visible_billed_and_a_failure(start_gateway):
    gateway = start_gateway(team())
    gateway.mocks.set_behavior("openai", {"reset_after_events": 4})
    body = chat_body("tell me a long story about a lighthouse keeper", model="cheap", stream=True)
    response = requests.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, stream=True, timeout=10)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(response.iter_content(None))  # the client sees the stream broken, not completed
    billed = wait_for(lambda: ledger(gateway, "cheap"))
    assert billed["requests"] == 1 and billed["estimated_requests"] == 1 and billed["output_tokens"] > 0
    health = next(d for d in gateway.view("/signalbox/health")["deployments"] if d["name"] == "cheap")
    assert health["successes"] == 0 and health["failures"]["unreachable"] == 1


def test_an_answer_with_unreadable_usage_is_served_and_billed_its_estimate(start_gateway):
    """A provider's usage with a negative or quoted count cannot be trusted, but
    the answer can: the client gets it, and the request is billed its estimate,
    as when no usage came."""
    gateway = start_gateway(team())
    gateway.mocks.set_behavior("openai", {"usage": {"prompt_tokens": -5, "completion_tokens": "7"}})
    response = gateway.chat(chat_body("hello there", model="cheap", max_tokens=50), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    billed = wait_for(lambda: ledger(gateway, "cheap"))
    assert billed["requests"] == 1 and billed["estimated_requests"] == 1, billed
    assert billed["output_tokens"] == 50, "the estimate bills the output bound"


def test_n_and_a_null_max_tokens_are_reserved_at_their_upper_bound(start_gateway):
    gateway = start_gateway(team(quotas=[{"window": "day", "cost_usd": 0.01}]))
    gateway.mocks.set_behavior("openai", {"spend_allowance": True})
    # 128 answers of up to the default reservation (1,024 tokens) each: far
    # over a $0.01 budget at $2 per million output tokens.
    greedy = chat_body("hi", model="cheap", n=128, max_tokens=None)
    refused = gateway.chat(greedy, headers=AUTH)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert gateway.mocks.requests("openai") == []
    # A few answers with a stated limit fit, and are billed what they used.
    assert gateway.chat(chat_body("hi", model="cheap", n=2, max_tokens=100), headers=AUTH).status_code == 200
    assert ledger(gateway, "cheap")["output_tokens"] == 200
    assert ledger(gateway, "cheap")["cost_usd"] <= 0.01


@pytest.mark.parametrize("bound", ["tenant-cap", "model-maximum"])
def test_parallel_requests_without_max_tokens_cannot_overshoot_the_budget(start_gateway, bound):
    cap_usd = 0.05
    if bound == "tenant-cap":
        plugin = team(quotas=[{"window": "day", "cost_usd": cap_usd}], max_tokens_per_request=500)
    else:
        plugin = team(quotas=[{"window": "day", "cost_usd": cap_usd}])
        plugin["models"]["cheap"]["max_output_tokens"] = 4096
    gateway = start_gateway(plugin)
    gateway.mocks.set_behavior("openai", {"spend_allowance": True})
    body = chat_body("hi", model="cheap", max_tokens=None)

    def send(_):
        return gateway.chat(body, headers={**AUTH, "connection": "close"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, range(200)))
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 1
    billed = ledger(gateway, "cheap")
    assert billed["requests"] == statuses.count(200)
    # The documented bound: admitted spend stays within the cap (the prompt
    # estimate of "hi" is exact here: the mock counts one word).
    assert billed["cost_usd"] <= cap_usd + 1e-9, billed
    if bound == "tenant-cap":
        sent = {request.json.get("max_tokens") for request in gateway.mocks.requests("openai")}
        assert sent == {500}, "a null max_tokens gets the tenant's cap upstream"


def slow_tries(config: dict) -> None:
    retry_policy(config)["per_try_timeout"] = f"{PER_TRY_TIMEOUT_S}s"


def test_a_body_slower_than_the_per_try_timeout_is_not_cut_and_replayed(start_gateway):
    plugin = team()
    plugin["models"]["cheap"]["fallbacks"] = ["strong"]
    plugin["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": PER_TRY_TIMEOUT_S * 1000}
    gateway = start_gateway(plugin, tweak=slow_tries)
    # Headers at once, the body 1.6 s later: past the 1 s per-try timeout.
    gateway.mocks.set_behavior("openai", {"first_token_delay_ms": 1600})
    response = gateway.chat(chat_body("hello there", model="cheap"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["x-signalbox-model"] == "cheap"
    assert response.json()["choices"][0]["message"]["content"].startswith("[openai/cheap-model]")
    assert gateway.mocks.requests("anthropic") == [], "never replayed on the fallback"
    billed = wait_for(lambda: ledger(gateway, "cheap"))
    assert billed["requests"] == 1 and billed["estimated_requests"] == 0
    health = next(d for d in gateway.view("/signalbox/health")["deployments"] if d["name"] == "cheap")
    assert health["successes"] == 1 and sum(health["failures"].values()) == 0


def test_the_shipped_module_refuses_a_test_clock(mocks):
    from tests.gateway import gateway_config

    config = gateway_config(mocks, team())
    envoy_config.set_wasm_filename(config, WASM)  # the module `make build` ships
    code, log = start_expecting_failure(config)
    assert code != 0
    assert "governance.test_clock_header" in log


def test_a_clock_from_the_past_does_not_wipe_a_quota(start_gateway):
    gateway = start_gateway(team(quotas=[{"window": "day", "requests": 3}]))
    # Today at noon UTC, so the spend view (on the real clock) shows the same day.
    now = int(time.time() // 86_400) * 86_400_000 + 43_200_000

    def at(when: int) -> int:
        return gateway.chat(chat_body("hi", model="cheap"), headers={**AUTH, CLOCK: str(when)}).status_code

    assert [at(now + second * 1000) for second in range(4)] == [200, 200, 200, 429]
    two_days_ago = now - 2 * 86_400_000
    assert at(two_days_ago) == 429, "an earlier clock finds today's quota full"
    assert at(now + 10_000) == 429
    assert spend(gateway)["team"]["quotas"][0]["used"]["requests"] == 3


def big_text(chars: int) -> str:
    return ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[:chars]


def test_prompt_text_outside_message_content_is_estimated_and_reserved(start_gateway):
    """The prompt estimate behind reservations counts every input the provider
    bills, not only message `content`: an assistant's tool_calls arguments and
    a json_schema response_format are reserved like content, so a prompt too
    large for the budget is refused wherever in the body it is put."""
    cap_tokens = 2_000
    gateway = start_gateway(team(quotas=[{"window": "day", "tokens": cap_tokens}]))
    payload = big_text(40_000)  # ~10,000 tokens
    as_content = chat_body(payload, model="cheap", max_tokens=5)
    refused = gateway.chat(as_content, headers=AUTH)
    assert refused.status_code == 429, refused.text  # the estimate sees it: over the cap
    in_tool_call = {
        "model": "cheap",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "call the tool"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"x": payload})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "user", "content": "thanks"},
        ],
    }
    in_schema = {
        **chat_body("answer in json", model="cheap", max_tokens=5),
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": payload}}},
    }
    statuses = {name: gateway.chat(body, headers=AUTH).status_code for name, body in
                (("tool_calls", in_tool_call), ("json_schema", in_schema))}
    forwarded = [len(request.body) for request in gateway.mocks.requests("openai")]
    assert statuses == {"tool_calls": 429, "json_schema": 429}, (
        f"~10,000-token prompts admitted under a {cap_tokens}-token cap: {statuses}; bodies forwarded: {forwarded} bytes"
    )
