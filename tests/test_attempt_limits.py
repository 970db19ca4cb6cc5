"""Tier caps and attempt timeouts hold whatever the client sends.
Real Envoy + mock providers, 127.0.0.1 only."""

from __future__ import annotations

import time

from tests.gateway import chat_body, retry_policy
from tests.test_governance import governed

KEY = "sk-limits-team-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}


def test_a_named_embeddings_model_is_held_to_max_tier(start_gateway):
    """A model in a tier's pool named on /v1/embeddings is held
    to the tenant's max_tier as on chat: a key capped at `simple` naming the
    `complex` model gets 403, and no provider sees the request."""
    plugin = governed({"team": {"max_tier": "simple"}}, {KEY: ("team", "ann")})
    # Both models on OpenAI so both can express embeddings.
    plugin["models"]["strong"]["provider"] = "openai"
    gateway = start_gateway(plugin)
    # Chat holds the cap:
    chat = gateway.chat(chat_body("hi", model="strong"), headers=AUTH)
    assert chat.status_code == 403, chat.text
    response = gateway.post("/v1/embeddings", {"model": "strong", "input": "hello"}, headers=AUTH)
    sent = [request.json.get("model") for request in gateway.mocks.requests("openai")]
    assert response.status_code == 403, (
        f"embeddings on a model above max_tier answered {response.status_code}; provider got models {sent}"
    )


def test_a_client_max_tokens_above_the_models_limit_does_not_stretch_the_per_try_timeout(start_gateway):
    """A whole answer's per-try timeout grows with
    its output bound, and the client's max_tokens is held to the model's own
    max_output_tokens in that bound: max_tokens 100000 to a model limited to 50
    tokens gives 1000 + 50 x 20 ms, so a hung primary is left at ~2 s and the
    fallback answers 200."""
    plugin = governed({"team": {}}, {KEY: ("team", "ann")})
    plugin["models"]["cheap"].update({"max_output_tokens": 50, "context_window": 1_000_000, "fallbacks": ["strong"]})
    plugin["models"]["strong"].update({"max_output_tokens": 50, "context_window": 1_000_000})
    plugin["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": 1000, "deadline_ms": 5000, "output_token_ms": 20}

    def tweak(config: dict) -> None:
        retry_policy(config)["per_try_timeout"] = "1s"

    gateway = start_gateway(plugin, tweak=tweak)
    gateway.mocks.set_behavior("openai", {"hang": True})
    # Control: the model's own limit bounds the attempt (1000 + 50 x 20 ms), the fallback answers.
    started = time.monotonic()
    control = gateway.chat(chat_body("hi", model="cheap", max_tokens=50), headers=AUTH)
    control_s = time.monotonic() - started
    assert control.status_code == 200, control.text
    assert control.headers.get("x-signalbox-model") == "strong"
    # The same request, with a max_tokens the model cannot produce anyway.
    started = time.monotonic()
    response = gateway.chat(chat_body("hi", model="cheap", max_tokens=100_000), headers=AUTH)
    elapsed = time.monotonic() - started
    asked_fallback = len(gateway.mocks.requests("anthropic"))
    assert response.status_code == 200 and elapsed < 3.5, (
        f"max_tokens=100000 on a model limited to 50: {response.status_code} after {elapsed:.1f}s "
        f"(control with max_tokens=50: 200 via fallback after {control_s:.1f}s); "
        f"fallback asked {asked_fallback} time(s) in all"
    )


def test_a_fallback_cut_by_the_deadline_is_billed_and_not_blamed(start_gateway):
    """A failover attempt cut by the request's deadline
    (before its own per-try timeout) reached its provider, which generates the
    whole answer: it is billed its prompt + output bound (estimated), and no
    failure is recorded against its deployment.

    Setup: per-try 1000 ms + 75 tokens x 20 ms = 2500 ms, deadline 3000 ms;
    `cheap` hangs, `strong` (anthropic) takes 2 s."""
    from tests.test_billing import wait_for
    from tests.test_governance import spend

    plugin = governed({"team": {}}, {KEY: ("team", "ann")})
    plugin["models"]["cheap"]["fallbacks"] = ["strong"]
    plugin["resilience"] = {"max_attempts": 2, "per_try_timeout_ms": 1000, "deadline_ms": 3000, "output_token_ms": 20}

    def tweak(config: dict) -> None:
        retry_policy(config)["per_try_timeout"] = "1s"

    gateway = start_gateway(plugin, tweak=tweak)
    gateway.mocks.set_behavior("openai", {"hang": True})
    gateway.mocks.set_behavior("anthropic", {"delay_ms": 2000, "spend_allowance": True})
    response = gateway.chat(chat_body("hi", model="cheap", max_tokens=75), headers=AUTH)
    assert len(gateway.mocks.requests("anthropic")) == 1, "the fallback was asked"

    def strong_billed() -> bool:
        strong = spend(gateway)["team"]["ledger"].get("strong", {})
        return strong.get("output_tokens", 0) >= 75 and strong.get("input_tokens", 0) >= 1

    # The cut attempt settles when Envoy destroys it, which can come after the client's answer.
    wait_for(strong_billed)
    ledger = spend(gateway)["team"]["ledger"]
    strong = ledger.get("strong", {})
    health = next(d for d in gateway.view("/signalbox/health")["deployments"] if d["name"] == "strong")
    assert strong.get("output_tokens", 0) >= 75 and strong.get("input_tokens", 0) >= 1, (
        f"client got {response.status_code}; the fallback provider was asked and generated 75 tokens, "
        f"the ledger says strong={strong}, cheap={ledger.get('cheap')}; strong's health failures={health['failures']}"
    )

