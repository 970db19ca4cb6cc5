"""A reservation bounds what a request can be billed, on the paths that bill
beyond one answer: failover chains, whole answers abandoned by their client,
output limits the adapter injects. Real Envoy (two workers) + mock providers,
127.0.0.1 only."""

from __future__ import annotations

import time

import requests

from tests.gateway import chat_body, retry_policy
from tests.test_billing import wait_for
from tests.test_governance import governed, spend

KEY = "sk-bounds-team-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}
PER_TRY_S = 1
# 4 bytes a word: the gateway's estimate (ASCII bytes / 4) and the mock's
# count (a word a token) agree, so no "prompt estimate error" is involved.
WORDS = 2000
PROMPT = " ".join(["abc"] * WORDS)


def team(**tenant) -> dict:
    return governed({"team": tenant}, {KEY: ("team", "ann")})


def settled_quota(gateway) -> dict | None:
    quota = spend(gateway)["team"]["quotas"][0]
    return quota if quota["reserved"]["requests"] == 0 and quota["used"]["requests"] > 0 else None


def short_tries(config: dict) -> None:
    retry_policy(config)["per_try_timeout"] = f"{PER_TRY_S}s"


def test_a_failover_chain_reserves_the_cost_of_every_link(start_gateway):
    """Each link of a failover chain may be billed the prompt (a timed-out
    attempt was still read by its provider) and, for a whole answer, its
    output: the cost reserved covers every link, so a request whose chain
    could overspend a money cap is refused before any provider sees it, and
    one that fits is billed within the cap."""
    body = chat_body(PROMPT, model="cheap", max_tokens=1)
    # Reserved: cheap 2,004 x $1/M + 1 x $2/M, strong 2,004 x $10/M + 1 x $30/M = $0.0221.
    for cap_usd, admitted in ((0.021, False), (0.023, True)):
        plugin = team(quotas=[{"window": "day", "cost_usd": cap_usd}])
        plugin["models"]["cheap"]["fallbacks"] = ["strong"]
        plugin["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": PER_TRY_S * 1000}
        gateway = start_gateway(plugin, tweak=short_tries)
        gateway.mocks.set_behavior("openai", {"hang": True})  # the primary never answers: per-try timeout
        response = gateway.chat(body, headers=AUTH)
        if not admitted:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "insufficient_quota"
            assert gateway.mocks.requests("openai") == []
            continue
        assert response.status_code == 200, response.text
        assert response.headers["x-signalbox-model"] == "strong"
        quota = wait_for(lambda: settled_quota(gateway))
        assert quota is not None
        ledger = spend(gateway)["team"]["ledger"]
        # The timed-out prompt was billed too, and the total stayed within the cap.
        assert ledger["cheap"]["input_tokens"] >= WORDS and ledger["strong"]["input_tokens"] >= WORDS, ledger
        assert quota["used"]["cost_usd"] <= cap_usd, quota


def test_whole_answers_abandoned_by_their_client_are_billed_their_output(start_gateway):
    """A non-streamed attempt its client abandons before the headers is billed
    its prompt and its output bound (estimated): the provider finishes the
    generation and bills it. The budget fills, so what the provider billed for
    the abandoned requests stays within the cap."""
    max_tokens = 1000
    # $2 per M output: 1000 tokens = 2000 micro-USD; budget fits ~2 full answers.
    cap_usd = 0.005
    gateway = start_gateway(team(quotas=[{"window": "day", "cost_usd": cap_usd}]))
    gateway.mocks.set_behavior("openai", {"spend_allowance": True, "delay_ms": 1500})
    body = chat_body("hi", model="cheap", max_tokens=max_tokens)
    admitted = 0
    for _ in range(6):
        try:
            gateway_response = requests.post(gateway.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=0.6)
            admitted += gateway_response.status_code == 200
        except requests.exceptions.ReadTimeout:
            admitted += 1  # it got past admission and reached the provider
        time.sleep(0.05)
    # Each abandoned attempt settles when Envoy ends it, after its client left: wait until none is reserved.
    wait_for(lambda: settled_quota(gateway))
    reached = len(gateway.mocks.requests("openai"))
    provider_billed_usd = reached * max_tokens * 2 / 1e6
    ledger = spend(gateway)["team"]["ledger"]["cheap"]
    assert reached >= 1 and ledger["output_tokens"] >= reached * max_tokens, ledger
    assert provider_billed_usd <= cap_usd + 1e-9, (
        f"{reached} abandoned requests reached the provider (billed ~${provider_billed_usd:.4f} of output), "
        f"budget ${cap_usd}; the gateway's ledger says output_tokens={ledger['output_tokens']} cost=${ledger['cost_usd']}"
    )


def test_anthropic_requests_without_max_tokens_reserve_the_4096_the_adapter_sends(start_gateway):
    """With no max_tokens and no tenant or model cap, the Anthropic adapter
    sends max_tokens 4096: the reservation uses that bound rather than the
    default guess, so a concurrent burst cannot pass a budget."""
    plugin = team(quotas=[{"window": "day", "tokens": 1_000_000}])
    plugin["providers"]["anthropic"]["kind"] = "anthropic"
    gateway = start_gateway(plugin)
    gateway.mocks.set_behavior("anthropic", {"delay_ms": 1500})
    import threading

    worker = threading.Thread(target=lambda: gateway.chat(chat_body("hi", model="strong"), headers=AUTH))
    worker.start()
    gateway.mocks.wait_for_requests("anthropic", 1)  # admitted (reserved) and still in flight
    reserved = spend(gateway)["team"]["quotas"][0]["reserved"]["tokens"]
    worker.join(10)
    sent = gateway.last_request("anthropic").json["max_tokens"]
    assert reserved >= sent, f"the provider was told max_tokens={sent}; the reservation was {reserved} tokens"


def test_a_prediction_is_reserved_as_output(start_gateway):
    """OpenAI bills the rejected tokens of a `prediction` as output, beyond
    `max_tokens`: the reservation counts it, so a large prediction cannot
    slip past a money cap that `max_tokens` alone would satisfy."""
    # Reserved with the prediction: 5,000 words x $2/M output = $0.01 > $0.005.
    gateway = start_gateway(team(quotas=[{"window": "day", "cost_usd": 0.005}]))
    predicted = dict(chat_body("Fix the bug.", model="cheap", max_tokens=10),
                     prediction={"type": "content", "content": PROMPT + " abc" * 3000})
    response = gateway.chat(predicted, headers=AUTH)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert gateway.mocks.requests("openai") == []
    plain = gateway.chat(chat_body("Fix the bug.", model="cheap", max_tokens=10), headers=AUTH)
    assert plain.status_code == 200, plain.text
