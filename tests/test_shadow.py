"""Shadow evaluation through the real Envoy: a tenant's sampled whole answer
from the cheap tier is also asked of the reference model in the background,
after the client has its answer; the two are compared and the results show
in the metrics and the log; the reference calls are billed on the tenant's
`shadow:<model>` ledger line, within a per-minute budget; streams are not
sampled."""

from __future__ import annotations

import time

from tests.gateway import chat_body
from tests.test_governance import governed, spend
from tests.test_observability import eventually, scrape, total

KEY = "sk-shadow-team"
AUTH = {"authorization": f"Bearer {KEY}"}
QUESTION = "How many legs does a spider have?"


def shadowed(**shadow) -> dict:
    """Cheap (openai mock) below strong (anthropic mock, the reference)."""
    return governed({"team": {"shadow": {"reference": "strong", "share": 1.0, **shadow}}}, {KEY: ("team", "ann")})


def reference_calls(gateway, count: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while len(gateway.mocks.requests("anthropic")) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return gateway.mocks.requests("anthropic")


def test_sampled_answers_are_compared_with_the_reference_in_the_background(start_gateway):
    gateway = start_gateway(shadowed(max_per_minute=2))
    gateway.mocks.set_behavior("anthropic", {"say": "A spider has 8 legs."})
    for said in ["Spiders have 8 legs.", "Spiders have 6 legs."]:
        gateway.mocks.set_behavior("openai", {"say": said})
        response = gateway.chat(chat_body(QUESTION), headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.headers["x-signalbox-model"] == "cheap"
        assert response.json()["choices"][0]["message"]["content"] == said
    calls = reference_calls(gateway, 2)
    assert len(calls) == 2
    assert calls[0].header("user-agent") == "signalbox-shadow"
    assert QUESTION in calls[0].body.decode()

    # The budget (2 a minute) is spent: a third answer is not compared.
    gateway.chat(chat_body(QUESTION), headers=AUTH)
    time.sleep(1)
    assert len(gateway.mocks.requests("anthropic")) == 2

    samples = eventually(
        lambda: scrape(gateway),
        lambda samples: total(samples, "signalbox_shadow_total") >= 2,
    )
    assert total(samples, "signalbox_shadow_total", tier="simple", result="agree") == 1
    assert total(samples, "signalbox_shadow_total", tier="simple", result="disagree") == 1
    assert total(samples, "signalbox_shadow_agreement_milli_total", tier="simple") == 1000
    ledger = spend(gateway)["team"]["ledger"]
    assert ledger["shadow:strong"]["requests"] == 2 and ledger["shadow:strong"]["cost_usd"] > 0, ledger
    assert "strong" not in ledger, "shadow calls are not the tenant's own requests"
    assert ledger["cheap"]["requests"] == 3
    log = gateway.envoy.log_text()
    assert '"reference":"strong"' in log and '"result":"agree"' in log and '"result":"disagree"' in log


def test_streams_and_answers_from_the_reference_tier_are_not_sampled(start_gateway):
    gateway = start_gateway(shadowed())
    streamed = gateway.chat(chat_body(QUESTION, stream=True), headers=AUTH, stream=True)
    assert streamed.status_code == 200
    streamed.content  # read to the end
    strong = gateway.chat(
        chat_body("Prove that the square root of 2 is irrational, step by step, then write a Python function that checks it."),
        headers=AUTH,
    )
    assert strong.status_code == 200 and strong.headers["x-signalbox-model"] == "strong"
    time.sleep(1)
    assert len(gateway.mocks.requests("anthropic")) == 1, "only the strong request itself"
    assert total(scrape(gateway), "signalbox_shadow_total") == 0
