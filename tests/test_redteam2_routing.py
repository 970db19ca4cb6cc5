"""Red team 2: tier caps and per-try timeouts under client control.
Real Envoy + mock providers, 127.0.0.1 only."""

from __future__ import annotations

import time

from tests.gateway import chat_body, retry_policy
from tests.test_governance import governed

KEY = "sk-redteam2-team-1"
AUTH = {"authorization": f"Bearer {KEY}", "connection": "close"}


def test_a_named_embeddings_model_is_held_to_max_tier(start_gateway):
    """DEFECT (policy bypass): `plan_embeddings` applies `allowed_models` but
    never `max_tier` (nor the downgrade tier), and its fallbacks are not held
    to the ceiling either — unlike chat since 443d95a. A key capped at the
    `simple` tier that names the `complex`-tier model on /v1/embeddings is
    served by it and billed at its price.

    Observed: 200, the provider received model `strong-model`, the ledger
    charges `strong`. Expected: 403 as for chat (`above this key's maximum
    tier`)."""
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
    """DEFECT (hung provider holds a request to its deadline; failover
    defeated by a client field): the per-try timeout of a whole answer is
    `per_try + output_token_ms x Config::output_limit(model, requested)`, and
    `output_limit` prefers the client's `max_tokens` over the model's own
    `max_output_tokens` — a bound the model cannot exceed. A client sending
    `max_tokens: 100000` to a model limited to 50 output tokens gets a per-try
    timeout of min(1000 + 100000 x 20, deadline - 1) = 4999 ms instead of
    1000 + 50 x 20 = 2000 ms: a hung primary holds the request until the
    deadline, its healthy fallback is never tried, the client gets 504.

    Observed: 503 after 5.0 s (control with max_tokens 50: 200 from the
    fallback after 2.0 s).
    Expected: the primary's attempt ends at ~2 s and `strong` answers 200."""
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
    """DEFECT ($0 for work a provider did; a healthy provider blamed): when
    a failover attempt is cut by the request's deadline
    (x-envoy-upstream-rq-timeout-ms) rather than by its own per-try timeout,
    its upstream filter sees no status, no client gone, and an elapsed time
    under 90% of its per-try timeout, so `verdict` calls it `Unreachable`
    and `attempt_consumption` bills nothing — although the request reached
    the provider, which goes on generating the whole answer and bills it.
    Per-try timeouts scaled by the output bound (b26c98a) make this the
    normal end of any second link: the first link's hang uses up most of
    the deadline.

    Setup: per-try 1000 ms + 75 tokens x 20 ms = 2500 ms, deadline 3000 ms.
    `cheap` hangs; `strong` (anthropic) takes 2 s to generate 75 tokens.
    Observed: 503 at 3 s; the ledger has no spend on `strong` (billed
    $0) and anthropic's deployment records an `unreachable` failure.
    Expected: `strong` billed its prompt + output bound (estimated), as a
    whole answer abandoned by a timeout is; no failure recorded for it."""
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
    time.sleep(2.5)  # the fallback's provider finished (and billed) its answer
    ledger = spend(gateway)["team"]["ledger"]
    strong = ledger.get("strong", {})
    health = next(d for d in gateway.view("/signalbox/health")["deployments"] if d["name"] == "strong")
    assert strong.get("output_tokens", 0) >= 75 and strong.get("input_tokens", 0) >= 1, (
        f"client got {response.status_code}; the fallback provider was asked and generated 75 tokens, "
        f"the ledger says strong={strong}, cheap={ledger.get('cheap')}; strong's health failures={health['failures']}"
    )

